"""Bad input answers 4xx and stores nothing: numbers JSON does not have, lone surrogates, bodies a
JSON parser cannot read, a refused multi-file upload, invisible characters in file names, a key in
the URL. Everything through the real app (SQLite, and PostgreSQL where it refuses more)."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import pkgutil
import socket
import subprocess
import sys
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app import services
from app.api import routes as routes_package
from app.api.access_log import redact_query
from app.api.main import create_app, json_safe
from app.api.strict_json import StrictJSONRoute
from app.config import Settings
from app.db import migrate
from app.runtime import Runtime
from tests.ops.harness import free_port, wait_port
from tests.security.conftest import MakeClient

JSON = {"content-type": "application/json"}

BAD_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _strict_json(r: httpx.Response) -> Any:
    """The response's body, parsed as strict JSON (valid UTF-8, no NaN/Infinity)."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in a response body")

    return json.loads(r.content.decode("utf-8"), parse_constant=refuse)


def _project(client: TestClient, name: str = "p") -> str:
    r = client.post("/projects", json={"name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _multipart(disposition: bytes, data: bytes) -> bytes:
    """One part, written by hand: HTTP clients escape names, attackers do not."""
    return (
        b"--B\r\nContent-Disposition: form-data; "
        + disposition
        + b"\r\nContent-Type: text/plain\r\n\r\n"
        + data
        + b"\r\n--B--\r\n"
    )


MULTIPART = {"content-type": "multipart/form-data; boundary=B"}


# ---- 1. numbers JSON does not have ---------------------------------------------------------------


@pytest.mark.parametrize("number", BAD_NUMBERS, ids=lambda b: b.decode())
def test_numbers_json_does_not_have_are_422(make_client: MakeClient, number: bytes) -> None:
    client = make_client(run_jobs=False)
    pid = _project(client)
    for body in (
        b'{"query": "x", "top_k": ' + number + b"}",
        b'{"query": "x", "score_threshold": ' + number + b"}",
        b'{"query": "x", "top_k": [' + number + b"]}",
        b'{"query": "x", "extra": {"deep": [1, ' + number + b"]}}",
        number,
    ):
        r = client.post(f"/projects/{pid}/search", content=body, headers=JSON)
        assert r.status_code == 422, (body, r.status_code, r.text)
        error = _strict_json(r)["detail"][0]
        assert error["type"] == "json_invalid"
        assert "NaN or Infinity" in error["ctx"]["error"] or "too large" in error["ctx"]["error"]
    r = client.post(
        "/projects", content=b'{"name": "q", "description": ' + number + b"}", headers=JSON
    )
    assert r.status_code == 422, r.text
    _strict_json(r)
    assert [p["name"] for p in client.get("/projects").json()["items"]] == ["p"]


def test_every_route_reads_its_body_as_strict_json(make_client: MakeClient) -> None:
    """Every route, today's and tomorrow's: a router without :class:`StrictJSONRoute` would read
    NaN again. And each route that takes a JSON body refuses NaN in it with a 422."""
    routers = [
        (info.name, router)
        for info in pkgutil.iter_modules(routes_package.__path__)
        for router in vars(
            importlib.import_module(f"{routes_package.__name__}.{info.name}")
        ).values()
        if isinstance(router, APIRouter)
    ]
    assert {name for name, _ in routers} >= {"documents", "health", "metrics", "projects", "status"}
    for name, router in routers:
        assert router.route_class is StrictJSONRoute, name
        assert all(isinstance(r, StrictJSONRoute) for r in router.routes if isinstance(r, APIRoute))
    client = make_client(run_jobs=False)
    pid = _project(client)
    schema = client.get("/openapi.json").json()
    with_body = [
        (path, method)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if "application/json" in op.get("requestBody", {}).get("content", {})
    ]
    assert ("/projects", "post") in with_body and ("/projects/{project_id}/search", "post") in (
        with_body
    )
    for path, method in with_body:
        r = client.request(
            method, path.format(project_id=pid), content=b'{"name": NaN}', headers=JSON
        )
        assert r.status_code == 422, (path, r.text)
        assert _strict_json(r)["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"name": "\xed\xa0\x80"}', "not valid UTF-8"),  # a surrogate encoded as UTF-8
        (b'{"name": "caf\xe9"}', "not valid UTF-8"),  # Latin-1
        (b'{"name": 1' + b"0" * 5000 + b"}", "a number is too long"),
        (b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ],
    ids=["utf8-surrogate", "latin1", "long-int", "deep"],
)
def test_bodies_a_parser_cannot_read_are_422_with_a_reason(
    make_client: MakeClient, body: bytes, reason: str
) -> None:
    """Before: FastAPI's bare 400 "There was an error parsing the body"."""
    client = make_client(run_jobs=False)
    r = client.post("/projects", content=body, headers=JSON)
    assert r.status_code == 422, r.text
    error = _strict_json(r)["detail"][0]
    assert error["type"] == "json_invalid" and reason in error["ctx"]["error"], error
    assert client.get("/projects").json()["total"] == 0


def test_json_in_utf16_is_still_read(make_client: MakeClient) -> None:
    """``json.loads`` of bytes reads UTF-16/32 (told by their first bytes); so does strict JSON."""
    client = make_client(run_jobs=False)
    r = client.post("/projects", content='{"name": "ü16"}'.encode("utf-16"), headers=JSON)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "ü16"


def test_a_deep_but_parseable_body_gets_an_encodable_422(make_client: MakeClient) -> None:
    """pydantic echoes the whole input: 900 levels must not overflow the response's encoder."""
    client = make_client(run_jobs=False)
    r = client.post(
        "/projects", content=b'{"name": ' + b"[" * 900 + b"]" * 900 + b"}", headers=JSON
    )
    assert r.status_code == 422, r.text
    assert _strict_json(r)["detail"][0]["loc"] == ["body", "name"]


def test_the_422_handler_never_echoes_what_json_cannot_carry(make_client: MakeClient) -> None:
    """The app's own RequestValidationError handler, on errors whose input and context no strict
    JSON encoder takes (no request can carry them today: the parser refuses them first)."""
    client = make_client(run_jobs=False)
    handler = client.app.exception_handlers[RequestValidationError]  # type: ignore[attr-defined]
    deep: list[Any] = []
    for _ in range(2000):
        deep = [deep]
    exc = RequestValidationError(
        [
            {"type": "x", "loc": ("body", "a"), "msg": "m", "input": float("nan")},
            {"type": "x", "loc": ("body", "b"), "msg": "m", "input": float("-inf")},
            {"type": "x", "loc": ("body", "\ud800"), "msg": "m\udfff", "input": {"\ud800": 1e400}},
            {"type": "x", "loc": ("body", "d"), "msg": "m", "input": deep},
            {"type": "x", "loc": ("body", "e"), "msg": "m", "input": "fine", "ctx": {"v": "ok"}},
        ]
    )
    response = asyncio.run(handler(None, exc))
    assert response.status_code == 422
    a, b, c, d, e = json.loads(bytes(response.body).decode("utf-8"))["detail"]
    assert (a["input"], b["input"]) == ("nan", "-inf")
    assert c == {
        "type": "x",
        "loc": ["body", "\\ud800"],
        "msg": "m\\udfff",
        "input": {"\\ud800": "inf"},
    }
    assert "..." in json.dumps(d["input"])
    assert e == {"type": "x", "loc": ["body", "e"], "msg": "m", "input": "fine", "ctx": {"v": "ok"}}


def test_json_safe_leaves_json_untouched() -> None:
    value = {"a": [1, 2.5, -0.0, None, True, "ü😀\u200d"], "b": {"c": ""}}
    assert json_safe(value) == value


# ---- 2. lone surrogates --------------------------------------------------------------------------


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"a\\udc00b", b"\\ud83d"])
def test_lone_surrogates_are_422_and_store_nothing(make_client: MakeClient, escape: bytes) -> None:
    client = make_client(run_jobs=False)
    r = client.post("/projects", content=b'{"name": "' + escape + b'"}', headers=JSON)
    assert r.status_code == 422, r.text
    assert "surrogate" in r.text and "body.name" in r.text
    _strict_json(r)
    r = client.post(
        "/projects", content=b'{"name": "n", "description": "' + escape + b'"}', headers=JSON
    )
    assert r.status_code == 422 and "body.description" in r.text, r.text
    assert client.get("/projects").json()["items"] == []
    pid = _project(client)
    for body in (
        b'{"query": "' + escape + b'"}',
        b'{"query": "x", "mode": "' + escape + b'"}',
        b'{"query": "x", "' + escape + b'": 1}',
    ):
        r = client.post(f"/projects/{pid}/search", content=body, headers=JSON)
        assert r.status_code == 422 and "surrogate" in r.text, (body, r.text)
    # A properly paired surrogate (an emoji) is an ordinary character.
    r = client.post("/projects", content=b'{"name": "\\ud83d\\ude00"}', headers=JSON)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "\U0001f600"


