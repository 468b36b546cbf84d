"""Access control of the HTTP API: API keys (``Authorization: Bearer <key>``) and project scopes.

:func:`authorize` is a dependency of every router but the health checks (see
:func:`app.api.main.create_app`). It

1. lets the request through as :data:`~app.apikeys.ANONYMOUS` when no key is required (no
   unrevoked key exists and ``require_api_key`` is false);
2. otherwise answers ``401`` unless the request carries an unrevoked key;
3. answers ``404`` — exactly what a missing resource gets, so that a key learns nothing about
   projects it cannot open — when the path names a project (``{project_id}``) or a document
   (``{document_id}``) outside the key's scope.

Routes that list or create projects take the principal (:data:`PrincipalDep`) to filter the list
or to require an all-projects key. Keys never reach a log line or an error message.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import apikeys
from app.api.deps import RuntimeDep, SessionDep
from app.apikeys import Principal
from app.db.models import Document

__all__ = ["PrincipalDep", "authorize", "check_scope", "require_all_projects"]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="APIKey",
    description="An API key made by `docvec keys create` (required once any key exists).",
)


def authorize(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, checked against the resource the path names.

    Raises:
        HTTPException: 401 without a valid key when one is required; 404 when the path's project
            or document is outside the key's scope.
    """
    if credentials is None:
        if not runtime.settings.require_api_key and not apikeys.any_active_key(session):
            return apikeys.ANONYMOUS
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "an API key is required: send the header 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = apikeys.authenticate(session, credentials.credentials)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the API key is not valid (unknown or revoked)",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if not principal.all_projects:
        check_scope(request, session, principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(authorize)]


def require_all_projects(principal: PrincipalDep) -> Principal:
    """The caller, if its key opens every project (creating a project needs one).

    Raises:
        HTTPException: 403 for a key scoped to some projects.
    """
    if not principal.all_projects:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "creating a project needs an API key for all projects"
        )
    return principal


def check_scope(request: Request, session: Session, principal: Principal) -> None:
    """Refuse a path whose ``{project_id}`` or ``{document_id}`` lies outside the principal's
    scope (the web console applies the same rule to its own paths).

    Raises:
        HTTPException: 404, worded like a missing resource's.
    """
    params = request.path_params
    project_id = _as_uuid(params.get("project_id"))
    if project_id is not None and not principal.can_access(project_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"project {project_id} not found")
    document_id = _as_uuid(params.get("document_id"))
    if document_id is not None:
        owner = session.scalar(select(Document.project_id).where(Document.id == document_id))
        if owner is None or not principal.can_access(owner):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"document {document_id} not found")


def _as_uuid(value: object) -> uuid.UUID | None:
    """The path parameter as a UUID; None if absent or malformed (the route answers 422)."""
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
