"""Access control across two projects and three keys (all projects, A only, B only).

Keys are made with the real ``docvec keys`` commands on the same database the API serves; every
route that names a project or a document is tried with every key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from app import apikeys
from app.cli import app as cli_app
from app.config import get_settings
from app.db.models import ApiKey
from tests.security.conftest import MakeClient

DOC_A = b"# Alpha\n\nThe alpha project keeps notes about apples, orchards and cider presses.\n"
DOC_B = b"# Beta\n\nThe beta project keeps notes about bicycles, gears and brake cables.\n"


def _cli(monkeypatch: pytest.MonkeyPatch, data_dir: Path, *args: str) -> Any:
    monkeypatch.setenv("DOCVEC_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, list(args))
    finally:
        get_settings.cache_clear()
    return result


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def world(
    make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Two projects with one vectorized document each, made while the server was still open,
    then three keys made with ``docvec keys create``."""
    client = make_client()
    ids: dict[str, Any] = {}
    for name, body in (("alpha", DOC_A), ("beta", DOC_B)):
        r = client.post("/projects", json={"name": name})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        r = client.post(
            f"/projects/{pid}/documents", files=[("files", (f"{name}.md", body, "text/markdown"))]
        )
        assert r.status_code == 202, r.text
        ids[name] = {"project": pid, "document": r.json()["documents"][0]["id"]}
        assert client.get(f"/documents/{ids[name]['document']}").json()["status"] == "vectorized"

    secrets: dict[str, str] = {}
    for key_name, args in (
        ("admin", ["--all-projects"]),
        ("only-a", ["--project", "alpha"]),
        ("only-b", ["--project", ids["beta"]["project"]]),  # by id works too
    ):
        result = _cli(monkeypatch, tmp_path / "data", "keys", "create", key_name, *args, "--json")
        assert result.exit_code == 0, result.output
        created = json.loads(result.stdout)
        assert created["secret"].startswith("dvk_") and created["name"] == key_name
        secrets[key_name] = created["secret"]
    # Keys are read per request: the running server needs no restart.
    return {"client": client, "ids": ids, "keys": secrets, "data_dir": tmp_path / "data"}


