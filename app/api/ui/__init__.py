"""The web console: ``/ui``, served by the API's own app — no Node build, every asset local.

Pages for people who own the documents: projects (list, create), a project (drag-and-drop upload
of many files with an answer per file, the documents table updating live over Server-Sent Events,
the project's progress), a document (attempts with timings, chunks with pages), search, ask
(issue #15's answers, streamed) and index versions (issue #13), the last two shown when their API
routes are there. Sign-in, scoping and CSRF: :mod:`app.api.ui.security`.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from app.api.ui.routes import HERE, render, router, secure_headers, wants_json
from app.api.ui.security import PageError, SignInRequired, server_secret
from app.config import Settings

__all__ = ["install"]


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the console on ``app``: its pages under ``/ui``, its files under ``/ui/static``,
    and the handler that answers its errors with a page (or JSON, to its script)."""
    app.state.ui_secret = server_secret(settings)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(router)
    app.add_exception_handler(PageError, _page_error)


async def _page_error(request: Request, exc: Exception) -> Response:
    """A console error: JSON to the console's script; to a page request the sign-in form (401)
    or a page saying what went wrong, with the status the API would answer."""
    assert isinstance(exc, PageError)
    response: Response
    if wants_json(request) or "x-csrf-token" in request.headers:
        response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    elif isinstance(exc, SignInRequired) and request.method == "GET":
        response = RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)
    elif isinstance(exc, SignInRequired):
        response = render(
            request,
            "login.html",
            None,
            status_code=401,
            open_mode=False,
            next="/ui/projects",
            error=str(exc.detail),
        )
    else:
        response = render(
            request, "error.html", None, status_code=exc.status_code, message=str(exc.detail)
        )
    secure_headers(response)
    return response