def test_lone_surrogates_store_nothing_in_postgresql(
    make_client: MakeClient, pg_database_url: str
) -> None:
    """PostgreSQL is where a surrogate used to fail (it cannot be encoded for the server)."""
    client = make_client(run_jobs=False, database_url=pg_database_url)
    for body in (b'{"name": "\\ud800"}', b'{"name": "ok", "description": "x\\udfffy"}'):
        r = client.post("/projects", content=body, headers=JSON)
        assert r.status_code == 422 and "surrogate" in r.text, r.text
    assert client.get("/projects").json()["total"] == 0


@pytest.mark.parametrize(
    "disposition",
    [
        # A surrogate written as UTF-8 bytes: not UTF-8, so Starlette reads the name as Latin-1.
        b'name="files"; filename="a\xed\xa0\x80.txt"',
        # JSON's escape means nothing in a header: the backslash is a path separator.
        b'name="files"; filename="\\ud800.txt"',
        # RFC 7578 forbids the extended syntax; the plain filename is the one used.
        b'name="files"; filename*=UTF-8\'\'%ED%A0%80.txt; filename="plain.txt"',
    ],
    ids=["utf8-bytes", "json-escape", "rfc5987"],
)
def test_surrogates_in_multipart_file_names_are_stored_safely(
    make_client: MakeClient, disposition: bytes
) -> None:
    client = make_client(run_jobs=False)
    pid = _project(client)
    r = client.post(
        f"/projects/{pid}/documents",
        content=_multipart(disposition, f"text {uuid.uuid4()}".encode()),
        headers=MULTIPART,
    )
    assert r.status_code == 202, r.text
    name = r.json()["documents"][0]["file_name"]
    name.encode("utf-8")  # storable and encodable
    assert "\x80" not in name and "/" not in name and "\\" not in name


