"""``docvec keys create | list | revoke``: API keys of the HTTP API."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from app import services
from app.cli._utilities import JsonOpt, app, exit_on, open_runtime, out, print_json
from app.config import get_settings
from app.db.models import ApiKey

keys_app = typer.Typer(
    no_args_is_help=True,
    help="API keys of the HTTP API. Once one exists, every route but /healthz and /readyz needs "
    "'Authorization: Bearer <key>'. Only a hash of each key is stored.",
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A unique label, e.g. who or what uses the key.")],
    project: Annotated[
        list[str] | None,
        typer.Option("--project", "-p", help="A project (name or id) the key opens; repeatable."),
    ] = None,
    all_projects: Annotated[
        bool, typer.Option("--all-projects", help="Open every project; may create projects.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key. Its secret is printed once: only its SHA-256 is stored."""
    from app import apikeys

    with open_runtime(get_settings()) as runtime, runtime.sessions() as session:
        with exit_on(services.NotFound, ValueError):
            scope = [services.find_project(session, ref) for ref in project or []]
            key, secret = apikeys.create_key(
                session, name=name, projects=scope, all_projects=all_projects
            )
        session.commit()
        data = _key_dict(session, key)
    if as_json:
        print_json({**data, "secret": secret})
        return
    out.print(f"API key [bold]{data['name']}[/bold] ({data['id']}) for {_key_scope(data)}.")
    out.print("Its secret is shown only now; send it as 'Authorization: Bearer <secret>':")
    print(secret)


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False) -> None:
    """List API keys (never their secrets): prefix, scope, created, revoked."""
    from app import apikeys

    with open_runtime(get_settings()) as runtime, runtime.sessions() as session:
        rows = [_key_dict(session, k) for k in apikeys.list_keys(session)]
    if as_json:
        print_json(rows)
        return
    table = Table()
    for col in ("id", "name", "prefix", "scope", "created", "revoked"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["id"],
            r["name"],
            r["prefix"] + "…",
            _key_scope(r),
            r["created_at"],
            r["revoked_at"] or "",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id, name or prefix.")],
) -> None:
    """Revoke an API key: requests with it get 401 from now on."""
    from app import apikeys

    with open_runtime(get_settings()) as runtime, runtime.sessions() as session:
        with exit_on(apikeys.UnknownKey):
            row = apikeys.revoke_key(session, key)
        session.commit()
        out.print(f"revoked API key {row.name} ({row.prefix}…)", highlight=False)


def _key_dict(session: Session, key: ApiKey) -> dict[str, Any]:
    project_ids = key.project_ids or []
    names = services.project_names(session, ids=[uuid.UUID(p) for p in project_ids])
    return {
        "id": str(key.id),
        "name": key.name,
        "prefix": key.prefix,
        "all_projects": key.all_projects,
        "projects": [{"id": p, "name": names.get(uuid.UUID(p))} for p in project_ids],
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _key_scope(data: dict[str, Any]) -> str:
    if data["all_projects"]:
        return "all projects"
    return ", ".join(p["name"] or f"{p['id']} (deleted)" for p in data["projects"])
