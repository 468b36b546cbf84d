"""The console's pages and form handlers, under ``/ui``.

Every page is rendered on the server (Jinja2) and every form works without JavaScript (POST,
then a redirect to the page that shows the result); ``static/console.js`` adds drag-and-drop
uploads with an answer per file, live tables (Server-Sent Events, polling as fallback) and the
streamed answer. Pages use what the API uses — :mod:`app.services` and the functions the API's
routes share (:func:`~app.api.routes.documents.accept_uploads`,
:func:`~app.api.routes.documents.chunk_page`, :func:`~app.api.routes.projects.run_search`) — and
the API's access rule (:mod:`app.api.ui.security`). The answers and index-versions pages drive
those API routes through :mod:`app.api.ui.bridge`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from pydantic import ValidationError
from starlette.responses import StreamingResponse

from app import apikeys, services
from app.api.deps import DispatchDep, RuntimeDep, SessionDep
from app.api.routes import documents as documents_api
from app.api.routes import projects as projects_api
from app.api.routes.documents import accept_uploads, chunk_page
from app.api.routes.projects import run_search
from app.api.schemas import BROKER_DOWN_MESSAGE, ProjectCreate, SearchRequest
from app.api.ui import bridge, live
from app.api.ui.security import (
    KEY_COOKIE,
    CsrfDep,
    CsrfHeaderDep,
    PageError,
    Visitor,
    check_scope,
    csrf_token,
    ensure_nonce,
    principal,
    set_key_cookie,
)
from app.db.models import Document, DocumentStatus, Project
from app.lexical import matching_spans
from app.pipeline.extract import SUPPORTED_TYPES
from app.vectorstore import DEFAULT_SEARCH_MODE, SEARCH_MODES

__all__ = ["router", "templates"]

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/ui", include_in_schema=False)

#: Chunks per page of the document page.
CHUNKS_PER_PAGE = 50
#: The API routes the answers (issue #15) and index-versions (issue #13) pages drive.
ANSWER_ROUTE = "/projects/{project_id}/answer"
INDEX_VERSIONS_ROUTE = "/projects/{project_id}/index-versions"

#: Content Security Policy of every console page: scripts, styles and requests from this origin
#: only, no inline script, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

#: What an action did, by the ``notice`` query parameter a redirect carries (fixed texts only:
#: nothing a request writes is echoed from the URL).
NOTICES = {
    "created": "Project created.",
    "deleted": "Deleted.",
    "retried": "The failed documents are queued again.",
    "revectorizing": "Queued for re-vectorizing.",
    "coalesced": "Already queued: nothing more to do.",
    "nothing": "Nothing to do.",
    "broker-down": BROKER_DOWN_MESSAGE,
    "signed-out": "Signed out.",
    "version-created": "Index version created; it builds in the background.",
    "version-activated": "Index version activated.",
    "version-cancelled": "Index version build cancelled.",
    "version-deleted": "Index version deleted.",
}

#: The words and symbol of each document status (never shown by colour alone).
STATUS_LABELS: dict[str, tuple[str, str, str]] = {
    DocumentStatus.pending: ("…", "pending", "queued, waiting for a worker"),
    DocumentStatus.processing: ("⟳", "processing", "a worker is on it"),
    DocumentStatus.vectorized: ("✓", "vectorized", "searchable"),
    DocumentStatus.failed: ("✗", "failed", "see the reason"),
}


def _status_label(status: str) -> dict[str, str]:
    symbol, word, hint = STATUS_LABELS.get(status, ("?", status, ""))
    return {"symbol": symbol, "word": word, "hint": hint, "css": f"status-{word}"}


templates.env.globals["status_label"] = _status_label
templates.env.filters["tojson_compact"] = lambda v: json.dumps(v, separators=(",", ":"))


# ---- plumbing -------------------------------------------------------------------------------
def _visitor(request: Request, session: SessionDep, runtime: RuntimeDep) -> Visitor:
    visitor = principal(request, session, runtime.settings)
    check_scope(request, session, visitor)
    # Nothing holds the read transaction open while the page is built or streamed.
    session.commit()
    return visitor


VisitorDep = Annotated[Visitor, Depends(_visitor)]
OffsetQ = Annotated[int, Query(ge=0, le=2**31 - 1)]


def features(request: Request) -> dict[str, bool]:
    """Which optional pages this server has (their API routes are mounted)."""
    return {
        "answers": bridge.has_route(request, ANSWER_ROUTE, "POST"),
        "index_versions": bridge.has_route(request, INDEX_VERSIONS_ROUTE, "GET"),
    }


def render(
    request: Request,
    template: str,
    visitor: Visitor | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A console page: ``template`` with the visitor, a CSRF token for its forms, the optional
    features, and the notice named by ``?notice=``."""
    notice = NOTICES.get(request.query_params.get("notice", ""))
    response = templates.TemplateResponse(
        request,
        template,
        {
            "visitor": visitor,
            "csrf": csrf_token(request, request.cookies.get(KEY_COOKIE)),
            "features": features(request),
            "notice": notice,
            "status": status_code,
            **context,
        },
        status_code=status_code,
    )
    ensure_nonce(request, response)
    secure_headers(response)
    return response