@pytest.mark.parametrize(
    "disposition",
    [b'name="files"', b'name="files\xed\xa0\x80"; filename="y.txt"'],
    ids=["field-not-file", "field-name"],
)
def test_surrogates_in_multipart_form_fields_are_4xx(
    make_client: MakeClient, disposition: bytes
) -> None:
    client = make_client(run_jobs=False)
    pid = _project(client)
    r = client.post(
        f"/projects/{pid}/documents",
        content=_multipart(disposition, b"value \xed\xa0\x80 \\ud800"),
        headers=MULTIPART,
    )
    assert r.status_code == 422, r.text
    _strict_json(r)
    assert client.get(f"/projects/{pid}/documents").json()["total"] == 0
    assert _files(client.rt.storage.root) == []  # type: ignore[attr-defined]


def test_an_undecodable_file_name_from_disk_is_stored(make_client: MakeClient) -> None:
    """``docvec ingest`` names documents after files on disk; Python decodes a name that is not
    UTF-8 with surrogate escapes (``\\udcff``), which no database stores."""
    client = make_client(run_jobs=False)
    rt: Runtime = client.rt  # type: ignore[attr-defined]
    name = os.fsdecode(b"r\xe9sum\xff.txt")
    assert "\udce9" in name
    with rt.sessions() as session:
        project = services.get_or_create_project(session, name="disk")
        added = services.add_document(
            session, project=project, storage=rt.storage, file_name=name, pieces=[b"some text"]
        )
        session.commit()
        assert added.document.file_name == "r_sum_.txt"


