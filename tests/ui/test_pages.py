"""Every console page through FastAPI's TestClient: the HTML, the forms as a browser without
JavaScript sends them, sign-in and project scopes, and CSRF refusals.

The app is the real one (SQLite, Qdrant Edge, the local model); uploads are vectorized in the
request (the enqueuer runs the pipeline function), so a page read after an upload shows the
outcome.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import json
import re
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app import apikeys
from app.api.ui import live
from app.db.models import ApiKey, Document, DocumentStatus, Project
from tests.ui.conftest import create_project, csrf_of, make_key

MD = "text/md/en/fastapi__features.md"
BROKEN_PDF = "pdf/broken/truncated-pdflatex-4-pages.pdf"
EMPTY = "text/edge_cases/empty.txt"
TYPES = "text/md/en/fastapi__python-types.md"


def _files(corpus: Path, *names: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("files", (Path(n).name, (corpus / n).read_bytes(), "application/octet-stream"))
        for n in names
    ]


def _project_rows(client: TestClient, pid: str) -> dict[str, str]:
    """File name -> the row's status word, from the project page's HTML."""
    page = client.get(f"/ui/projects/{pid}").text
    rows = re.findall(
        r'<tr id="doc-[^"]+" class="status-(\w+)".*?<a href="/ui/documents/[^"]+">([^<]+)</a>',
        page,
        re.S,
    )
    return {name: status for status, name in rows}


def test_projects_page_creates_projects_and_says_why_not(console: TestClient) -> None:
    page = console.get("/ui/projects")
    assert page.status_code == 200
    assert "No projects yet" in page.text and 'action="/ui/projects"' in page.text
    assert "Open: no API keys in use" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    token = csrf_of(console)

    pid = create_project(console, "handbook", token)
    shown = console.get(f"/ui/projects/{pid}?notice=created")
    assert "<h1>handbook</h1>" in shown.text and "Project created." in shown.text
    assert f'href="/ui/projects/{pid}"' in console.get("/ui/projects").text

    again = console.post("/ui/projects", data={"name": "handbook", "csrf_token": token})
    assert again.status_code == 409 and "already exists" in again.text
    bad = console.post("/ui/projects", data={"name": "a\x07b", "csrf_token": token})
    assert bad.status_code == 422 and "name" in bad.text
    with console.rt.sessions() as s:  # type: ignore[attr-defined]
        assert [p.name for p in s.scalars(select(Project))] == ["handbook"]


def test_forms_without_a_valid_csrf_token_change_nothing(console: TestClient) -> None:
    token = csrf_of(console)
    pid = create_project(console, "kept", token)
    refused = [
        console.post("/ui/projects", data={"name": "no-token"}),
        console.post("/ui/projects", data={"name": "forged", "csrf_token": token[:-2] + "xx"}),
        console.post(f"/ui/projects/{pid}/delete", data={}),
        console.post(
            f"/ui/projects/{pid}/answer-stream",
            json={"question": "q"},
            headers={"Accept": "text/event-stream"},
        ),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert "reload the page" in refused[0].text

    # A token is bound to its browser's nonce: another browser's token does not pass.
    other = TestClient(console.app)
    other_token = csrf_of(other)
    assert other_token != token
    stolen = console.post(f"/ui/projects/{pid}/delete", data={"csrf_token": other_token})
    assert stolen.status_code == 403
    # Without the nonce cookie the right token is refused too (a page of another site).
    bare = TestClient(console.app)
    assert bare.post(f"/ui/projects/{pid}/delete", data={"csrf_token": token}).status_code == 403
    with console.rt.sessions() as s:  # type: ignore[attr-defined]
        assert [p.name for p in s.scalars(select(Project))] == ["kept"]


def test_upload_form_answers_each_file_and_shows_failures(
    console: TestClient, corpus: Path, tmp_path: Path
) -> None:
    token = csrf_of(console)
    pid = create_project(console, "docs", token)
    big = tmp_path / "big.md"
    big.write_text("# Big\n\n" + "lorem ipsum dolor sit amet " * 4000)  # over the 64 KiB limit
    archive = tmp_path / "notes.txt"
    archive.write_bytes(gzip.compress(b"not a text file" * 100))
    files = [
        *_files(corpus, MD, BROKEN_PDF, EMPTY),
        ("files", ("big.md", big.read_bytes(), "text/markdown")),
        ("files", ("notes.txt", archive.read_bytes(), "text/plain")),
        *_files(corpus, MD),
    ]
    # The form as a browser without JavaScript sends it: one request, the files together.
    page = console.post(f"/ui/projects/{pid}/documents", data={"csrf_token": token}, files=files)
    assert page.status_code == 200
    answers = re.findall(
        r'<li class="outcome-([\w-]+)"><span class="file">([^<]+)</span>: ([^<]+)', page.text
    )
    by_outcome = [(outcome, name) for outcome, name, _ in answers]
    assert by_outcome == [
        ("created", "fastapi__features.md"),
        ("created", "truncated-pdflatex-4-pages.pdf"),
        ("invalid", "empty.txt"),
        ("too-large", "big.md"),
        ("unsupported", "notes.txt"),
        ("duplicate", "fastapi__features.md"),
    ]
    words = {name: text for _, name, text in answers}
    assert "the file is empty" in words["empty.txt"]
    assert "65,536" in words["big.md"] or "65536" in words["big.md"]
    assert "gzip" in words["notes.txt"] and "text/markdown" in words["notes.txt"]

    # The failed document is red with its reason and never "vectorized".
    assert _project_rows(console, pid) == {
        "fastapi__features.md": "vectorized",
        "truncated-pdflatex-4-pages.pdf": "failed",
    }
    html = console.get(f"/ui/projects/{pid}").text
    failed_row = re.search(r'<tr id="doc-[^"]+" class="status-failed".*?</tr>', html, re.S)
    assert failed_row and "✗</span> failed" in failed_row.group()
    assert "<strong>extract:</strong>" in failed_row.group() and "PDF" in failed_row.group()
    assert "Retry" in failed_row.group()
    progress = re.search(r'<p id="progress-text"[^>]*>(.*?)</p>', html, re.S)
    assert progress and " ".join(progress.group(1).split()) == (
        "<strong>2 of 2</strong> documents done (100 %): 1 vectorized, 1 failed, 0 in progress"
    )
    assert '<progress id="progress" max="2" value="2"' in html

    # The same form from the script: one file per request, the answer as JSON.
    scripted = console.post(
        f"/ui/projects/{pid}/documents",
        files=_files(corpus, EMPTY),
        headers={"Accept": "application/json", "X-CSRF-Token": token},
    )
    assert scripted.status_code == 200
    [result] = scripted.json()["results"]
    assert result["outcome"] == "invalid" and result["status_code"] == 422


def test_document_page_attempts_chunks_and_actions(console: TestClient, corpus: Path) -> None:
    token = csrf_of(console)
    pid = create_project(console, "docs", token)
    console.post(
        f"/ui/projects/{pid}/documents",
        data={"csrf_token": token},
        files=_files(corpus, "pdf/text/pdflatex-4-pages.pdf", BROKEN_PDF),
    )
    with console.rt.sessions() as s:  # type: ignore[attr-defined]
        docs = {d.file_name: d for d in s.scalars(select(Document))}
    good, bad = docs["pdflatex-4-pages.pdf"], docs["truncated-pdflatex-4-pages.pdf"]
    assert good.status == DocumentStatus.vectorized and good.chunk_count > 1

    page = console.get(f"/ui/documents/{good.id}", params={"chunk": 1})
    assert page.status_code == 200
    assert "✓</span> vectorized" in page.text and "succeeded" in page.text
    assert re.search(r"<span>embed \d+</span>", page.text), "timings per stage"
    assert 'id="chunk-1" class="chunk opened"' in page.text
    assert re.search(r"Chunk 0 · page 1 ·", page.text)
    assert f'Chunks <span class="help">({good.chunk_count})' in page.text

    failed = console.get(f"/ui/documents/{bad.id}")
    assert "Failed at <strong>extract</strong>" in failed.text and 'role="alert"' in failed.text
    assert "CorruptDocument" in failed.text and "No chunks: the document failed." in failed.text

    retried = console.post(
        f"/ui/documents/{bad.id}/revectorize",
        data={"csrf_token": token, "next": f"/ui/projects/{pid}"},
        follow_redirects=False,
    )
    assert retried.status_code == 303
    assert retried.headers["location"] == f"/ui/projects/{pid}?notice=revectorizing"
    # An attempt more, failed again for the same reason.
    assert _project_rows(console, pid)["truncated-pdflatex-4-pages.pdf"] == "failed"
    assert console.get(f"/ui/documents/{bad.id}").text.count("CorruptDocument") == 2
    assert (
        "<strong>CorruptDocument</strong> at extract" in console.get(f"/ui/documents/{bad.id}").text
    )
    # A redirect never leaves the console.
    away = console.post(
        f"/ui/documents/{bad.id}/revectorize",
        data={"csrf_token": token, "next": "https://example.org/"},
        follow_redirects=False,
    )
    assert away.headers["location"].startswith(f"/ui/documents/{bad.id}")

    state = console.get(f"/ui/projects/{pid}/state").json()
    assert state["progress"] == {
        "total": 2,
        "done": 2,
        "vectorized": 1,
        "failed": 1,
        "pending": 0,
        "processing": 0,
        "percent": 100,
    }
    assert state["statuses"] == {str(good.id): "vectorized", str(bad.id): "failed"}
    assert f'id="doc-{bad.id}" class="status-failed"' in state["rows_html"]

    gone = console.post(
        f"/ui/documents/{bad.id}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert gone.headers["location"] == f"/ui/projects/{pid}?notice=deleted"
    assert console.get(f"/ui/documents/{bad.id}").status_code == 404
    assert (
        console.post(
            f"/ui/projects/{pid}/retry-failed", data={"csrf_token": token}, follow_redirects=False
        )
        .headers["location"]
        .endswith("notice=nothing")
    )
    deleted = console.post(
        f"/ui/projects/{pid}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert deleted.headers["location"] == "/ui/projects?notice=deleted"
    assert console.get(f"/ui/projects/{pid}").status_code == 404


def test_search_page_highlights_matches_and_refuses_bad_parameters(
    console: TestClient, corpus: Path
) -> None:
    token = csrf_of(console)
    pid = create_project(console, "docs", token)
    console.post(
        f"/ui/projects/{pid}/documents",
        data={"csrf_token": token},
        files=_files(corpus, MD, TYPES),
    )
    empty = console.get(f"/ui/projects/{pid}/search")
    assert empty.status_code == 200 and 'role="search"' in empty.text

    page = console.get(
        f"/ui/projects/{pid}/search",
        params={"q": "Python type hints", "mode": "hybrid", "top_k": "3"},
    )
    assert page.status_code == 200
    hits = re.findall(r'<li class="hit">(.*?)</li>', page.text, re.S)
    assert len(hits) == 3
    first = hits[0]
    assert "fastapi__python-types.md" in first and "?chunk=" in first
    assert re.search(r"<mark>[Tt]ype</mark> <mark>[Hh]ints</mark>", first)
    assert re.search(r'score <span class="score">0\.\d{4}</span>', first)
    link = re.search(r'href="(/ui/documents/[^"]+)"', first)
    assert link and console.get(link.group(1).replace("&amp;", "&")).status_code == 200

    lexical = console.get(
        f"/ui/projects/{pid}/search",
        params={"q": "editor", "mode": "lexical", "top_k": "2"},
    )
    assert lexical.text.count('<li class="hit">') == 2 and "lexical #1" in lexical.text
    for params, words in (
        ({"q": "docker", "mode": "lexical", "score_threshold": "0.5"}, "lexical mode"),
        ({"q": "docker", "top_k": "0"}, "top_k"),
        ({"q": "docker", "score_threshold": "high"}, "a number between -1 and 1"),
        ({"q": "docker", "mode": "fuzzy"}, "mode"),
    ):
        refused = console.get(f"/ui/projects/{pid}/search", params=params)
        assert refused.status_code == 422 and words in refused.text, params
        assert 'role="alert"' in refused.text
    # What was typed is escaped, never markup.
    odd = console.get(f"/ui/projects/{pid}/search", params={"q": "<script>x</script>"})
    assert "<script>x" not in odd.text and "&lt;script&gt;x" in odd.text


def test_sign_in_scope_and_the_cookie(console: TestClient, corpus: Path) -> None:
    token = csrf_of(console)
    alpha = create_project(console, "alpha", token)
    beta = create_project(console, "beta", token)
    console.post(
        f"/ui/projects/{beta}/documents", data={"csrf_token": token}, files=_files(corpus, MD)
    )
    with console.rt.sessions() as s:  # type: ignore[attr-defined]
        beta_doc = s.scalars(select(Document.id)).one()
    rt = console.rt  # type: ignore[attr-defined]
    only_alpha = make_key(rt, "only-alpha", projects=[uuid.UUID(alpha)])
    admin = make_key(rt, "admin")

    # Keys exist now: the console asks for one, like the API.
    asked = console.get(f"/ui/projects/{alpha}", follow_redirects=False)
    assert asked.status_code == 303
    assert asked.headers["location"] == f"/ui/login?next=/ui/projects/{alpha}"
    assert console.get(f"/ui/projects/{alpha}/state", follow_redirects=False).status_code == 303
    scripted = console.get(f"/ui/projects/{alpha}/state", headers={"Accept": "application/json"})
    assert scripted.status_code == 401

    login = console.get("/ui/login")
    assert 'type="password"' in login.text and "console is open" not in login.text
    token = csrf_of(console, "/ui/login")
    wrong = console.post("/ui/login", data={"api_key": "dvk_" + "x" * 43, "csrf_token": token})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    no_csrf = console.post("/ui/login", data={"api_key": only_alpha})
    assert no_csrf.status_code == 403

    signed = console.post(
        "/ui/login",
        data={"api_key": only_alpha, "csrf_token": token, "next": f"/ui/projects/{alpha}"},
        follow_redirects=False,
    )
    assert signed.status_code == 303 and signed.headers["location"] == f"/ui/projects/{alpha}"
    cookie = next(
        v for k, v in signed.headers.multi_items() if k == "set-cookie" and "docvec_key=" in v
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Path=/ui" in cookie

    page = console.get(f"/ui/projects/{alpha}")
    assert page.status_code == 200 and "Signed in as <strong>only-alpha</strong>" in page.text
    assert only_alpha not in page.text, "the key is never written into a page"
    listed = console.get("/ui/projects").text
    assert f"/ui/projects/{alpha}" in listed and f"/ui/projects/{beta}" not in listed
    assert "creating one needs a key for all projects" in listed

    # Another project's pages answer 404, like the API; its forms too.
    token = csrf_of(console)
    for path in (
        f"/ui/projects/{beta}",
        f"/ui/projects/{beta}/search?q=x",
        f"/ui/documents/{beta_doc}",
    ):
        assert console.get(path).status_code == 404, path
    assert (
        console.post(f"/ui/projects/{beta}/delete", data={"csrf_token": token}).status_code == 404
    )
    assert (
        console.post(f"/ui/documents/{beta_doc}/delete", data={"csrf_token": token}).status_code
        == 404
    )
    assert (
        console.post("/ui/projects", data={"name": "new", "csrf_token": token}).status_code == 403
    )
    # The cookie opens only the console: the JSON API reads keys from the header alone.
    assert (
        console.get(
            f"/projects/{alpha}", headers={"Cookie": f"docvec_key={only_alpha}"}
        ).status_code
        == 401
    )

    # Revoked: the next request is sent to sign in again.
    with rt.sessions() as s:
        apikeys.revoke_key(s, "only-alpha")
        s.commit()
    assert console.get(f"/ui/projects/{alpha}", follow_redirects=False).status_code == 303
    out = console.post("/ui/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login?notice=signed-out"
    assert not console.cookies.get("docvec_key", path="/ui")

    token = csrf_of(console, "/ui/login")
    console.post("/ui/login", data={"api_key": admin, "csrf_token": token})
    assert f"/ui/projects/{beta}" in console.get("/ui/projects").text
    with rt.sessions() as s:
        assert s.scalar(select(ApiKey.revoked_at).where(ApiKey.name == "admin")) is None


def test_docs_and_redoc_use_only_local_assets(console: TestClient) -> None:
    for path, assets in (
        ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]),
        ("/redoc", ["redoc.standalone.js"]),
    ):
        page = console.get(path)
        assert page.status_code == 200
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(
            r"url: '([^']+)'", page.text
        )
        assert urls and all(u.startswith("/") for u in urls), urls
        assert "fonts.googleapis" not in page.text
        for name in assets:
            asset = console.get(f"/docs-assets/{name}")
            assert asset.status_code == 200 and len(asset.content) > 100_000, name
    bundle = console.get("/docs-assets/swagger-ui-bundle.js").text
    assert 'PACKAGE_VERSION:"5.32.6"' in bundle
    assert console.get("/openapi.json").json()["paths"]


def test_live_events_follow_the_documents(console: TestClient, corpus: Path) -> None:
    """The generator behind ``/ui/projects/{id}/events``: a state at once, another after a
    change, a keep-alive in between, ``gone`` once the project is deleted."""
    token = csrf_of(console)
    pid = uuid.UUID(create_project(console, "live", token))
    rt = console.rt  # type: ignore[attr-defined]
    console.post(
        f"/ui/projects/{pid}/documents", data={"csrf_token": token}, files=_files(corpus, MD)
    )

    async def collect(change_after: int) -> list[str]:
        seen: list[str] = []

        def render(state: live.ProjectState) -> dict[str, object]:
            return {"statuses": [r.status for r in state.rows], "done": state.progress.done}

        stream = live.state_events(
            rt.sessions, project_id=pid, offset=0, render=render, stream_s=3.0, poll_s=0.05
        )
        async for event in stream:
            seen.append(event)
            if len(seen) == change_after:
                with rt.sessions() as s:
                    doc = s.scalars(select(Document)).one()
                    doc.status = DocumentStatus.failed
                    doc.error = "made to fail by the test"
                    s.commit()
            if sum("event: state" in e for e in seen) == 2:
                break
        return seen

    old_keep_alive = live.KEEP_ALIVE_S
    live.KEEP_ALIVE_S = 0.1
    try:
        events = asyncio.run(collect(change_after=4))
    finally:
        live.KEEP_ALIVE_S = old_keep_alive
    assert events[0] == f"retry: {live.RETRY_MS}\n\n"
    states = [json.loads(e.split("data: ", 1)[1]) for e in events if e.startswith("event: state")]
    assert [s["statuses"] for s in states] == [["vectorized"], ["failed"]]
    assert states[0]["fingerprint"] != states[1]["fingerprint"]
    assert ": keep-alive\n\n" in events[1:4]

    with rt.sessions() as s:
        s.delete(s.get(Project, pid))
        s.commit()

    async def after_delete() -> list[str]:
        return [
            e
            async for e in live.state_events(
                rt.sessions, project_id=pid, offset=0, render=lambda st: {}, poll_s=0.05
            )
        ]

    assert asyncio.run(after_delete())[-1].startswith("event: gone")


answers_route = importlib.util.find_spec("app.api.routes.answers")


@pytest.mark.skipif(answers_route is None, reason="the answers API (issue #15) is not installed")
def test_ask_page_without_script_and_the_streamed_relay(console: TestClient, corpus: Path) -> None:
    token = csrf_of(console)
    pid = create_project(console, "ask", token)
    console.post(
        f"/ui/projects/{pid}/documents",
        data={"csrf_token": token},
        files=_files(corpus, TYPES),
    )
    assert f'href="/ui/projects/{pid}/ask"' in console.get(f"/ui/projects/{pid}").text
    page = console.get(f"/ui/projects/{pid}/ask")
    assert page.status_code == 200 and 'id="ask-form"' in page.text

    question = "What are type hints in Python?"
    answered = console.post(
        f"/ui/projects/{pid}/ask", data={"question": question, "csrf_token": token}
    )
    assert answered.status_code == 200
    cites = re.findall(
        r'<a class="cite" href="#source-(\d+)" data-n="\d+">\[(\d+)\]</a>', answered.text
    )
    assert cites and all(a == b for a, b in cites)
    for n, _ in cites:
        assert f'id="source-{n}"' in answered.text
    refused = console.post(
        f"/ui/projects/{pid}/ask",
        data={
            "question": question,
            "mode": "lexical",
            "score_threshold": "0.3",
            "csrf_token": token,
        },
    )
    assert refused.status_code == 422 and "lexical mode" in refused.text

    streamed = console.post(
        f"/ui/projects/{pid}/answer-stream",
        json={"question": question, "top_k": 3},
        headers={"X-CSRF-Token": token, "Accept": "text/event-stream"},
    )
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    names = re.findall(r"^event: (\w+)$", streamed.text, re.M)
    assert names[0] == "sources" and names[-1] == "done" and "delta" in names
    done = json.loads(streamed.text.rsplit("data: ", 1)[1])
    assert done["citations"] and done["answer"]


index_versions_route = importlib.util.find_spec("app.api.routes.index_versions")


@pytest.mark.skipif(
    index_versions_route is None, reason="the index-versions API (issue #13) is not installed"
)
def test_index_versions_page_lists_and_builds(console: TestClient, corpus: Path) -> None:
    token = csrf_of(console)
    pid = create_project(console, "versions", token)
    console.post(
        f"/ui/projects/{pid}/documents", data={"csrf_token": token}, files=_files(corpus, MD)
    )
    page = console.get(f"/ui/projects/{pid}/index-versions")
    assert page.status_code == 200
    assert re.search(r'<tr id="version-1" class="state-active"', page.text)
    assert "active — searches use it" in page.text
    created = console.post(
        f"/ui/projects/{pid}/index-versions",
        data={
            "provider": "local",
            "model": "all-MiniLM-L6-v2",
            "chunk_size": "500",
            "activate": "manual",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert created.status_code == 303, created.text
    listing = console.get(f"/ui/projects/{pid}/index-versions.json").json()
    assert [v["version"] for v in listing["versions"]] == [1, 2]
    bad = console.post(
        f"/ui/projects/{pid}/index-versions",
        data={"provider": "local", "model": "m", "chunk_size": "x", "csrf_token": token},
    )
    assert bad.status_code == 422 and 'role="alert"' in bad.text
