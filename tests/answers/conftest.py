"""Fixtures of the answer tests: the API in-process on the embedded defaults (SQLite, Qdrant Edge,
the session's real local model, uploads processed in-process), with chat settings per test, and a
reader of Server-Sent Events."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.config import ChatSettings, Settings
from app.db import migrate
from app.pipeline.process import process_document
from app.runtime import Runtime

MakeApi = Callable[..., TestClient]


@pytest.fixture
def make_api(tmp_path: Path, local_provider: Any) -> Iterator[MakeApi]:
    """``make_api(**chat_settings)``: a TestClient on a fresh data folder whose chat settings are
    ``ChatSettings(**chat_settings)``; the runtime is ``client.rt``. One client at a time (the
    embedded store opens its folder once per process)."""
    opened: list[tuple[TestClient, Runtime]] = []

    def close_all() -> None:
        while opened:
            client, rt = opened.pop()
            client.__exit__(None, None, None)
            rt.close()

    def make(**chat: Any) -> TestClient:
        close_all()
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, data_dir=tmp_path / "data", chat=ChatSettings(**chat)
        )
        migrate.upgrade(settings.sqlalchemy_url)
        rt = Runtime(settings, provider=local_provider)

        def enqueue(doc_id: uuid.UUID, generation: int) -> None:
            process_document(rt, doc_id, generation)

        client = TestClient(create_app(settings, runtime=rt, enqueue=enqueue))
        client.__enter__()
        client.rt = rt  # type: ignore[attr-defined]
        opened.append((client, rt))
        return client

    yield make
    close_all()


def add_project(client: TestClient, name: str, docs: dict[str, str], **headers: str) -> str:
    """A project with these documents (file name -> text), vectorized; returns its id."""
    r = client.post("/projects", json={"name": name}, headers=headers)
    assert r.status_code == 201, r.text
    pid = str(r.json()["id"])
    files = [("files", (n, t.encode(), "text/markdown")) for n, t in docs.items()]
    r = client.post(f"/projects/{pid}/documents", files=files, headers=headers)
    assert r.status_code == 202, r.text
    for doc in r.json()["documents"]:
        d = client.get(f"/documents/{doc['id']}", headers=headers).json()
        assert d["status"] == "vectorized", d
    return pid


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """``[(event, data)]`` of an SSE body; comments become ``(":", text)``."""
    events: list[tuple[str, Any]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        if block.startswith(":"):
            events.append((":", block[1:].strip()))
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


#: Small documents about one subject each: the handshake (split in two files) and a distractor.
HANDSHAKE = {
    "handshake.md": (
        "# The opening handshake\n\n"
        "The client opens a connection by sending an HTTP GET request with an Upgrade header "
        "and a random key. The server proves that it read the request by hashing the key with "
        "a fixed GUID and returning the result in the Accept header.\n"
    ),
    "status.md": (
        "# The server's reply\n\n"
        "When the handshake succeeds the server answers with status 101 Switching Protocols; "
        "any other status means the handshake failed and the connection is not upgraded.\n"
    ),
    "gardening.md": (
        "# Tomatoes\n\n"
        "Tomatoes need full sun, deep watering twice a week and a stake to climb on. Pinch the "
        "side shoots so that the plant puts its strength into the fruit.\n"
    ),
}