# ---- 3. a refused upload leaves no file ----------------------------------------------------------


def test_a_refused_multi_file_upload_leaves_no_file(make_client: MakeClient) -> None:
    client = make_client(run_jobs=False, max_upload_bytes=2000)
    rt = client.rt  # type: ignore[attr-defined]
    pid = _project(client)
    kept = b"already stored before the refused request. " * 10
    assert (
        client.post(f"/projects/{pid}/documents", files=[("files", ("k.txt", kept))]).status_code
        == 202
    )
    before = _files(rt.settings.files_dir)
    assert len(before) == 1
    files = [
        ("files", ("a.txt", b"first file of the batch, small enough. " * 5)),
        ("files", ("k-again.txt", kept)),  # same bytes as a committed document: must stay
        ("files", ("big.txt", b"x" * 5000)),
    ]
    r = client.post(f"/projects/{pid}/documents", files=files)
    assert r.status_code == 413, r.text
    assert _files(rt.settings.files_dir) == before
    assert client.get(f"/projects/{pid}/documents").json()["total"] == 1


def test_a_refused_upload_keeps_bytes_another_project_references(make_client: MakeClient) -> None:
    """Files are content-addressed across projects: a new document in project B with the bytes of
    one in project A shares A's file, which the refusal must not delete."""
    client = make_client(run_jobs=False, max_upload_bytes=2000)
    rt = client.rt  # type: ignore[attr-defined]
    shared = b"bytes that project A already holds. " * 10
    a, b = _project(client, "a"), _project(client, "b")
    assert client.post(f"/projects/{a}/documents", files=[("files", ("s.txt", shared))]).is_success
    before = _files(rt.settings.files_dir)
    files = [
        ("files", ("s.txt", shared)),  # created in B (a new document), the same file on disk
        ("files", ("new.txt", b"only in this refused request. " * 5)),
        ("files", ("big.txt", b"x" * 5000)),
    ]
    r = client.post(f"/projects/{b}/documents", files=files)
    assert r.status_code == 413, r.text
    assert _files(rt.settings.files_dir) == before
    assert client.get(f"/projects/{b}/documents").json()["total"] == 0
    doc = client.get(f"/projects/{a}/documents").json()["items"][0]
    assert rt.storage.read(f"local:{doc['sha256'][:2]}/{doc['sha256']}") == shared


def test_an_upload_failing_midway_leaves_no_file(make_client: MakeClient) -> None:
    """Not only a 413: a request that fails for any reason after storing its first files (here the
    storage folder of the second file is blocked by a plain file) takes them away."""
    import hashlib

    client = make_client(run_jobs=False)
    rt = client.rt  # type: ignore[attr-defined]
    pid = _project(client)
    first, second = b"the first file of the request. " * 5, b"the second, which fails. " * 5
    blocker = rt.storage.root / hashlib.sha256(second).hexdigest()[:2]
    assert hashlib.sha256(first).hexdigest()[:2] != blocker.name
    rt.storage.root.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"")  # where the second file's folder must go
    with pytest.raises(OSError):
        client.post(
            f"/projects/{pid}/documents",
            files=[("files", ("1.txt", first)), ("files", ("2.txt", second))],
        )
    assert _files(rt.storage.root) == [blocker]
    assert client.get(f"/projects/{pid}/documents").json()["total"] == 0


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        (b"text/pl\x00ain", "control character"),
        (b"text/plain; x=" + b"a" * 100, "longer than 100 characters"),
    ],
    ids=["nul", "too-long"],
)
def test_a_part_content_type_postgresql_cannot_store_is_422(
    make_client: MakeClient, pg_database_url: str, content_type: bytes, reason: str
) -> None:
    """Before: 500 on PostgreSQL (NUL in text; ``content_type`` is ``VARCHAR(100)``)."""
    client = make_client(run_jobs=False, database_url=pg_database_url)
    pid = _project(client)
    body = (
        b'--B\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nthe first part is fine\r\n"
        b'--B\r\nContent-Disposition: form-data; name="files"; filename="b.txt"\r\n'
        b"Content-Type: " + content_type + b"\r\n\r\nthe second is not\r\n--B--\r\n"
    )
    r = client.post(f"/projects/{pid}/documents", content=body, headers=MULTIPART)
    assert r.status_code == 422 and reason in r.json()["detail"], r.text
    assert client.get(f"/projects/{pid}/documents").json()["total"] == 0
    assert _files(client.rt.storage.root) == []  # type: ignore[attr-defined]
    ok = _multipart(b'name="files"; filename="c.txt"', b"a tab is whitespace")
    r = client.post(
        f"/projects/{pid}/documents",
        content=ok.replace(b"text/plain", b"text/plain;\tcharset=utf-8"),
        headers=MULTIPART,
    )
    assert r.status_code == 202, r.text


