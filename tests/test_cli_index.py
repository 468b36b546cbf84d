"""``docvec index``: the model-change path as a user runs it on the embedded defaults — a new
version built here, listed, rolled back, dropped; and ``docvec ingest`` refusing settings that
describe another index than the project's active version."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.test_cli import _docvec


def test_index_create_list_activate_drop_and_refusal(tmp_path: Path, corpus: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCVEC_")}
    env["DOCVEC_DATA_DIR"] = str(tmp_path / "state")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rfc.txt").write_bytes((corpus / "text/txt/rfc1035.txt").read_bytes()[:6000])
    r = _docvec("ingest", str(docs), "--project", "p", "--json", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]

    r = _docvec(
        "index", "create", "--project", "p", "--chunk-size", "400", "--chunk-overlap", "50",
        "--json", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    listed = json.loads(r.stdout.splitlines()[-1])
    states = {v["version"]: v["state"] for v in listed["versions"]}
    assert states == {1: "retired", 2: "active"}
    v2 = listed["versions"][1]
    assert v2["chunking"]["chunk_size"] == 400 and v2["progress"]["documents_done"] == 1

    r = _docvec("search", "ARCOUNT", "--project", "p", "--json", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    hits = json.loads(r.stdout)["results"]
    assert hits and len(hits[0]["text"]) <= 400

    r = _docvec("index", "activate", "1", "--project", "p", "--json", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _docvec("index", "drop", "2", "--project", "p", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _docvec("index", "list", "--project", "p", "--json", env=env, cwd=tmp_path)
    assert [v["state"] for v in json.loads(r.stdout)["versions"]] == ["active"]
    r = _docvec("index", "drop", "1", "--project", "p", env=env, cwd=tmp_path)
    assert r.returncode == 1 and "active" in r.stderr

    # A same-size change of the query prefix without a new version: refused before any work.
    refused = {**env, "DOCVEC_EMBEDDING__QUERY_PREFIX": "query: "}
    (docs / "more.txt").write_text("Another document that must not be embedded.")
    r = _docvec("ingest", str(docs), "--project", "p", env=refused, cwd=tmp_path)
    assert r.returncode == 1
    assert "query_prefix" in r.stderr and "docvec index create" in r.stderr
