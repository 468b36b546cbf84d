"""Index versions of a project: list with build progress, create (build in the background),
activate (or roll back), cancel, drop. See app/indexes.py."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field, ValidationError

from app import indexes, services
from app.api.deps import RuntimeDep, SessionDep
from app.api.strict_json import StrictJSONRoute
from app.db.models import IndexState
from app.pipeline.build import activate_version, drop_version

log = logging.getLogger(__name__)

router = APIRouter(prefix="/projects", tags=["index versions"], route_class=StrictJSONRoute)


class IndexVersionCreate(BaseModel):
    """A new version: the settings with these overrides (none: the settings as they are)."""

    provider: Literal["local", "openai", "ollama", "gemini"] | None = None
    model: str | None = Field(None, min_length=1, max_length=200)
    dimensions: int | None = Field(None, ge=1, le=65_536)
    base_url: str | None = Field(None, max_length=2000)
    api_key_env: str | None = Field(None, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    chunk_size: int | None = Field(None, ge=16, le=1_000_000)
    chunk_overlap: int | None = Field(None, ge=0, le=1_000_000)
    #: The image model (README, Images): ``none`` for none. A local model's folder is the
    #: settings' (DOCVEC_IMAGE_EMBEDDING__MODEL_PATH): the API does not take paths.
    image_provider: Literal["none", "local", "gemini", "cohere"] | None = None
    image_model: str | None = Field(None, min_length=1, max_length=200)
    image_dimensions: int | None = Field(None, ge=1, le=65_536)
    activate: Literal["auto", "manual"] = "auto"


def _send_build(request: Request, version_id: uuid.UUID) -> bool:
    """Publish the build's first step; False when the broker did not take it (the sweep sends
    one for a build nobody holds)."""
    publish: Callable[[uuid.UUID], None] | None = request.app.state.enqueue_build
    if publish is None:
        return False
    try:
        publish(version_id)
        return True
    except Exception:
        log.warning("the broker did not take the build of %s", version_id, exc_info=True)
        return False


@router.get("/{project_id}/index-versions")
def list_index_versions(project_id: uuid.UUID, session: SessionDep) -> dict[str, object]:
    """The project's index versions (oldest first) with their build progress."""
    project = services.get_project(session, project_id)
    rows = indexes.versions_of(session, project.id)
    active = next((v.version for v in rows if v.state == IndexState.active), None)
    return {"active": active, "versions": [indexes.as_dict(session, v) for v in rows]}


@router.post("/{project_id}/index-versions", status_code=status.HTTP_202_ACCEPTED)
def create_index_version(
    project_id: uuid.UUID,
    body: IndexVersionCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    request: Request,
) -> dict[str, object]:
    """Start building a new index version beside the active one (which keeps serving search)."""
    project = services.get_project(session, project_id)
    try:
        spec, follows = indexes.spec_for(
            runtime.settings,
            provider=body.provider,
            model=body.model,
            dimensions=body.dimensions,
            base_url=body.base_url,
            api_key_env=body.api_key_env,
            chunk_size=body.chunk_size,
            chunk_overlap=body.chunk_overlap,
            image_provider=body.image_provider,
            image_model=body.image_model,
            image_dimensions=body.image_dimensions,
        )
    except ValidationError as exc:
        raise HTTPException(422, str(exc)) from exc
    try:
        row = indexes.create_version(
            session,
            project=project,
            spec=spec,
            settings=runtime.settings,
            follows_settings=follows,
            activate=body.activate,
        )
    except indexes.VersionConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    session.commit()
    published = _send_build(request, row.id)
    return {**indexes.as_dict(session, row), "published": published}


def _version(session: SessionDep, project_id: uuid.UUID, version: int) -> indexes.VersionRef:
    project = services.get_project(session, project_id)
    try:
        return indexes.VersionRef.of(indexes.get_version(session, project.id, version))
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from exc


@router.post("/{project_id}/index-versions/{version}/activate")
def activate_index_version(
    project_id: uuid.UUID,
    version: int,
    session: SessionDep,
    runtime: RuntimeDep,
    request: Request,
) -> dict[str, object]:
    """Activate a complete version (one transaction); a retired one catches up first (rollback)."""
    ref = _version(session, project_id, version)
    row = indexes.get_version(session, ref.project_id, version)
    if row.state == IndexState.retired and not indexes.progress(session, row).complete:
        indexes.start_catch_up(session, row)
        session.commit()
        published = _send_build(request, row.id)
        return {**indexes.as_dict(session, row), "published": published}
    session.rollback()  # activation takes its own transaction and locks
    try:
        activate_version(runtime, ref.id, keep_versions=runtime.settings.index_keep_versions)
    except indexes.VersionConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    return indexes.as_dict(session, indexes.get_version(session, ref.project_id, version))


@router.post("/{project_id}/index-versions/{version}/cancel")
def cancel_index_version(
    project_id: uuid.UUID, version: int, session: SessionDep
) -> dict[str, object]:
    """Cancel a build; the active version is untouched."""
    ref = _version(session, project_id, version)
    row = indexes.get_version(session, ref.project_id, version)
    try:
        indexes.cancel(session, row)
    except indexes.VersionConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    session.commit()
    return indexes.as_dict(session, row)


@router.delete("/{project_id}/index-versions/{version}", status_code=status.HTTP_204_NO_CONTENT)
def drop_index_version(
    project_id: uuid.UUID, version: int, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Remove a version that is neither active nor being built, with its collection."""
    ref = _version(session, project_id, version)
    if ref.state == IndexState.building:
        raise HTTPException(409, f"index version {version} is being built: cancel it first")
    session.rollback()
    try:
        drop_version(runtime, ref)
    except indexes.VersionConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    runtime.drop_store(ref.collection)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