# ---- 4. invisible characters in file names -------------------------------------------------------

BIDI_CONTROLS = [
    "\u061c",  # ARABIC LETTER MARK
    "\u200e",  # LEFT-TO-RIGHT MARK
    "\u200f",  # RIGHT-TO-LEFT MARK
    *[chr(c) for c in range(0x202A, 0x202F)],  # embeddings, pop, overrides
    *[chr(c) for c in range(0x2066, 0x206A)],  # isolates
]


@pytest.mark.parametrize("mark", BIDI_CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_bidi_controls_leave_file_names(mark: str) -> None:
    name = services.sanitize_file_name(f"invoice{mark}fdp.exe{mark}.pdf")
    assert mark not in name
    assert name == "invoice_fdp.exe_.pdf"


def test_every_format_control_leaves_file_names_but_the_joiners() -> None:
    """One rule for the whole category, so no mark survives while its sibling is removed: every
    Cf character of the Unicode database, the surrogates and the line/paragraph separators."""
    unsafe = [
        chr(c)
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) in ("Cf", "Cs", "Zl", "Zp")
    ]
    assert len(unsafe) > 2000  # 170 format characters and 2048 surrogates in Unicode 15
    kept = [c for c in unsafe if c in services.sanitize_file_name(f"a{c}b.txt")]
    assert kept == ["\u200c", "\u200d"]  # emoji sequences and Indic/Persian names need them
    assert services.sanitize_file_name("👩\u200d💻 notes.md") == "👩\u200d💻 notes.md"
    assert services.sanitize_file_name("re\u00adsum\u00e9\u2060.pdf") == "re_sumé_.pdf"
    # Tag characters hide ASCII ("ASCII smuggling"): a run of them is one "_".
    assert services.sanitize_file_name("ok" + "".join(chr(0xE0000 + ord(c)) for c in "evil")) == (
        "ok_"
    )


def test_an_arabic_letter_mark_is_removed_through_the_api(make_client: MakeClient) -> None:
    client = make_client(run_jobs=False)
    pid = _project(client)
    r = client.post(
        f"/projects/{pid}/documents",
        content=_multipart(
            'name="files"; filename="\u0641\u0627\u062a\u0648\u0631\u0629\u061c.txt"'.encode(),
            b"an invoice",
        ),
        headers=MULTIPART,
    )
    assert r.status_code == 202, r.text
    assert r.json()["documents"][0]["file_name"] == "\u0641\u0627\u062a\u0648\u0631\u0629_.txt"


# ---- 5. a key in the URL -------------------------------------------------------------------------


