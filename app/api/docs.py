"""``/docs`` (Swagger UI) and ``/redoc`` served with local assets, so they work without internet.

FastAPI's own pages load Swagger UI and ReDoc from a CDN: air-gapped, they render nothing. Here the
pages are FastAPI's (``get_swagger_ui_html``, ``get_redoc_html``, as its guide *Custom Docs UI
Static Assets (Self-Hosting)* shows), pointed at files served from ``/docs-assets``. The files come
from the PyPI package ``fastapi-offline`` (pinned in pyproject.toml; 1.7.7 ships Swagger UI
5.32.6 and ReDoc 2.5.3), used only as the carrier of those files. ReDoc's Google Fonts link is
left out; the pages fall back to the browser's fonts.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_PATH", "assets_dir", "install"]

#: Where the Swagger UI and ReDoc files are served.
ASSETS_PATH = "/docs-assets"


def assets_dir() -> Path:
    """The folder holding ``swagger-ui-bundle.js``, ``swagger-ui.css``, ``redoc.standalone.js``
    and ``favicon.png``.

    Raises:
        RuntimeError: ``fastapi-offline`` is not installed (``pip install -e .`` brings it).
    """
    try:
        folder = Path(str(files("fastapi_offline") / "static"))
    except ModuleNotFoundError as exc:  # pragma: no cover - a dependency of docvec
        raise RuntimeError(
            "the API's /docs need the package fastapi-offline (pip install -e .)"
        ) from exc
    return folder


def install(app: FastAPI) -> None:
    """Serve ``/docs``, ``/docs/oauth2-redirect`` and ``/redoc`` from local assets on ``app``,
    which must be built with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS_PATH, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=oauth2_redirect_url,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        )

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )
