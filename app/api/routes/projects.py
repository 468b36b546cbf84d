"""Projects: create, list, read, delete, re-vectorize all, search."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from sqlalchemy import func, select

from app import services
from app.api.auth import PrincipalDep, require_all_projects
from app.api.deps import EnqueueDep, RuntimeDep, SessionDep
from app.api.schemas import (
    Accepted,
    Page,
    ProjectCreate,
    ProjectDetail,
    ProjectOut,
    SearchHit,
    SearchRequest,
    SearchResponse,
)
from app.db.models import Document, Project

router = APIRouter(prefix="/projects", tags=["projects"])

LimitQ = Annotated[int, Query(ge=1, le=500)]
# Bounded so that the database never sees an OFFSET past its integer range (a 500).
OffsetQ = Annotated[int, Query(ge=0, le=2**31 - 1)]


def _project(s: SessionDep, project_id: uuid.UUID) -> Project:
    try:
        return services.get_project(s, project_id)
    except services.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectOut,
    dependencies=[Depends(require_all_projects)],
)
def create_project(body: ProjectCreate, s: SessionDep) -> Project:
    """Create a project (with an API key for all projects, when keys are in use)."""
    try:
        project = services.create_project(s, name=body.name, description=body.description)
    except services.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    s.commit()
    return project


@router.get("", response_model=Page[ProjectOut])
def list_projects(
    s: SessionDep, principal: PrincipalDep, limit: LimitQ = 50, offset: OffsetQ = 0
) -> dict[str, object]:
    """List projects (those the API key opens), oldest first."""
    cond = [] if principal.all_projects else [Project.id.in_(principal.project_ids)]
    total = s.scalar(select(func.count()).select_from(Project).where(*cond)) or 0
    items = s.scalars(
        select(Project)
        .where(*cond)
        .order_by(Project.created_at, Project.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/{project_id}", response_model=ProjectDetail)
def get_project(project_id: uuid.UUID, s: SessionDep) -> dict[str, object]:
    """A project with its document counts by status."""
    project = _project(s, project_id)
    counts = {
        status_: n
        for status_, n in s.execute(
            select(Document.status, func.count())
            .where(Document.project_id == project.id)
            .group_by(Document.status)
        ).all()
    }
    chunks = s.scalar(
        select(func.coalesce(func.sum(Document.chunk_count), 0)).where(
            Document.project_id == project.id
        )
    )
    out = ProjectOut.model_validate(project).model_dump()
    return {**out, "documents_by_status": counts, "chunk_count": int(chunks or 0)}


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_project(project_id: uuid.UUID, s: SessionDep, rt: RuntimeDep) -> Response:
    """Delete a project with its documents, chunks, points and files."""
    project = _project(s, project_id)
    services.delete_project(s, project=project, store=rt.vector_store, storage=rt.storage)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{project_id}/revectorize", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted
)
def revectorize_project(
    project_id: uuid.UUID, s: SessionDep, enqueue: EnqueueDep
) -> dict[str, object]:
    """Re-vectorize every document of the project."""
    project = _project(s, project_id)
    docs = s.scalars(select(Document).where(Document.project_id == project.id)).all()
    jobs = [(d.id, services.request_revectorize(s, document=d)) for d in docs]
    s.commit()
    for doc_id, generation in jobs:
        enqueue(doc_id, generation)
    return {"queued": len(jobs), "document_ids": [d for d, _ in jobs]}


@router.post(
    "/{project_id}/retry-failed", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted
)
def retry_failed(project_id: uuid.UUID, s: SessionDep, enqueue: EnqueueDep) -> dict[str, object]:
    """Queue every failed document of the project again."""
    project = _project(s, project_id)
    jobs = services.retry_failed(s, project=project)
    s.commit()
    for doc_id, generation in jobs:
        enqueue(doc_id, generation)
    return {"queued": len(jobs), "document_ids": [d for d, _ in jobs]}


@router.post("/{project_id}/search", response_model=SearchResponse)
def search(
    project_id: uuid.UUID, body: SearchRequest, s: SessionDep, rt: RuntimeDep
) -> dict[str, object]:
    """Search the project's chunks: dense, lexical (BM25) or hybrid (RRF); best first."""
    project = _project(s, project_id)
    results = services.search(
        s,
        project=project,
        query=body.query,
        provider=rt.provider,
        store=rt.vector_store,
        top_k=body.top_k,
        score_threshold=body.score_threshold,
        mode=body.mode,
    )
    return {
        "query": body.query,
        "mode": body.mode,
        "results": [SearchHit.model_validate(r, from_attributes=True) for r in results],
    }