def _docvec(*args: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "docvec"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_key_in_the_url_never_reaches_the_access_log_nor_authenticates(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCVEC_")}
    env.update(DOCVEC_DATA_DIR=str(tmp_path / "data"), DOCVEC_LOG_LEVEL="INFO")
    _docvec("migrate", env=env, cwd=tmp_path)
    secret = json.loads(
        _docvec("keys", "create", "k", "--all-projects", "--json", env=env, cwd=tmp_path)
    )["secret"]
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "docvec"), "api", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_port(port, timeout=120)
        base = f"http://127.0.0.1:{port}"
        queries = (
            f"api_key={secret}",
            f"a=1&token={secret}",
            f"API-KEY={secret}&x=2",
            f"key={secret}",
            f"access_token={secret}",
            f"x-api-key={secret}",
            f"api%5Fkey={secret}",
            f"q={secret}",  # a parameter of any name: the key is known by its prefix
        )
        for query in queries:
            # The API reads keys only from the Authorization header (app/api/auth.py).
            r = httpx.get(f"{base}/projects?{query}", timeout=30)
            assert r.status_code == 401, (query, r.text)
        r = httpx.get(f"{base}/projects", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 200, r.text
        assert httpx.get(f"{base}/documents/{secret}", timeout=30).status_code == 401
        httpx.get(f"{base}/healthz?page=2", timeout=30)
        deadline = time.monotonic() + 30
        while "page=2" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    text = log.read_text(errors="replace")
    assert "GET /projects?api_key=[redacted]" in text, text[-3000:]
    for redacted in (
        "token=[redacted]",
        "API-KEY=[redacted]&x=2",
        "?key=[redacted]",
        "access_token=[redacted]",
        "x-api-key=[redacted]",
        "api%5Fkey=[redacted]",
        "?q=dvk_[redacted]",
        "/documents/dvk_[redacted]",
    ):
        assert redacted in text, (redacted, text[-3000:])
    assert "/healthz?page=2" in text  # other parameters are kept
    assert secret not in text and secret[4:] not in text


@pytest.fixture
def uvicorn_default_logging(tmp_path: Path) -> Iterator[tuple[str, list[logging.LogRecord]]]:
    """The app under uvicorn with uvicorn's *own* logging configuration — what
    ``uvicorn app.api.main:create_app --factory`` runs — and one more handler on its access
    logger; yields the base URL and the records that handler received."""
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings)
    app = create_app(settings, runtime=rt, enqueue=lambda *_: None)
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, access_log=True, timeout_graceful_shutdown=2))
    access = logging.getLogger("uvicorn.access")
    handler = Collect()
    access.addHandler(handler)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", records
    finally:
        server.should_exit = True
        thread.join(10)
        access.removeHandler(handler)
        rt.close()


def test_any_server_running_the_app_redacts_its_access_log(
    uvicorn_default_logging: tuple[str, list[logging.LogRecord]],
) -> None:
    base, records = uvicorn_default_logging
    secret = "dvk_" + "S" * 43
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get(f"/projects?api_key={secret}&limit=5").status_code == 200
        assert http.get("/healthz?token=abc").status_code == 200
    lines = [r.getMessage() for r in records]
    assert any("/projects?api_key=[redacted]&limit=5" in line for line in lines), lines
    assert any("/healthz?token=[redacted]" in line for line in lines), lines
    assert not any(secret in line or "token=abc" in line for line in lines)
    # uvicorn's access formatter still gets the five arguments it unpacks.
    assert all(isinstance(r.args, tuple) and len(r.args) == 5 for r in records)


def test_redaction_keeps_what_is_not_a_credential() -> None:
    assert redact_query("/s?q=monkeys&keyword=x&key=1") == "/s?q=monkeys&keyword=x&key=[redacted]"
    assert redact_query("/a?password=p#frag") == "/a?password=[redacted]#frag"
    assert redact_query("/a?client_secret=c&sort=asc") == "/a?client_secret=[redacted]&sort=asc"
    assert redact_query("/a?token=&b=1") == "/a?token=&b=1"  # nothing to hide
    assert redact_query("/healthz") == "/healthz"


def test_a_secret_in_a_format_string_is_redacted_without_breaking_the_record() -> None:
    from app.api.access_log import RedactQuerySecrets

    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "GET /a?token=%s&n=%d", ("t0k", 2), None
    )
    assert RedactQuerySecrets().filter(record)
    assert record.getMessage() == "GET /a?token=[redacted]&n=2"
