"""Projects: create, list, read, delete, re-vectorize all, search."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import services
from app.api.auth import PrincipalDep, require_all_projects
from app.api.deps import DispatchDep, RuntimeDep, SessionDep
from app.api.schemas import (
    Accepted,
    Page,
    ProjectCreate,
    ProjectDetail,
    ProjectOut,
    SearchHit,
    SearchRequest,
    SearchResponse,
    accepted,
)
from app.api.strict_json import StrictJSONRoute
from app.db.models import Document, Project
from app.runtime import Runtime

router = APIRouter(prefix="/projects", tags=["projects"], route_class=StrictJSONRoute)

LimitQ = Annotated[int, Query(ge=1, le=500)]
# Bounded so that the database never sees an OFFSET past its integer range (a 500).
OffsetQ = Annotated[int, Query(ge=0, le=2**31 - 1)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectOut,
    dependencies=[Depends(require_all_projects)],
)
def create_project(body: ProjectCreate, session: SessionDep) -> Project:
    """Create a project (with an API key for all projects, when keys are in use)."""
    try:
        project = services.create_project(session, name=body.name, description=body.description)
    except services.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    session.commit()
    return project


@router.get("", response_model=Page[ProjectOut])
def list_projects(
    session: SessionDep, principal: PrincipalDep, limit: LimitQ = 50, offset: OffsetQ = 0
) -> dict[str, object]:
    """List projects (those the API key opens), oldest first."""
    cond = [] if principal.all_projects else [Project.id.in_(principal.project_ids)]
    total = session.scalar(select(func.count()).select_from(Project).where(*cond)) or 0
    items = session.scalars(
        select(Project)
        .where(*cond)
        .order_by(Project.created_at, Project.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/{project_id}", response_model=ProjectDetail)
def get_project(project_id: uuid.UUID, session: SessionDep) -> dict[str, object]:
    """A project with its document counts by status."""
    project = services.get_project(session, project_id)
    counts = {
        status_: n
        for status_, n in session.execute(
            select(Document.status, func.count())
            .where(Document.project_id == project.id)
            .group_by(Document.status)
        ).all()
    }
    chunks = session.scalar(
        select(func.coalesce(func.sum(Document.chunk_count), 0)).where(
            Document.project_id == project.id
        )
    )
    out = ProjectOut.model_validate(project).model_dump()
    return {**out, "documents_by_status": counts, "chunk_count": int(chunks or 0)}


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_project(project_id: uuid.UUID, session: SessionDep, runtime: RuntimeDep) -> Response:
    """Delete a project with its documents, chunks, points and files."""
    project = services.get_project(session, project_id)
    services.delete_project(
        session,
        project=project,
        stores=runtime.project_stores(session, project.id),
        own_stores=runtime.own_stores(session, project.id),
        storage=runtime.storage,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{project_id}/revectorize", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted
)
def revectorize_project(
    project_id: uuid.UUID, session: SessionDep, dispatch: DispatchDep
) -> dict[str, object]:
    """Re-vectorize every document of the project."""
    project = services.get_project(session, project_id)
    jobs = services.revectorize_project(session, project=project)
    return accepted(jobs, published=dispatch(session, jobs))


@router.post(
    "/{project_id}/retry-failed", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted
)
def retry_failed(
    project_id: uuid.UUID, session: SessionDep, dispatch: DispatchDep
) -> dict[str, object]:
    """Queue every failed document of the project again."""
    project = services.get_project(session, project_id)
    jobs = services.retry_failed(session, project=project)
    return accepted(jobs, published=dispatch(session, jobs))


@router.post("/{project_id}/search", response_model=SearchResponse)
def search(
    project_id: uuid.UUID, body: SearchRequest, session: SessionDep, runtime: RuntimeDep
) -> dict[str, object]:
    """Search the project's chunks: dense, lexical (BM25) or hybrid (RRF), and the pages of its
    image documents by what they show (an index with an image model); best first."""
    project = services.get_project(session, project_id)
    results = run_search(session, runtime=runtime, project=project, body=body)
    return {
        "query": body.query,
        "mode": body.mode,
        "results": [SearchHit.model_validate(r, from_attributes=True) for r in results],
    }


def run_search(
    session: Session, *, runtime: Runtime, project: Project, body: SearchRequest
) -> list[services.SearchResult]:
    """The search route's work, shared with the web console's search page: the best chunks of
    ``project`` for ``body``, best first (see :func:`app.services.search`)."""
    return runtime.search(
        session,
        project=project,
        query=body.query,
        top_k=body.top_k,
        score_threshold=body.score_threshold,
        mode=body.mode,
        images=body.images,
    )
