"""Bad input answers 4xx and stores nothing: numbers JSON does not have, lone surrogates, a
refused multi-file upload, invisible characters in file names, a key in the URL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app import services
from app.api.access_log import redact_query
from tests.ops.harness import free_port, wait_port
from tests.security.conftest import MakeClient

JSON = {"content-type": "application/json"}

BAD_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("number", BAD_NUMBERS, ids=lambda b: b.decode())
def test_numbers_json_does_not_have_are_422(make_client: MakeClient, number: bytes) -> None:
    client = make_client(run_jobs=False)
    pid = client.post("/projects", json={"name": "p"}).json()["id"]
    for body in (
        b'{"query": "x", "top_k": ' + number + b"}",
        b'{"query": "x", "score_threshold": ' + number + b"}",
        b'{"query": "x", "top_k": [' + number + b"]}",
    ):
        r = client.post(f"/projects/{pid}/search", content=body, headers=JSON)
        assert r.status_code == 422, (body, r.status_code, r.text)
        assert r.json()["detail"][0]["type"] == "json_invalid"
    r = client.post(
        "/projects", content=b'{"name": "q", "description": ' + number + b"}", headers=JSON
    )
    assert r.status_code == 422, r.text
    assert [p["name"] for p in client.get("/projects").json()["items"]] == ["p"]


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"a\\udc00b", b"\\ud83d"])
def test_lone_surrogates_are_422_and_store_nothing(make_client: MakeClient, escape: bytes) -> None:
    client = make_client(run_jobs=False)
    r = client.post("/projects", content=b'{"name": "' + escape + b'"}', headers=JSON)
    assert r.status_code == 422, r.text
    assert "surrogate" in r.text and "body.name" in r.text
    assert client.get("/projects").json()["items"] == []
    pid = client.post("/projects", json={"name": "p"}).json()["id"]
    r = client.post(
        f"/projects/{pid}/search", content=b'{"query": "' + escape + b'"}', headers=JSON
    )
    assert r.status_code == 422, r.text
    # A properly paired surrogate (an emoji) is an ordinary character.
    r = client.post("/projects", content=b'{"name": "\\ud83d\\ude00"}', headers=JSON)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "\U0001f600"


def test_a_refused_multi_file_upload_leaves_no_file(make_client: MakeClient) -> None:
    client = make_client(run_jobs=False, max_upload_bytes=2000)
    rt = client.rt  # type: ignore[attr-defined]
    pid = client.post("/projects", json={"name": "p"}).json()["id"]
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


@pytest.mark.parametrize(
    "mark",
    [
        "\u061c",
        "\u200e",
        "\u200f",
        "\u202a",
        "\u202b",
        "\u202d",
        "\u202e",
        "\u2066",
        "\u2067",
        "\u2068",
        "\u2069",
        "\u2028",
    ],
)
def test_invisible_format_characters_leave_file_names(mark: str) -> None:
    name = services.sanitize_file_name(f"invoice{mark}fdp.exe{mark}.pdf")
    assert mark not in name
    assert name == "invoice_fdp.exe_.pdf"


def test_a_key_in_the_url_never_reaches_the_access_log(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCVEC_")}
    env.update(DOCVEC_DATA_DIR=str(tmp_path / "data"), DOCVEC_LOG_LEVEL="INFO")
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
        secret = "dvk_Sup3rS3cretValue"
        for query in (f"api_key={secret}", f"a=1&token={secret}", f"API-KEY={secret}&x=2"):
            r = httpx.get(f"{base}/projects?{query}", timeout=30)
            # The API reads keys only from the Authorization header; none exist, so it is open.
            assert r.status_code == 200, r.text
        httpx.get(f"{base}/healthz?page=2", timeout=30)
        deadline = time.monotonic() + 30
        while "page=2" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    text = log.read_text(errors="replace")
    assert "GET /projects?api_key=[redacted]" in text, text[-3000:]
    assert "token=[redacted]" in text and "API-KEY=[redacted]&x=2" in text
    assert "/healthz?page=2" in text  # other parameters are kept
    assert secret not in text


def test_redaction_keeps_what_is_not_a_credential() -> None:
    assert redact_query("/s?q=monkey&keyword=x&key=1") == "/s?q=monkey&keyword=x&key=[redacted]"
    assert redact_query("/a?password=p#frag") == "/a?password=[redacted]#frag"
