"""Prometheus metrics of the API process, plus live gauges (documents by status, queue depth)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import func, select

from app import indexes
from app.api.strict_json import StrictJSONRoute
from app.db.models import Document, IndexState, IndexVersion, Project
from app.metrics import LiveGauges

router = APIRouter(tags=["health"], route_class=StrictJSONRoute)


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(request: Request) -> Response:
    """Prometheus text format: this process's counters, documents by status, queue depth."""
    runtime = request.app.state.runtime
    queue = request.app.state.queue

    def documents_by_status() -> dict[str, int]:
        with runtime.sessions() as session:
            rows = session.execute(select(Document.status, func.count()).group_by(Document.status))
            return {status: n for status, n in rows.all()}

    def index_builds() -> list[tuple[str, int, str, dict[str, float]]]:
        out = []
        with runtime.sessions() as session:
            rows = session.execute(
                select(IndexVersion, Project.name)
                .join(Project, Project.id == IndexVersion.project_id)
                .where(IndexVersion.state.in_([IndexState.building, IndexState.ready]))
            ).all()
            for version, name in rows:
                p = indexes.progress(session, version).as_dict()
                figures = {k: float(v) for k, v in p.items() if isinstance(v, int | float)}
                out.append((name, version.version, version.state, figures))
        return out

    registry = CollectorRegistry()
    registry.register(
        LiveGauges(documents_by_status, queue.depth if queue else lambda: None, index_builds)
    )
    body = generate_latest(REGISTRY) + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
