"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import RuntimeDep
from app.api.strict_json import StrictJSONRoute

router = APIRouter(tags=["health"], route_class=StrictJSONRoute)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(runtime: RuntimeDep, request: Request) -> JSONResponse:
    """Readiness: database, broker, vector store and embedding provider each answer."""
    checks: dict[str, Any] = {}

    def check(name: str, fn: Any) -> None:
        try:
            detail = fn()
            checks[name] = {"ok": True, **(detail or {})}
        except Exception as exc:  # each failure is reported, not raised
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}

    def db() -> None:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def broker() -> dict[str, Any] | None:
        ping = request.app.state.broker_ping
        return ping() if ping else {"skipped": "no broker (in-process mode)"}

    def store() -> dict[str, Any]:
        runtime.vector_store.ping()
        return {"store": runtime.vector_store.name}

    def provider() -> dict[str, Any]:
        p = runtime.provider
        return {"provider": p.name, "model": p.model, "dimension": p.dimension}

    check("database", db)
    check("broker", broker)
    check("vector_store", store)
    check("embedding_provider", provider)
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
