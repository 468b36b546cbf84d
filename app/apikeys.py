"""API keys: creation, listing, revocation and authentication (no FastAPI here; the API's
dependency lives in :mod:`app.api.auth`, the commands in ``docvec keys``).

A key is ``dvk_`` followed by 43 URL-safe characters (32 random bytes). Only its SHA-256 is
stored, with its first 12 characters for display. A plain hash (no salt, no slow KDF) is enough:
the secret has 256 bits of entropy, so there is nothing to brute-force, and it lets a request's key
be found by an index lookup.

Scopes: a key opens every project (``all_projects``), or only the projects it was created for.
Auth is required on every API route but the health checks as soon as one unrevoked key exists, or
always when ``DOCVEC_REQUIRE_API_KEY`` is true.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import ApiKey, Project, utcnow

__all__ = [
    "ANONYMOUS",
    "KEY_PREFIX",
    "Principal",
    "UnknownKey",
    "any_active_key",
    "authenticate",
    "create_key",
    "find_key",
    "hash_secret",
    "list_keys",
    "revoke_key",
]

#: Every secret starts with this, so that leaked keys are easy to recognise (secret scanners).
KEY_PREFIX = "dvk_"
_DISPLAY_CHARS = 12
_NAME_MAX = 200


class UnknownKey(LookupError):
    """No such key (``docvec keys revoke`` with an unknown reference)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key and the projects it opens.

    Attributes:
        key_id: the key's id; None when no key is required (an open server).
        name: the key's name (for logs; never the secret).
        all_projects: the key opens every project, and may create projects.
        project_ids: the projects a scoped key opens.
    """

    key_id: uuid.UUID | None
    name: str
    all_projects: bool
    project_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)

    def can_access(self, project_id: uuid.UUID) -> bool:
        """True if this principal may read and change the project."""
        return self.all_projects or project_id in self.project_ids


#: The caller of a server that requires no key.
ANONYMOUS = Principal(key_id=None, name="anonymous", all_projects=True)


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a key's secret, as stored in ``api_keys.key_hash``."""
    return hashlib.sha256(secret.encode("utf-8", errors="surrogatepass")).hexdigest()


def any_active_key(s: Session) -> bool:
    """True if at least one key is not revoked (then every request needs a key)."""
    return s.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None


def authenticate(s: Session, secret: str) -> Principal | None:
    """The principal of an unrevoked key with this secret, or None.

    The row is found by its hash; the hashes are then compared in constant time, so that the
    comparison leaks nothing even if the database's own lookup were timed.
    """
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    digest = hash_secret(secret)
    key = s.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.key_hash, digest):  # pragma: no cover - found by this hash
        return None
    return _principal(key)


def _principal(key: ApiKey) -> Principal:
    ids = frozenset(uuid.UUID(p) for p in key.project_ids or [])
    return Principal(key_id=key.id, name=key.name, all_projects=key.all_projects, project_ids=ids)


def create_key(
    s: Session, *, name: str, projects: Iterable[Project] = (), all_projects: bool = False
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the secret (shown once: only its hash is kept).

    Args:
        name: a unique label (1-200 characters).
        projects: the projects a scoped key opens.
        all_projects: the key opens every project (then ``projects`` must be empty).

    Raises:
        ValueError: no scope, both scopes, a bad name, or the name is taken.
    """
    project_ids = sorted({str(p.id) for p in projects})
    name = name.strip()
    if not name or len(name) > _NAME_MAX:
        raise ValueError(f"a key name has 1 to {_NAME_MAX} characters")
    if all_projects == bool(project_ids):
        raise ValueError("give a key either --all-projects or at least one --project")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        key_hash=hash_secret(secret),
        prefix=secret[:_DISPLAY_CHARS],
        all_projects=all_projects,
        project_ids=project_ids,
    )
    s.add(key)
    try:
        s.flush()
    except IntegrityError as exc:
        s.rollback()
        raise ValueError(f"a key named {name!r} already exists") from exc
    return key, secret


def list_keys(s: Session, *, include_revoked: bool = True) -> list[ApiKey]:
    """Every key, oldest first."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.name)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(s.scalars(query))


def find_key(s: Session, ref: str) -> ApiKey:
    """A key by id, name or displayed prefix (unique). Raises :class:`UnknownKey` otherwise."""
    ref = ref.strip()
    try:
        by_id = s.get(ApiKey, uuid.UUID(ref))
    except ValueError:
        by_id = None
    if by_id is not None:
        return by_id
    by_name = s.scalar(select(ApiKey).where(ApiKey.name == ref))
    if by_name is not None:
        return by_name
    if ref.startswith(KEY_PREFIX) and len(ref) >= len(KEY_PREFIX) + 4:
        matches = [
            k for k in s.scalars(select(ApiKey)) if k.prefix.startswith(ref[:_DISPLAY_CHARS])
        ]
        if len(matches) == 1:
            return matches[0]
    raise UnknownKey(f"no API key {ref!r} (give its id, name or prefix)")


def revoke_key(s: Session, ref: str) -> ApiKey:
    """Revoke a key (by id, name or prefix); revoking twice keeps the first time."""
    key = find_key(s, ref)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key
