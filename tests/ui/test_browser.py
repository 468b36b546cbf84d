"""The web console end to end, in the distribution's headless Chromium driven by Selenium.

The real API runs under uvicorn on a loopback port, on an embedded data dir (SQLite, Qdrant Edge,
the local model); its jobs go through the outbox to a worker thread that runs the pipeline
function, as ``docvec worker`` would. One browser session serves every test of the module (they
run in order and build on each other): sign in, upload real corpus files (and a file that is
refused, and one that fails), watch them vectorize live, open the failed one, search, open a
hit, ask, look at the index versions, and open ``/docs`` and ``/redoc`` — with every address but
loopback blocked for the browser (its DNS resolves nothing else, and everything else goes to a
dead proxy), so the docs prove that their assets are local.

Selenium Manager never runs (it would download a driver): the driver's path is given and
``SE_OFFLINE`` is set. A screenshot of each page goes to ``tests/ui/artifacts/`` (gitignored);
with ``DOCVEC_UPDATE_SCREENSHOTS=1`` the README's few are copied to ``docs/screenshots/``.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import os
import queue
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.main import create_app
from app.config import Settings
from app.db import migrate
from app.pipeline.process import process_document
from app.runtime import Runtime
from tests.ui.conftest import CLOSED_BROKER, make_key

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).parent / "artifacts"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
#: The artefacts the README shows (copied with DOCVEC_UPDATE_SCREENSHOTS=1).
README_SHOTS = ("project", "project-phone", "document-failed", "search", "ask", "docs-offline")

#: Seconds any wait in the browser may take before the test fails (a bound, not a measurement).
WAIT_S = 60

GOOD = ("text/md/en/fastapi__python-types.md", "pdf/text/google-doc-document.pdf")
FAILS = "pdf/broken/truncated-pdflatex-4-pages.pdf"
EMPTY = "text/edge_cases/empty.txt"

pytestmark = pytest.mark.timeout(300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, local_provider: Any
) -> Iterator[dict[str, Any]]:
    """The API under uvicorn on a loopback port; jobs run by a worker thread."""
    import uvicorn

    data = tmp_path_factory.mktemp("console") / "data"
    settings = Settings(_env_file=None, data_dir=data, broker_url=CLOSED_BROKER)  # type: ignore[call-arg]
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings, provider=local_provider)
    jobs: queue.Queue[tuple[uuid.UUID, int] | None] = queue.Queue()

    def work() -> None:
        while (job := jobs.get()) is not None:
            process_document(rt, *job)

    worker = threading.Thread(target=work, name="console-test-worker", daemon=True)
    worker.start()

    def enqueue(document_id: uuid.UUID, generation: int) -> None:
        jobs.put((document_id, generation))

    app = create_app(settings, runtime=rt, enqueue=enqueue)
    port = _free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="console-test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    key = make_key(rt, "console-test")
    try:
        yield {"url": f"http://127.0.0.1:{port}", "key": key, "rt": rt, "state": {}}
    finally:
        uv.should_exit = True
        thread.join(timeout=WAIT_S)
        jobs.put(None)
        worker.join(timeout=WAIT_S)
        rt.close()


@pytest.fixture(scope="module")
def browser(server: dict[str, Any]) -> Iterator[Any]:
    """One headless Chromium for the module, with every address but loopback unreachable."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail("Chromium and chromedriver are missing: `make setup` installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    old = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager, if anything called it, stays offline
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--lang=en-US",
        # The network is blocked: no name resolves, and anything not on loopback goes to a
        # proxy on a port where nothing listens.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
    ):
        options.add_argument(arg)
    ARTIFACTS.mkdir(exist_ok=True)
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(ARTIFACTS / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()
        if old is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = old


# ---- helpers ------------------------------------------------------------------------------
def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(condition)
    except Exception:
        shot(driver, f"FAILED-{what.replace(' ', '-')}")
        raise


def css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def css_all(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def click(driver: Any, selector: str) -> None:
    """Click the element, found again if the live table redrew it meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt(d: Any) -> bool:
        try:
            css(d, selector).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(driver, attempt, f"click {selector}")


def shot(driver: Any, name: str) -> Path:
    """A screenshot of the whole page (the window grown to the page's height, then back)."""
    ARTIFACTS.mkdir(exist_ok=True)
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    driver.execute_script("window.scrollTo(0, 0)")
    full = driver.execute_script("return document.documentElement.scrollHeight") or height
    driver.set_window_size(width, min(max(full + 140, height), 4000))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(width, height)
    (ARTIFACTS / f"{name}.html").write_text(driver.page_source, "utf-8")
    if os.environ.get("DOCVEC_UPDATE_SCREENSHOTS") == "1" and name in README_SHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
    return path


def accessible(driver: Any) -> None:
    """Every visible form control has a label (or an aria-label), every page a main landmark
    and one h1, and nothing overflows the window sideways."""
    unlabelled = driver.execute_script(
        """
        return Array.from(document.querySelectorAll('input, select, textarea'))
          .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
          .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
          .map(el => el.outerHTML);
        """
    )
    assert unlabelled == [], unlabelled
    assert len(css_all(driver, "main")) == 1 and len(css_all(driver, "h1")) == 1
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth"
    )
    assert overflow <= 0, f"the page is {overflow} px wider than the window"


# ---- the flow -----------------------------------------------------------------------------
def test_sign_in_and_create_a_project(server: dict[str, Any], browser: Any) -> None:
    base = server["url"]
    browser.get(f"{base}/ui/projects")
    wait_for(browser, lambda d: "/ui/login" in d.current_url, "sign-in redirect")
    accessible(browser)
    shot(browser, "login")
    css(browser, "#api_key").send_keys("dvk_not-a-real-key")
    css(browser, "form.card button[type=submit]").click()
    error = wait_for(browser, lambda d: css(d, "p.error"), "refused key")
    assert "not valid" in error.text

    # From the keyboard: the first Tab reaches the skip link; Enter in the key field signs in.
    from selenium.webdriver.common.keys import Keys

    browser.execute_script("document.activeElement.blur()")
    css(browser, "body").send_keys(Keys.TAB)
    assert browser.execute_script("return document.activeElement.className") == "skip"
    css(browser, "#api_key").send_keys(server["key"], Keys.ENTER)
    wait_for(browser, lambda d: d.current_url.endswith("/ui/projects"), "projects page")
    assert "Signed in as console-test" in css(browser, ".who").text
    # The key is in an HttpOnly cookie: no script of the page can read it.
    assert "dvk_" not in browser.execute_script("return document.cookie")
    assert server["key"] not in browser.page_source

    css(browser, "#name").send_keys("handbook")
    css(browser, "#description").send_keys("The team's documents")
    css(browser, "form.card button[type=submit]").click()
    wait_for(browser, lambda d: css(d, "h1").text == "handbook", "project page")
    assert "Project created." in css(browser, ".notice").text
    server["state"]["project"] = browser.current_url.split("/ui/projects/")[1].split("?")[0]
    browser.get(f"{base}/ui/projects")
    accessible(browser)
    shot(browser, "projects")


def test_upload_many_files_and_watch_them_vectorize(
    server: dict[str, Any], browser: Any, corpus: Path, tmp_path: Path
) -> None:
    base, pid = server["url"], server["state"]["project"]
    browser.get(f"{base}/ui/projects/{pid}")
    wait_for(browser, lambda d: "Live updates: on." in css(d, "#live-status").text, "SSE")
    refused = tmp_path / "archive.txt"
    refused.write_bytes(gzip.compress(b"binary, not text " * 200))
    paths = [corpus / p for p in (*GOOD, FAILS, EMPTY)] + [refused]
    # Choosing files uploads them at once, one request each.
    css(browser, "#files").send_keys("\n".join(str(p) for p in paths))
    wait_for(
        browser,
        lambda d: (
            len(css_all(d, "#upload-results li")) == 5
            and not css_all(d, "#upload-results li.outcome-uploading")
        ),
        "five answers",
    )
    answers = {
        li.find_element("css selector", ".file").text: (li.get_attribute("class"), li.text)
        for li in css_all(browser, "#upload-results li")
    }
    assert answers["fastapi__python-types.md"][0] == "outcome-created"
    assert answers["google-doc-document.pdf"][0] == "outcome-created"
    assert answers["truncated-pdflatex-4-pages.pdf"][0] == "outcome-created"
    assert answers["empty.txt"][0] == "outcome-invalid"
    assert "refused: empty or unreadable — the file is empty" in answers["empty.txt"][1]
    assert answers["archive.txt"][0] == "outcome-unsupported"
    assert "unsupported type" in answers["archive.txt"][1]

    # Dropping a file on the zone uploads it too (a File made in the page: the drop event a
    # file manager's drag ends with).
    browser.execute_script(
        """
        const zone = document.getElementById('drop-zone');
        const data = new DataTransfer();
        data.items.add(new File(['# Dropped\\n\\nA note about dropping files on the console.\\n'],
                                'dropped.md', {type: 'text/markdown'}));
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: data, bubbles: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
        """
    )
    wait_for(
        browser,
        lambda d: any("dropped.md: created" in li.text for li in css_all(d, "#upload-results li")),
        "dropped file",
    )
    # The table and the progress bar follow the work without a reload.
    wait_for(
        browser,
        lambda d: css(d, "#progress-text").text.startswith("4 of 4 documents done"),
        "all four done",
    )
    rows = {
        r.find_element("css selector", "td[data-label=File]").text: r.get_attribute("data-status")
        for r in css_all(browser, "#documents-body tr")
    }
    assert rows == {
        "fastapi__python-types.md": "vectorized",
        "google-doc-document.pdf": "vectorized",
        "truncated-pdflatex-4-pages.pdf": "failed",
        "dropped.md": "vectorized",
    }
    failed = css(browser, "#documents-body tr.status-failed")
    assert "✗ failed" in failed.text and "extract:" in failed.text and "PDF" in failed.text
    server["state"]["failed_row"] = failed.get_attribute("id").removeprefix("doc-")
    assert browser.execute_script(
        "const b = document.getElementById('progress'); return [b.value, b.max]"
    ) == [4, 4]
    assert "3 vectorized, 1 failed" in css(browser, "#progress-text").text
    assert "Live updates: on." in css(browser, "#live-status").text
    accessible(browser)
    shot(browser, "project")
    browser.set_window_size(390, 844)  # a phone
    try:
        accessible(browser)
        shot(browser, "project-phone")
    finally:
        browser.set_window_size(1280, 900)


def test_failed_document_shows_its_reason(server: dict[str, Any], browser: Any) -> None:
    base, pid = server["url"], server["state"]["project"]
    browser.get(f"{base}/ui/projects/{pid}")
    click(browser, "#documents-body tr.status-failed td[data-label=File] a")
    wait_for(browser, lambda d: "/ui/documents/" in d.current_url, "document page")
    alert = css(browser, "p.error[role=alert]")
    assert alert.text.startswith("✗ Failed at extract:")
    assert "CorruptDocument" in css(browser, "table.attempts").text
    assert "No chunks: the document failed." in browser.page_source
    accessible(browser)
    shot(browser, "document-failed")


def test_search_highlights_and_opens_a_hit(server: dict[str, Any], browser: Any) -> None:
    base, pid = server["url"], server["state"]["project"]
    browser.get(f"{base}/ui/projects/{pid}")
    css(browser, ".tabs a[href$='/search']").click()
    wait_for(browser, lambda d: css(d, "#q"), "search page")
    css(browser, "#q").send_keys("How do Python type hints help the editor?")
    css(browser, "#top_k").clear()
    css(browser, "#top_k").send_keys("4")
    css(browser, "form[role=search] button[type=submit]").click()
    wait_for(browser, lambda d: css_all(d, "li.hit"), "hits")
    hits = css_all(browser, "li.hit")
    assert len(hits) == 4
    assert "fastapi__python-types.md" in hits[0].text and "score" in hits[0].text
    marks = [m.text.lower() for m in css_all(browser, "li.hit mark")]
    assert "type" in marks and "hints" in marks and "editor" in marks
    accessible(browser)
    shot(browser, "search")

    link = hits[0].find_element("css selector", "a.open-hit")
    chunk = link.get_attribute("href").rsplit("#chunk-", 1)[1]
    link.click()
    wait_for(browser, lambda d: "/ui/documents/" in d.current_url, "the hit's document")
    opened = css(browser, f"#chunk-{chunk}")
    assert "opened" in opened.get_attribute("class")
    assert browser.execute_script("return location.hash") == f"#chunk-{chunk}"
    assert "Chunk " + chunk in opened.text
    accessible(browser)
    shot(browser, "document")


@pytest.mark.skipif(
    importlib.util.find_spec("app.api.routes.answers") is None,
    reason="the answers API (issue #15) is not installed",
)
def test_ask_streams_an_answer_with_clickable_citations(
    server: dict[str, Any], browser: Any
) -> None:
    base, pid = server["url"], server["state"]["project"]
    browser.get(f"{base}/ui/projects/{pid}/ask")
    css(browser, "#question").send_keys("What are type hints in Python?")
    css(browser, "#ask-form button[type=submit]").click()
    wait_for(browser, lambda d: css(d, "#ask-status").text == "Answer complete.", "answer")
    cites = css_all(browser, "#answer a.cite")
    assert cites, css(browser, "#answer").text
    assert css_all(browser, "#sources li.source")
    accessible(browser)
    shot(browser, "ask")
    first = cites[0]
    n = first.get_attribute("data-n")
    first.click()
    source = css(browser, f"#source-{n}")
    wait_for(browser, lambda d: "opened" in source.get_attribute("class"), "source opened")
    assert browser.execute_script("return document.activeElement.id") == f"source-{n}"
    assert source.find_element("css selector", ".text").text.strip()
    shot(browser, "ask-source-opened")


@pytest.mark.skipif(
    importlib.util.find_spec("app.api.routes.index_versions") is None,
    reason="the index-versions API (issue #13) is not installed",
)
def test_index_versions_page(server: dict[str, Any], browser: Any) -> None:
    base, pid = server["url"], server["state"]["project"]
    browser.get(f"{base}/ui/projects/{pid}/index-versions")
    row = wait_for(browser, lambda d: css(d, "#version-1"), "version 1")
    assert "active" in row.get_attribute("data-state")
    assert "4 of 4 documents" in row.text or "3 of 3 documents" in row.text, row.text
    accessible(browser)
    shot(browser, "index-versions")


def test_docs_render_with_the_network_blocked(server: dict[str, Any], browser: Any) -> None:
    base = server["url"]
    # The block holds: an outside address does not load.
    with contextlib.suppress(Exception):
        browser.get("http://example.com/")
    assert "Example Domain" not in browser.page_source

    browser.get(f"{base}/docs")
    title = wait_for(browser, lambda d: css_all(d, ".swagger-ui .info .title"), "Swagger UI")
    assert "docvec" in title[0].text
    wait_for(browser, lambda d: len(css_all(d, ".opblock")) > 10, "operations")
    paths = [e.text for e in css_all(browser, ".opblock-summary-path")]
    assert "/projects/{project_id}/search" in paths
    shot(browser, "docs-offline")

    browser.get(f"{base}/redoc")
    wait_for(browser, lambda d: "docvec" in (d.find_element("tag name", "h1").text or ""), "ReDoc")
    assert css_all(browser, "[data-section-id]")
    shot(browser, "redoc-offline")


def test_event_stream_over_http(server: dict[str, Any], browser: Any) -> None:
    """The SSE endpoint as a client sees it: text/event-stream, ``retry:``, then a state."""
    base, pid = server["url"], server["state"]["project"]
    browser.get(f"{base}/ui/projects")  # the console's cookies are visible on its paths only
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    with (
        httpx.Client(base_url=base, cookies=cookies, timeout=WAIT_S) as client,
        client.stream("GET", f"/ui/projects/{pid}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines).startswith("retry: ")
        assert next(lines) == ""
        assert next(lines) == "event: state"
        assert '"done":4' in next(lines)
    anonymous = httpx.get(
        f"{base}/ui/projects/{pid}/events", headers={"Accept": "text/event-stream"}
    )
    assert anonymous.status_code == 401