def secure_headers(response: Response) -> None:
    """The headers every console response carries."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"


def wants_json(request: Request) -> bool:
    """The request comes from the console's script (it asks for JSON or an event stream)."""
    accept = request.headers.get("accept", "")
    return "application/json" in accept or "text/event-stream" in accept


def _back(path: str, notice: str | None = None, **params: Any) -> RedirectResponse:
    query = {k: v for k, v in params.items() if v is not None}
    if notice:
        query["notice"] = notice
    url = f"{path}?{urlencode(query)}" if query else path
    return RedirectResponse(url, status_code=303)


def _project(session: SessionDep, project_id: uuid.UUID) -> Project:
    try:
        return services.get_project(session, project_id)
    except services.NotFound as exc:
        raise PageError(404, str(exc)) from exc


def _document(session: SessionDep, document_id: uuid.UUID) -> Document:
    try:
        return services.get_document(session, document_id)
    except services.NotFound as exc:
        raise PageError(404, str(exc)) from exc


def _safe_next(target: str | None, default: str = "/ui/projects") -> str:
    """``target`` if it lies inside the console, else ``default`` (no open redirect to another
    site: ``//host`` and ``/ui\\..`` tricks included)."""
    if target and target.startswith("/ui") and not any(c in target for c in "\\\r\n"):
        return target
    return default


# ---- sign-in ------------------------------------------------------------------------------
@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/projects", status_code=303)


@router.get("/login")
def login_page(
    request: Request, session: SessionDep, runtime: RuntimeDep, next: str | None = None
) -> HTMLResponse:
    """The sign-in form (or, with no key in use, a note that the console is open)."""
    open_mode = not runtime.settings.require_api_key and not apikeys.any_active_key(session)
    return render(request, "login.html", None, open_mode=open_mode, next=_safe_next(next))


