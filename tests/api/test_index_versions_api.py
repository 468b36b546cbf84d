"""``/projects/{id}/index-versions`` through the real app: a build started by POST (run here
instead of by a worker), its progress, activation and rollback, cancel, drop, conflicts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.config import Settings
from app.db import migrate
from app.pipeline.build import run_build
from app.pipeline.process import process_document
from app.runtime import Runtime


@pytest.fixture
def api(tmp_path: Path, local_provider: Any) -> Iterator[tuple[TestClient, list[uuid.UUID]]]:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings, provider=local_provider)
    builds: list[uuid.UUID] = []

    def enqueue(doc_id: uuid.UUID, generation: int) -> None:
        process_document(rt, doc_id, generation)

    def enqueue_build(version_id: uuid.UUID) -> None:
        builds.append(version_id)

    app = create_app(settings, runtime=rt, enqueue=enqueue, enqueue_build=enqueue_build)
    with TestClient(app) as c:
        c.app.state.rt = rt  # type: ignore[attr-defined]
        yield c, builds
    rt.close()


def _project_with_docs(c: TestClient) -> str:
    pid: str = c.post("/projects", json={"name": "iv"}).json()["id"]
    files = [
        (
            "files",
            ("a.txt", b"The lighthouse keeper climbs the spiral stairs at dusk.", "text/plain"),
        ),
        ("files", ("b.txt", b"Quarterly revenue grew in the retail segment.", "text/plain")),
    ]
    assert c.post(f"/projects/{pid}/documents", files=files).status_code == 202
    return pid


def test_create_list_activate_rollback_drop(api: tuple[TestClient, list[uuid.UUID]]) -> None:
    c, builds = api
    pid = _project_with_docs(c)
    listed = c.get(f"/projects/{pid}/index-versions").json()
    assert listed["active"] == 1 and [v["state"] for v in listed["versions"]] == ["active"]
    assert listed["versions"][0]["progress"]["documents_done"] == 2

    # Nothing to build: the settings already are the active version.
    assert c.post(f"/projects/{pid}/index-versions", json={}).status_code == 409
    r = c.post(
        f"/projects/{pid}/index-versions",
        json={"chunk_size": 200, "chunk_overlap": 20, "activate": "manual"},
    )
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["state"] == "building" and created["version"] == 2 and created["published"]
    assert builds == [uuid.UUID(created["id"])]
    assert c.post(f"/projects/{pid}/index-versions", json={"chunk_size": 300}).status_code == 409
    # Progress in Prometheus while it builds.
    scrape = c.get("/metrics").text
    assert (
        'docvec_index_build{measure="documents_total",project="iv",state="building",version="2"}'
        " 2.0" in scrape
    )
    assert 'measure="documents_done",project="iv",state="building",version="2"} 0.0' in scrape
    # Not complete yet: activation refused, search still on version 1.
    assert c.post(f"/projects/{pid}/index-versions/2/activate").status_code == 409

    rt: Runtime = c.app.state.rt  # type: ignore[attr-defined]
    assert run_build(rt, builds[0], keep_versions=1).state == "ready"
    v2 = c.get(f"/projects/{pid}/index-versions").json()["versions"][1]
    assert v2["state"] == "ready" and v2["progress"]["documents_done"] == 2
    r = c.post(f"/projects/{pid}/index-versions/2/activate")
    assert r.status_code == 200 and r.json()["state"] == "active"
    hits = c.post(f"/projects/{pid}/search", json={"query": "lighthouse stairs"}).json()
    assert hits["results"][0]["file_name"] == "a.txt"

    # Rollback to version 1 (complete: nothing changed since), then drop version 2.
    assert c.post(f"/projects/{pid}/index-versions/1/activate").json()["state"] == "active"
    assert c.delete(f"/projects/{pid}/index-versions/1").status_code == 409  # active
    assert c.delete(f"/projects/{pid}/index-versions/2").status_code == 204
    assert [v["version"] for v in c.get(f"/projects/{pid}/index-versions").json()["versions"]] == [
        1
    ]
    assert c.post(f"/projects/{pid}/index-versions/2/cancel").status_code == 404


def test_cancel_and_bad_requests(api: tuple[TestClient, list[uuid.UUID]]) -> None:
    c, _ = api
    pid = _project_with_docs(c)
    assert c.post(f"/projects/{pid}/index-versions", json={"provider": "nope"}).status_code == 422
    assert (
        c.post(f"/projects/{pid}/index-versions", json={"api_key_env": "sk-live-123"}).status_code
        == 422
    )
    assert (
        c.post(
            f"/projects/{pid}/index-versions", json={"chunk_size": 100, "chunk_overlap": 100}
        ).status_code
        == 422
    )
    r = c.post(f"/projects/{pid}/index-versions", json={"chunk_size": 400})
    assert r.status_code == 202
    r = c.post(f"/projects/{pid}/index-versions/2/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert c.post(f"/projects/{pid}/index-versions/2/cancel").status_code == 409
    assert c.get(f"/projects/{uuid.uuid4()}/index-versions").status_code == 404
    assert c.post(f"/projects/{pid}/index-versions/9/activate").status_code == 404


def test_deleting_the_project_drops_its_own_collections(
    api: tuple[TestClient, list[uuid.UUID]],
) -> None:
    c, builds = api
    pid = _project_with_docs(c)
    assert c.post(f"/projects/{pid}/index-versions", json={"chunk_size": 300}).status_code == 202
    rt: Runtime = c.app.state.rt  # type: ignore[attr-defined]
    assert run_build(rt, builds[0], keep_versions=1).state == "active"
    own = c.get(f"/projects/{pid}/index-versions").json()["versions"][1]["collection"]
    folder = rt.settings.edge_path / own
    assert folder.is_dir()
    assert c.delete(f"/projects/{pid}").status_code == 204
    assert not folder.exists()
    assert rt.vector_store.count() == 0  # its points in the shared collection are gone too
