"""Upload limits: enforced while the body streams in, before it is read or spooled; file names
sanitised and never used to address stored files; 413 / 415 / 422 for what cannot be stored."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.api.limits import MAX_JSON_BODY_BYTES, BodySizeLimit
from app.api.main import create_app
from app.config import Settings
from app.db import migrate
from app.runtime import Runtime
from tests.security.conftest import MakeClient

MIB = 1024 * 1024


# ---- the middleware alone, at the ASGI level -----------------------------------------------------


async def _echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, then answers 200 with its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"size": size}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _call(
    path: str, pieces: list[bytes], *, content_length: int | None, upload_limit: int = 1000
) -> tuple[int, dict[str, Any], int]:
    """Run one request through the middleware; returns (status, JSON body, pieces read)."""
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        if read > len(pieces):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": pieces[read - 1], "more_body": read < len(pieces)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    app = BodySizeLimit(_echo_app, upload_limit=upload_limit)
    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    if status == 413:
        assert (b"connection", b"close") in sent[0]["headers"]
    return status, body, read


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    pid = uuid.uuid4()
    status, body, read = _call(
        f"/projects/{pid}/documents", [b"x" * 100] * 50, content_length=5 * 1024**3
    )
    assert status == 413 and read == 0
    assert body["detail"] == "the request body is larger than the limit of 1,000 bytes"


def test_streamed_body_is_cut_off_at_the_limit() -> None:
    pid = uuid.uuid4()
    # No Content-Length (chunked): 10 pieces of 300 bytes against a 1000-byte limit.
    status, _, read = _call(f"/projects/{pid}/documents", [b"x" * 300] * 10, content_length=None)
    assert status == 413 and read == 4  # the 4th piece passes 1000 bytes; the rest is never read
    # A lying Content-Length does not help either.
    status, _, read = _call(f"/projects/{pid}/documents", [b"x" * 300] * 10, content_length=10)
    assert status == 413 and read == 4
    # Under the limit, the body goes through untouched.
    status, body, _ = _call(f"/projects/{pid}/documents", [b"x" * 300] * 3, content_length=900)
    assert status == 200 and body == {"size": 900}


def test_other_routes_take_small_bodies_only() -> None:
    status, _, read = _call("/projects", [b"x"], content_length=MAX_JSON_BODY_BYTES + 1)
    assert status == 413 and read == 0
    status, body, _ = _call("/projects", [b"x" * 5000], content_length=5000)
    assert status == 200 and body == {"size": 5000}


# ---- through the API -----------------------------------------------------------------------------


def _project(client: Any) -> str:
    r = client.post("/projects", json={"name": f"p-{uuid.uuid4().hex[:6]}"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _stored(client: Any) -> list[Path]:
    root = client.rt.storage.root
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_request_cap_covers_several_files(make_client: MakeClient) -> None:
    client = make_client(run_jobs=False, max_upload_bytes=100_000)
    pid = _project(client)
    # Each file is under the per-file limit; together they pass the request's (100 kB + 1 MiB).
    files = [("files", (f"f{i}.txt", b"word " * 60_000, "text/plain")) for i in range(5)]
    r = client.post(f"/projects/{pid}/documents", files=files)
    assert r.status_code == 413, r.text
    assert "larger than the limit of 1,148,576 bytes" in r.json()["detail"]
    assert _stored(client) == [] and client.queued == []  # type: ignore[attr-defined]


def test_per_file_limit_with_a_larger_request_cap(make_client: MakeClient) -> None:
    client = make_client(run_jobs=False, max_upload_bytes=1000, max_request_bytes=10 * MIB)
    pid = _project(client)
    files = [
        ("files", ("small.txt", b"small enough " * 10, "text/plain")),
        ("files", ("big.txt", b"too big " * 1000, "text/plain")),
    ]
    r = client.post(f"/projects/{pid}/documents", files=files)
    assert r.status_code == 413 and "big.txt" in r.json()["detail"]
    # Nothing recorded, nothing queued, no partial file left behind.
    assert client.get(f"/projects/{pid}/documents").json()["total"] == 0
    assert client.queued == []  # type: ignore[attr-defined]
    assert all(not p.name.startswith(".upload-") for p in _stored(client))


def test_too_many_files_in_one_request(make_client: MakeClient) -> None:
    client = make_client(run_jobs=False)
    pid = _project(client)
    files = [("files", (f"f{i}.txt", f"file {i}".encode(), "text/plain")) for i in range(1001)]
    r = client.post(f"/projects/{pid}/documents", files=files)
    assert r.status_code == 400, r.text
    assert client.get(f"/projects/{pid}/documents").json()["total"] == 0


def test_json_body_over_a_mebibyte(make_client: MakeClient) -> None:
    client = make_client(run_jobs=False)
    r = client.post("/projects", json={"name": "x", "description": "d" * (2 * MIB)})
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\system.ini.md", "system.ini.md"),
        ("\x1b[31mred\x07.md", "_[31mred_.md"),
        ("invoice\u202efdp.exe.txt", "invoice_fdp.exe.txt"),
        ("..", "unnamed"),
        ("a" * 300 + ".txt", "a" * 196 + ".txt"),
    ],
)
def test_file_names_are_sanitised_and_never_used_on_disk(
    make_client: MakeClient, given: str, stored: str
) -> None:
    client = make_client(run_jobs=False)
    pid = _project(client)
    text = f"Some text for {uuid.uuid4()}.".encode()
    # Written by hand: HTTP clients escape control characters in file names, attackers do not.
    body = (
        b'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="'
        + given.encode()
        + b'"\r\nContent-Type: text/plain\r\n\r\n'
        + text
        + b"\r\n--b0undary--\r\n"
    )
    r = client.post(
        f"/projects/{pid}/documents",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=b0undary"},
    )
    assert r.status_code == 202, r.text
    assert r.json()["documents"][0]["file_name"] == stored
    doc = client.get(f"/documents/{r.json()['documents'][0]['id']}").json()
    assert doc["file_name"] == stored
    # The stored file is addressed by its SHA-256, under the storage folder and nowhere else.
    (path,) = _stored(client)
    assert re.fullmatch(r"[0-9a-f]{64}", path.name) and path.name == doc["sha256"]
    assert path.parent.parent == client.rt.storage.root  # type: ignore[attr-defined]


def test_empty_and_unsupported_files(make_client: MakeClient) -> None:
    client = make_client(run_jobs=False)
    pid = _project(client)
    r = client.post(f"/projects/{pid}/documents", files=[("files", ("e.pdf", b"", "x/y"))])
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    elf = b"\x7fELF\x02\x01\x01" + bytes(200)
    r = client.post(
        f"/projects/{pid}/documents", files=[("files", ("notes.txt", elf, "text/plain"))]
    )
    assert r.status_code == 415
    detail = r.json()["detail"]
    assert "an ELF executable" in detail["message"]
    assert set(detail["supported_types"]) == {
        "application/pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "text/markdown",
        "text/plain",
        # Read by OCR (app/pipeline/extract/images.py).
        "image/png",
        "image/jpeg",
        "image/tiff",
        "image/webp",
    }


@pytest.mark.parametrize(
    ("params", "ok"),
    [
        ({"limit": 500, "offset": 0}, True),
        ({"limit": 501}, False),
        ({"limit": 0}, False),
        ({"offset": -1}, False),
        ({"offset": 2**31 - 1}, True),
        ({"offset": 2**63}, False),
    ],
)
def test_every_list_endpoint_is_paginated_and_bounded(
    make_client: MakeClient, params: dict[str, int], ok: bool
) -> None:
    client = make_client(run_jobs=False)
    pid = _project(client)
    r = client.post(
        f"/projects/{pid}/documents", files=[("files", ("a.txt", b"hello " * 50, "text/plain"))]
    )
    doc = r.json()["documents"][0]["id"]
    for path in ("/projects", f"/projects/{pid}/documents", f"/documents/{doc}/chunks"):
        r = client.get(path, params=params)
        assert r.status_code == (200 if ok else 422), (path, params, r.text)
        if ok:
            page = r.json()
            assert set(page) == {"items", "total", "limit", "offset"}
            assert len(page["items"]) <= page["limit"]


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ({"query": "x" * 8000, "top_k": 100, "score_threshold": -1}, True),
        ({"query": "x" * 8001}, False),
        ({"query": ""}, False),
        ({"query": "x", "top_k": 101}, False),
        ({"query": "x", "top_k": 0}, False),
        ({"query": "x", "score_threshold": 1.01}, False),
        ({"query": "x", "score_threshold": -1.01}, False),
    ],
)
def test_search_is_bounded(make_client: MakeClient, body: dict[str, Any], ok: bool) -> None:
    client = make_client(run_jobs=False)
    pid = _project(client)
    r = client.post(f"/projects/{pid}/search", json=body)
    assert r.status_code == (200 if ok else 422), r.text


# ---- a real server: a 1 GiB upload is cut off after the limit, not read to the end ------------


@pytest.fixture
def live_server(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[str]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path / "live", max_upload_bytes=MIB
    )
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings)
    app = create_app(settings, runtime=rt, enqueue=lambda *_: None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    caplog.set_level(logging.DEBUG)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="debug", access_log=True, timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        rt.close()


def test_live_server_cuts_off_a_huge_streamed_upload(
    live_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    with httpx.Client(base_url=live_server, timeout=30) as http:
        pid = http.post("/projects", json={"name": "live"}).json()["id"]
        sent = 0
        total = 1024 * MIB

        def body() -> Iterator[bytes]:
            nonlocal sent
            boundary = b"--b0undary\r\n"
            yield (
                boundary + b'Content-Disposition: form-data; name="files"; filename="huge.txt"\r\n'
            )
            yield b"Content-Type: text/plain\r\n\r\n"
            piece = b"word " * (MIB // 5)
            while sent < total:
                sent += len(piece)
                yield piece

        started = time.monotonic()
        request = http.build_request(
            "POST",
            f"/projects/{pid}/documents",
            content=body(),  # no Content-Length: chunked transfer encoding
            headers={"content-type": "multipart/form-data; boundary=b0undary"},
        )
        # The status line is what counts: the server closes the connection with the rest of the
        # upload unread, and the kernel may then reset it before the client reads the JSON body.
        r = http.send(request, stream=True)
        r.close()
        assert r.status_code == 413
        assert time.monotonic() - started < 20
        # The server stopped reading at about the limit (2 MiB), not at the end of 1 GiB; what the
        # client could still push is whatever the socket buffers took.
        assert sent < 64 * MIB, sent
        # An announced 5 GB is refused on the headers alone: no byte of the body is sent.
        host, port = live_server.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(
                f"POST /projects/{pid}/documents HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: multipart/form-data; boundary=x\r\n"
                "Content-Length: 5368709120\r\n\r\n".encode()
            )
            answer = raw.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
        # Keys never reach the logs, even with uvicorn's access log at DEBUG.
        secret = "dvk_" + "S" * 43
        assert (
            http.get("/projects", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
        )
    assert "POST /projects/" in caplog.text  # the access log is captured...
    assert secret not in caplog.text  # ...and holds no key