def _routes(pid: str, doc: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every route that names a project or a document, with a valid request body."""
    return [
        ("GET", f"/projects/{pid}", {}),
        ("GET", f"/projects/{pid}/documents", {}),
        ("POST", f"/projects/{pid}/search", {"json": {"query": "notes"}}),
        ("POST", f"/projects/{pid}/answer", {"json": {"question": "notes"}}),
        ("POST", f"/projects/{pid}/answer", {"json": {"question": "notes", "stream": True}}),
        (
            "POST",
            f"/projects/{pid}/documents",
            {"files": [("files", ("new.md", b"# New\n\nsomething new " * 10, "text/markdown"))]},
        ),
        ("GET", f"/documents/{doc}", {}),
        ("GET", f"/documents/{doc}/chunks", {}),
        ("POST", f"/documents/{doc}/revectorize", {}),
        ("POST", f"/projects/{pid}/revectorize", {}),
        (
            "PUT",
            f"/documents/{doc}/file",
            # A new version of its own: never another document's bytes (that is a 409).
            {
                "files": [
                    ("file", ("v2.md", f"# v2 of {doc}\n\nnotes, again".encode(), "text/markdown"))
                ]
            },
        ),
    ]


def test_three_keys_two_projects(world: dict[str, Any]) -> None:
    client: TestClient = world["client"]
    ids, keys = world["ids"], world["keys"]
    a, b = ids["alpha"], ids["beta"]

    # The health checks stay open; everything else now needs a key.
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)
    for method, path, kwargs in _routes(a["project"], a["document"]):
        r = client.request(method, path, **kwargs)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/projects").status_code == 401
    assert client.post("/projects", json={"name": "gamma"}).status_code == 401

    # Project lists are filtered by scope.
    def listed(key: str) -> set[str]:
        r = client.get("/projects", headers=_bearer(keys[key]))
        assert r.status_code == 200, r.text
        assert r.json()["total"] == len(r.json()["items"])
        return {p["name"] for p in r.json()["items"]}

    assert listed("admin") == {"alpha", "beta"}
    assert listed("only-a") == {"alpha"}
    assert listed("only-b") == {"beta"}

    # A scoped key gets exactly what a missing resource gets: 404 with the same message.
    missing_project, missing_doc = str(uuid.uuid4()), str(uuid.uuid4())
    for key, mine, theirs in (("only-a", a, b), ("only-b", b, a)):
        headers = _bearer(keys[key])
        for (method, path, kwargs), (_, missing_path, _) in zip(
            _routes(theirs["project"], theirs["document"]),
            _routes(missing_project, missing_doc),
            strict=True,
        ):
            r = client.request(method, path, headers=headers, **kwargs)
            m = client.request(method, missing_path, headers=headers, **kwargs)
            assert r.status_code == m.status_code == 404, (key, method, path, r.text)
            expected = m.json()["detail"].replace(missing_project, theirs["project"])
            expected = expected.replace(missing_doc, theirs["document"])
            assert r.json()["detail"] == expected
        for method, path, kwargs in _routes(mine["project"], mine["document"]):
            r = client.request(method, path, headers=headers, **kwargs)
            assert r.status_code in (200, 202), (key, method, path, r.text)
        # Search inside its own project never returns the other project's text.
        r = client.post(
            f"/projects/{mine['project']}/search",
            json={"query": "apples bicycles gears orchards", "top_k": 50},
            headers=headers,
        )
        assert {h["document_id"] for h in r.json()["results"]} <= {
            d["id"]
            for d in client.get(f"/projects/{mine['project']}/documents", headers=headers).json()[
                "items"
            ]
        }
        # Nor does an answer: its sources are the project's own chunks.
        r = client.post(
            f"/projects/{mine['project']}/answer",
            json={"question": "apples bicycles gears orchards", "top_k": 50},
            headers=headers,
        )
        own = {
            d["id"]
            for d in client.get(f"/projects/{mine['project']}/documents", headers=headers).json()[
                "items"
            ]
        }
        assert r.json()["sources"] and {s["document_id"] for s in r.json()["sources"]} <= own
        # Deletes of the other project's things are 404 and delete nothing.
        assert client.delete(f"/documents/{theirs['document']}", headers=headers).status_code == 404
        assert client.delete(f"/projects/{theirs['project']}", headers=headers).status_code == 404
        # Only an all-projects key creates projects.
        r = client.post("/projects", json={"name": f"new-{key}"}, headers=headers)
        assert r.status_code == 403 and "all projects" in r.json()["detail"]

    # The all-projects key sees and changes everything.
    admin = _bearer(keys["admin"])
    for theirs in (a, b):
        for method, path, kwargs in _routes(theirs["project"], theirs["document"]):
            r = client.request(method, path, headers=admin, **kwargs)
            assert r.status_code in (200, 202), (method, path, r.text)
    assert client.post("/projects", json={"name": "gamma"}, headers=admin).status_code == 201
    # ...and the B key may delete its own document; the A key still sees its own.
    assert (
        client.delete(f"/documents/{b['document']}", headers=_bearer(keys["only-b"])).status_code
        == 204
    )
    assert (
        client.get(f"/documents/{a['document']}", headers=_bearer(keys["only-a"])).status_code
        == 200
    )


def test_bad_keys_revocation_and_secrets_at_rest(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client: TestClient = world["client"]
    keys = world["keys"]
    pid = world["ids"]["alpha"]["project"]
    caplog.set_level(logging.DEBUG)

    forged = "dvk_" + "A" * 43
    for headers in (
        _bearer(forged),
        _bearer(keys["admin"] + "x"),
        _bearer("not-even-a-docvec-key"),
        {"Authorization": f"Basic {keys['admin']}"},  # right secret, wrong scheme
        {"Authorization": keys["admin"]},
    ):
        r = client.get(f"/projects/{pid}", headers=headers)
        assert r.status_code == 401, headers
        assert keys["admin"] not in r.text and forged not in r.text

    # Revoked keys stop working at once; the others keep working.
    result = _cli(monkeypatch, world["data_dir"], "keys", "revoke", "only-a")
    assert result.exit_code == 0, result.output
    assert client.get(f"/projects/{pid}", headers=_bearer(keys["only-a"])).status_code == 401
    assert client.get(f"/projects/{pid}", headers=_bearer(keys["admin"])).status_code == 200
    listing = json.loads(_cli(monkeypatch, world["data_dir"], "keys", "list", "--json").stdout)
    by_name = {k["name"]: k for k in listing}
    assert by_name["only-a"]["revoked_at"] and not by_name["admin"]["revoked_at"]
    assert by_name["only-b"]["projects"][0]["name"] == "beta"

    # At rest: only SHA-256 hashes and a 12-character prefix; no secret anywhere in the database.
    rt = client.rt  # type: ignore[attr-defined]
    with rt.sessions() as s:
        rows = s.scalars(select(ApiKey)).all()
        assert {r.key_hash for r in rows} == {
            hashlib.sha256(v.encode()).hexdigest() for v in keys.values()
        }
        dump = json.dumps(
            [list(row) for row in s.execute(text("SELECT * FROM api_keys")).all()], default=str
        )
    for secret in keys.values():
        assert secret not in dump and secret[:16] not in dump
        assert secret not in result.output and secret not in json.dumps(listing)

    # Never in a log line either (every logger at DEBUG during all the requests above).
    for secret in [*keys.values(), forged]:
        assert secret not in caplog.text


def test_require_api_key_before_any_key_exists(make_client: MakeClient) -> None:
    client = make_client(require_api_key=True)
    assert client.get("/projects").status_code == 401
    assert client.get("/healthz").status_code == 200
    # Without the setting, a server with no keys is open (the embedded, single-user default).
    client = make_client()
    assert client.get("/projects").status_code == 200


def test_key_service_rules(make_client: MakeClient) -> None:
    client = make_client()
    rt = client.rt  # type: ignore[attr-defined]
    with rt.sessions() as s:
        with pytest.raises(ValueError, match="either --all-projects or at least one --project"):
            apikeys.create_key(s, name="nothing")
        key, secret = apikeys.create_key(s, name="ops", all_projects=True)
        with pytest.raises(ValueError, match="already exists"):
            apikeys.create_key(s, name="ops", all_projects=True)
        key, secret = apikeys.create_key(s, name="ops2", all_projects=True)
        s.commit()
        assert apikeys.authenticate(s, secret) is not None
        assert apikeys.find_key(s, secret[:12]).name == "ops2"
        assert apikeys.find_key(s, str(key.id)).name == "ops2"
        with pytest.raises(apikeys.UnknownKey):
            apikeys.find_key(s, "nope")
        apikeys.revoke_key(s, "ops2")
        s.commit()
        assert apikeys.authenticate(s, secret) is None