@router.post("/login", dependencies=[CsrfDep])
def login(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    api_key: Annotated[str, Form()],
    next: Annotated[str | None, Form()] = None,
) -> Response:
    """Sign in: an unrevoked key goes into the HttpOnly cookie; anything else is refused."""
    key = api_key.strip()
    if apikeys.authenticate(session, key) is None:
        open_mode = not runtime.settings.require_api_key and not apikeys.any_active_key(session)
        return render(
            request,
            "login.html",
            None,
            status_code=401,
            open_mode=open_mode,
            next=_safe_next(next),
            error="That API key is not valid (unknown or revoked).",
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_key_cookie(request, response, key)
    return response


@router.post("/logout", dependencies=[CsrfDep])
def logout(request: Request) -> Response:
    """Sign out: the key's cookie is deleted."""
    response = _back("/ui/login", "signed-out")
    set_key_cookie(request, response, None)
    return response


# ---- projects -----------------------------------------------------------------------------
@router.get("/projects")
def projects_page(request: Request, session: SessionDep, visitor: VisitorDep) -> HTMLResponse:
    """The projects the key opens, with their document counts, and the form to create one."""
    projects = [
        p for p in services.list_project_summaries(session) if visitor.principal.can_access(p.id)
    ]
    return render(request, "projects.html", visitor, projects=projects)


@router.post("/projects", dependencies=[CsrfDep])
def create_project(
    request: Request,
    session: SessionDep,
    visitor: VisitorDep,
    name: Annotated[str, Form()],
    description: Annotated[str | None, Form()] = None,
) -> Response:
    """Create a project (a key for all projects is needed, as in the API)."""

    def again(status_code: int, error: str) -> HTMLResponse:
        projects = [
            p
            for p in services.list_project_summaries(session)
            if visitor.principal.can_access(p.id)
        ]
        return render(
            request,
            "projects.html",
            visitor,
            status_code=status_code,
            projects=projects,
            error=error,
            form={"name": name, "description": description or ""},
        )

    if not visitor.principal.all_projects:
        return again(403, "Creating a project needs an API key for all projects.")
    try:
        body = ProjectCreate(name=name.strip(), description=(description or "").strip() or None)
    except ValidationError as exc:
        return again(422, _validation_words(exc))
    try:
        project = services.create_project(session, name=body.name, description=body.description)
    except services.Conflict as exc:
        return again(409, f"{exc}.")
    session.commit()
    return _back(f"/ui/projects/{project.id}", "created")


@router.get("/projects/{project_id}")
def project_page(
    request: Request,
    project_id: uuid.UUID,
    session: SessionDep,
    visitor: VisitorDep,
    offset: OffsetQ = 0,
) -> HTMLResponse:
    """A project: upload, progress, and its documents (live)."""
    project = _project(session, project_id)
    state = live.project_state(session, project_id=project.id, offset=offset)
    return render(
        request,
        "project.html",
        visitor,
        project=project,
        state=state,
        per_page=live.DOCUMENTS_PER_PAGE,
        supported=sorted(set(SUPPORTED_TYPES)),
    )


def _state_json(request: Request, project_id: uuid.UUID, visitor: Visitor) -> Any:
    csrf = csrf_token(request, visitor.key)

    def as_json(state: live.ProjectState) -> dict[str, Any]:
        rows = templates.get_template("_rows.html").render(
            rows=state.rows, csrf=csrf, project_id=project_id, status_label=_status_label
        )
        p = state.progress
        return {
            "progress": {
                "total": p.total,
                "done": p.done,
                "vectorized": p.vectorized,
                "failed": p.failed,
                "pending": p.pending,
                "processing": p.processing,
                "percent": p.percent,
            },
            "rows_html": rows,
            "statuses": {str(r.id): r.status for r in state.rows},
        }

    return as_json


@router.get("/projects/{project_id}/state")
def project_state_json(
    request: Request,
    project_id: uuid.UUID,
    session: SessionDep,
    visitor: VisitorDep,
    offset: OffsetQ = 0,
) -> JSONResponse:
    """The project's progress and documents table as JSON (the live table's polling fallback)."""
    _project(session, project_id)
    state = live.project_state(session, project_id=project_id, offset=offset)
    body = {"fingerprint": state.fingerprint(), **_state_json(request, project_id, visitor)(state)}
    response = JSONResponse(body)
    secure_headers(response)
    return response


@router.get("/projects/{project_id}/events")
def project_events(
    request: Request,
    project_id: uuid.UUID,
    runtime: RuntimeDep,
    session: SessionDep,
    visitor: VisitorDep,
    offset: OffsetQ = 0,
) -> StreamingResponse:
    """Server-Sent Events: ``state`` (as ``/state`` gives it) on every change, then keep-alive
    comments; the stream ends after a few minutes and the browser reconnects."""
    _project(session, project_id)
    session.close()
    stream = live.state_events(
        runtime.sessions,
        project_id=project_id,
        offset=offset,
        render=_state_json(request, project_id, visitor),
    )
    response = StreamingResponse(
        stream,
        media_type="text/event-stream",
        # No proxy may buffer the stream (nginx honours X-Accel-Buffering).
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    return response


# ---- uploads ------------------------------------------------------------------------------
def _upload_one(
    session: SessionDep,
    runtime: RuntimeDep,
    dispatch: DispatchDep,
    project_id: uuid.UUID,
    upload: UploadFile,
) -> dict[str, Any]:
    """One file through the API's upload path; its answer in words."""
    name = upload.filename or "unnamed"
    try:
        body = accept_uploads(
            session, runtime=runtime, dispatch=dispatch, project_id=project_id, files=[upload]
        )
    except HTTPException as exc:
        return {"file_name": name, "status_code": exc.status_code, **_refusal(exc)}
    doc = body["documents"][0]  # type: ignore[index]
    out: dict[str, Any] = {
        "file_name": name,
        "status_code": 202,
        "document_id": str(doc.id),
        "document_url": f"/ui/documents/{doc.id}",
    }
    if doc.created:
        out |= {"outcome": "created", "words": "created — queued for vectorizing"}
    else:
        out |= {
            "outcome": "duplicate",
            "words": f"duplicate — the same bytes are already here as “{doc.file_name}”",
        }
    if not body["published"]:
        out["words"] += " (the broker is unreachable: it is queued once the broker is back)"
    return out


def _refusal(exc: HTTPException) -> dict[str, str]:
    detail = exc.detail
    message = detail.get("message", "") if isinstance(detail, Mapping) else str(detail)
    # The API's message starts with the file name; the console shows the name beside it.
    reason = message.split(": ", 1)[1] if ": " in message else message
    kinds = {
        413: ("too-large", "refused: too large"),
        415: ("unsupported", "refused: unsupported type"),
        422: ("invalid", "refused: empty or unreadable"),
        404: ("gone", "refused: the project does not exist any more"),
    }
    outcome, words = kinds.get(exc.status_code, ("refused", f"refused ({exc.status_code})"))
    return {"outcome": outcome, "words": f"{words} — {reason}" if reason else words}


@router.post("/projects/{project_id}/documents", dependencies=[CsrfDep], response_model=None)
def upload(
    request: Request,
    project_id: uuid.UUID,
    session: SessionDep,
    runtime: RuntimeDep,
    dispatch: DispatchDep,
    visitor: VisitorDep,
    files: Annotated[list[UploadFile], File()],
) -> Response:
    """Upload files, each on its own (one bad file refuses only itself), with an answer each:
    created, duplicate, too large (413), unsupported (415), empty or unreadable (422)."""
    _project(session, project_id)
    results = [_upload_one(session, runtime, dispatch, project_id, f) for f in files if f.filename]
    if wants_json(request):
        response: Response = JSONResponse({"results": results})
        secure_headers(response)
        return response
    project = _project(session, project_id)
    state = live.project_state(session, project_id=project.id)
    return render(
        request,
        "project.html",
        visitor,
        project=project,
        state=state,
        per_page=live.DOCUMENTS_PER_PAGE,
        supported=sorted(set(SUPPORTED_TYPES)),
        upload_results=results,
    )


# ---- actions on documents and projects ----------------------------------------------------
@router.post("/projects/{project_id}/retry-failed", dependencies=[CsrfDep])
def retry_failed(
    project_id: uuid.UUID, session: SessionDep, dispatch: DispatchDep, visitor: VisitorDep
) -> RedirectResponse:
    """Queue every failed document of the project again (the API's route does the work)."""
    _project(session, project_id)
    done = projects_api.retry_failed(project_id, session, dispatch)
    return _back(f"/ui/projects/{project_id}", _accepted_notice(done, "retried"))


@router.post("/projects/{project_id}/revectorize", dependencies=[CsrfDep])
def revectorize_project(
    project_id: uuid.UUID, session: SessionDep, dispatch: DispatchDep, visitor: VisitorDep
) -> RedirectResponse:
    """Re-vectorize every document of the project."""
    _project(session, project_id)
    done = projects_api.revectorize_project(project_id, session, dispatch)
    return _back(f"/ui/projects/{project_id}", _accepted_notice(done, "revectorizing"))


def _accepted_notice(body: Mapping[str, Any], queued: str) -> str:
    """The notice for an :class:`~app.api.schemas.Accepted` body."""
    if not body["published"]:
        return "broker-down"
    return queued if body["queued"] else "nothing"


@router.post("/projects/{project_id}/delete", dependencies=[CsrfDep])
def delete_project(
    project_id: uuid.UUID, session: SessionDep, runtime: RuntimeDep, visitor: VisitorDep
) -> RedirectResponse:
    """Delete the project with its documents, chunks, points and files."""
    _project(session, project_id)
    projects_api.delete_project(project_id, session, runtime)
    return _back("/ui/projects", "deleted")


@router.get("/documents/{document_id}")
def document_page(
    request: Request,
    document_id: uuid.UUID,
    session: SessionDep,
    visitor: VisitorDep,
    offset: OffsetQ = 0,
    chunk: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
) -> HTMLResponse:
    """A document: status and reason, every attempt with its timings, its chunks with pages.
    ``chunk`` opens the page of chunks that holds that chunk index."""
    doc = _document(session, document_id)
    if chunk is not None:
        offset = chunk - chunk % CHUNKS_PER_PAGE
    chunks, total = chunk_page(session, document_id=doc.id, limit=CHUNKS_PER_PAGE, offset=offset)
    return render(
        request,
        "document.html",
        visitor,
        doc=doc,
        project=doc.project,
        attempts=sorted(doc.attempts, key=lambda a: a.started_at, reverse=True),
        chunks=chunks,
        chunk_total=total,
        offset=offset,
        per_page=CHUNKS_PER_PAGE,
        chunk=chunk,
    )


@router.post("/documents/{document_id}/revectorize", dependencies=[CsrfDep])
def revectorize_document(
    document_id: uuid.UUID,
    session: SessionDep,
    dispatch: DispatchDep,
    visitor: VisitorDep,
    next: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    """Re-vectorize one document (or retry a failed one); a double click queues nothing more."""
    _document(session, document_id)
    done = documents_api.revectorize_document(document_id, session, dispatch)
    target = _safe_next(next, default=f"/ui/documents/{document_id}")
    return _back(target, _accepted_notice(done, "revectorizing") if done["queued"] else "coalesced")


@router.post("/documents/{document_id}/delete", dependencies=[CsrfDep])
def delete_document(
    document_id: uuid.UUID, session: SessionDep, runtime: RuntimeDep, visitor: VisitorDep
) -> RedirectResponse:
    """Delete a document with its chunks, points and (if unshared) its file."""
    project_id = _document(session, document_id).project_id
    documents_api.delete_document(document_id, session, runtime)
    return _back(f"/ui/projects/{project_id}", "deleted")


# ---- search -------------------------------------------------------------------------------
def highlight(text: str, query: str) -> Markup:
    """``text`` as HTML with the words that match ``query``'s terms in ``<mark>``."""
    out, pos = [], 0
    for start, end in matching_spans(text, query):
        out.append(escape(text[pos:start]))
        out.append(Markup("<mark>%s</mark>") % text[start:end])
        pos = end
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def _threshold(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise ValueError("the score threshold must be a number between -1 and 1") from exc


@router.get("/projects/{project_id}/search")
def search_page(
    request: Request,
    project_id: uuid.UUID,
    session: SessionDep,
    runtime: RuntimeDep,
    visitor: VisitorDep,
    q: str | None = None,
    mode: str = DEFAULT_SEARCH_MODE,
    top_k: str = "5",
    score_threshold: str | None = None,
) -> HTMLResponse:
    """Search a project (mode, top_k, score threshold); hits with file, page, score and the
    matched words highlighted, each opening its chunk in its document."""
    project = _project(session, project_id)
    form = {"q": q or "", "mode": mode, "top_k": top_k, "score_threshold": score_threshold or ""}
    context: dict[str, Any] = {"project": project, "form": form, "modes": list(SEARCH_MODES)}
    if not q:
        return render(request, "search.html", visitor, **context)
    try:
        body = SearchRequest.model_validate(
            {
                "query": q,
                "mode": mode,
                "top_k": top_k,
                "score_threshold": _threshold(score_threshold),
            }
        )
    except (ValidationError, ValueError) as exc:
        words = _validation_words(exc) if isinstance(exc, ValidationError) else str(exc)
        return render(request, "search.html", visitor, status_code=422, error=words, **context)
    hits = run_search(session, runtime=runtime, project=project, body=body)
    shown = [{"hit": h, "html": highlight(h.text, body.query)} for h in hits]
    return render(request, "search.html", visitor, hits=shown, searched=body, **context)


def _validation_words(exc: ValidationError) -> str:
    """A pydantic error as one sentence per problem, for people."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(x) for x in error.get("loc", ()) if x != "body")
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts) + "."


# ---- ask (issue #15's answers route) -------------------------------------------------------
def _unavailable(request: Request, visitor: Visitor, project: Project, what: str) -> HTMLResponse:
    return render(request, "unavailable.html", visitor, status_code=404, project=project, what=what)


@router.get("/projects/{project_id}/ask")
def ask_page(
    request: Request, project_id: uuid.UUID, session: SessionDep, visitor: VisitorDep
) -> HTMLResponse:
    """Ask the project a question; the answer streams in with clickable ``[n]`` citations."""
    project = _project(session, project_id)
    if not features(request)["answers"]:
        return _unavailable(request, visitor, project, "answers")
    form = {"question": "", "mode": DEFAULT_SEARCH_MODE, "top_k": "5", "score_threshold": ""}
    return render(
        request, "ask.html", visitor, project=project, form=form, modes=list(SEARCH_MODES)
    )


def _ask_body(question: str, top_k: str, mode: str, threshold: str | None, stream: bool) -> Any:
    body: dict[str, Any] = {"question": question, "mode": mode, "stream": stream}
    try:
        body["top_k"] = int(top_k)
    except ValueError:
        body["top_k"] = top_k  # the API says what is wrong with it
    body["score_threshold"] = _threshold(threshold)
    return body


@router.post("/projects/{project_id}/ask", dependencies=[CsrfDep])
async def ask(
    request: Request,
    project_id: uuid.UUID,
    visitor: VisitorDep,
    question: Annotated[str, Form()],
    top_k: Annotated[str, Form()] = "5",
    mode: Annotated[str, Form()] = DEFAULT_SEARCH_MODE,
    score_threshold: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    """Without JavaScript: the whole answer at once (``stream: false``), rendered here."""
    project = await _project_async(request, project_id)
    if not features(request)["answers"]:
        return _unavailable(request, visitor, project, "answers")
    form = {
        "question": question,
        "mode": mode,
        "top_k": top_k,
        "score_threshold": score_threshold or "",
    }
    context: dict[str, Any] = {"project": project, "form": form, "modes": list(SEARCH_MODES)}
    try:
        body = _ask_body(question, top_k, mode, score_threshold, stream=False)
    except ValueError as exc:
        return render(request, "ask.html", visitor, status_code=422, error=str(exc), **context)
    async with bridge.api_client(request, visitor.key) as client:
        answer = await client.post(f"/projects/{project_id}/answer", json=body)
    if answer.status_code != 200:
        return render(
            request,
            "ask.html",
            visitor,
            status_code=answer.status_code,
            error=_api_error_words(answer),
            **context,
        )
    data = answer.json()
    return render(
        request,
        "ask.html",
        visitor,
        answer=data,
        answer_html=cited_html(str(data.get("answer", "")), data.get("sources") or []),
        **context,
    )


def cited_html(answer: str, sources: list[dict[str, Any]]) -> Markup:
    """The answer as HTML, each ``[n]`` that names a source a link to it."""
    import re

    known = {int(s["n"]) for s in sources if isinstance(s, dict) and "n" in s}
    out, pos = [], 0
    for m in re.finditer(r"\[(\d{1,3})\]", answer):
        n = int(m.group(1))
        if n not in known:
            continue
        out.append(escape(answer[pos : m.start()]))
        out.append(Markup('<a class="cite" href="#source-%d" data-n="%d">[%d]</a>') % (n, n, n))
        pos = m.end()
    out.append(escape(answer[pos:]))
    return Markup("").join(out)


def _api_error_words(response: Any) -> str:
    """The API's error body as one sentence."""
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    if isinstance(detail, list):
        return "; ".join(
            ".".join(str(x) for x in d.get("loc", ()) if x != "body") + f": {d.get('msg')}"
            for d in detail
            if isinstance(d, dict)
        )
    if isinstance(detail, dict):
        return str(detail.get("message") or detail.get("error") or detail)
    return f"{detail} (HTTP {response.status_code})"


async def _project_async(request: Request, project_id: uuid.UUID) -> Project:
    from starlette.concurrency import run_in_threadpool

    runtime = request.app.state.runtime

    def read() -> Project:
        with runtime.sessions() as session:
            project = _project(session, project_id)
            session.expunge(project)
            return project

    return await run_in_threadpool(read)


@router.post("/projects/{project_id}/answer-stream", dependencies=[CsrfHeaderDep])
async def answer_stream(request: Request, project_id: uuid.UUID, visitor: VisitorDep) -> Response:
    """The answer as the API streams it (``text/event-stream``), relayed as it comes: the
    browser's script posts ``{question, top_k, mode, score_threshold}`` as JSON."""
    try:
        raw = await request.json()
    except ValueError as exc:
        raise PageError(422, "the request body is not JSON") from exc
    if not isinstance(raw, dict):
        raise PageError(422, "the request body must be a JSON object")
    body = {k: raw[k] for k in ("question", "top_k", "mode", "score_threshold") if k in raw}
    body["stream"] = True
    client = bridge.api_client(request, visitor.key)
    try:
        upstream = await client.send(
            client.build_request(
                "POST",
                f"/projects/{project_id}/answer",
                json=body,
                headers={"Accept": "text/event-stream"},
            ),
            stream=True,
        )
    except BaseException:
        await client.aclose()
        raise

    async def relay() -> AsyncIterator[bytes]:
        # Closing (the browser went away: Starlette cancels the stream) tells the API's route
        # that its client is gone, so the answer stops too.
        try:
            async for piece in upstream.aiter_raw():
                yield piece
        finally:
            await upstream.aclose()
            await client.aclose()

    return StreamingResponse(
        relay(),
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type", "text/event-stream"),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# ---- index versions (issue #13's routes) ---------------------------------------------------
INDEX_STATES = {
    "building": ("⟳", "building"),
    "ready": ("●", "ready — waiting to be activated"),
    "active": ("✓", "active — searches use it"),
    "retired": ("○", "retired"),
    "failed": ("✗", "failed"),
    "cancelled": ("-", "cancelled"),
}
templates.env.globals["index_state_label"] = lambda s: INDEX_STATES.get(s, ("?", s))


@router.get("/projects/{project_id}/index-versions")
async def index_versions_page(
    request: Request, project_id: uuid.UUID, visitor: VisitorDep
) -> HTMLResponse:
    """The project's index versions with their build progress; create, activate, cancel,
    delete."""
    project = await _project_async(request, project_id)
    if not features(request)["index_versions"]:
        return _unavailable(request, visitor, project, "index versions")
    async with bridge.api_client(request, visitor.key) as client:
        listed = await client.get(f"/projects/{project_id}/index-versions")
    if listed.status_code != 200:
        raise PageError(listed.status_code, _api_error_words(listed))
    return render(
        request,
        "index_versions.html",
        visitor,
        project=project,
        listing=listed.json(),
    )


@router.get("/projects/{project_id}/index-versions.json")
async def index_versions_json(
    request: Request, project_id: uuid.UUID, visitor: VisitorDep
) -> Response:
    """The API's listing as it is (the page's script polls it while a version builds)."""
    async with bridge.api_client(request, visitor.key) as client:
        listed = await client.get(f"/projects/{project_id}/index-versions")
    response = Response(
        listed.content,
        status_code=listed.status_code,
        media_type=listed.headers.get("content-type", "application/json"),
    )
    secure_headers(response)
    return response


def _optional_int(value: str | None) -> int | str | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        return value  # the API's 422 names the field


@router.post("/projects/{project_id}/index-versions", dependencies=[CsrfDep])
async def create_index_version(
    request: Request,
    project_id: uuid.UUID,
    visitor: VisitorDep,
    provider: Annotated[str, Form()],
    model: Annotated[str, Form()],
    dimensions: Annotated[str | None, Form()] = None,
    chunk_size: Annotated[str | None, Form()] = None,
    chunk_overlap: Annotated[str | None, Form()] = None,
    activate: Annotated[str, Form()] = "auto",
) -> Response:
    """Build a new index version (202 from the API), then back to the list."""
    body: dict[str, Any] = {"provider": provider.strip(), "model": model.strip()}
    body["activate"] = activate
    for name, value in (
        ("dimensions", dimensions),
        ("chunk_size", chunk_size),
        ("chunk_overlap", chunk_overlap),
    ):
        if (parsed := _optional_int(value)) is not None:
            body[name] = parsed
    async with bridge.api_client(request, visitor.key) as client:
        created = await client.post(f"/projects/{project_id}/index-versions", json=body)
    if created.status_code not in (200, 201, 202):
        return await _index_versions_error(request, project_id, visitor, created)
    return _back(f"/ui/projects/{project_id}/index-versions", "version-created")


async def _index_versions_error(
    request: Request, project_id: uuid.UUID, visitor: Visitor, failed: Any
) -> HTMLResponse:
    project = await _project_async(request, project_id)
    async with bridge.api_client(request, visitor.key) as client:
        listed = await client.get(f"/projects/{project_id}/index-versions")
    return render(
        request,
        "index_versions.html",
        visitor,
        status_code=failed.status_code,
        project=project,
        listing=listed.json() if listed.status_code == 200 else {"active": None, "versions": []},
        error=_api_error_words(failed),
    )


@router.post("/projects/{project_id}/index-versions/{version}/{action}", dependencies=[CsrfDep])
async def index_version_action(
    request: Request, project_id: uuid.UUID, version: int, action: str, visitor: VisitorDep
) -> Response:
    """Activate, cancel or delete one index version."""
    path = f"/projects/{project_id}/index-versions/{version}"
    calls = {
        "activate": ("POST", f"{path}/activate", "version-activated"),
        "cancel": ("POST", f"{path}/cancel", "version-cancelled"),
        "delete": ("DELETE", path, "version-deleted"),
    }
    if action not in calls:
        raise PageError(404, f"no action {action!r} on an index version")
    method, target, notice = calls[action]
    async with bridge.api_client(request, visitor.key) as client:
        done = await client.request(method, target)
    if done.status_code >= 400:
        return await _index_versions_error(request, project_id, visitor, done)
    return _back(f"/ui/projects/{project_id}/index-versions", notice)
