"""Who is using the console, and whether a form really came from it.

**Sign-in.** The console signs in with an API key (``docvec keys create``), kept in the cookie
:data:`KEY_COOKIE`: ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page
sends it), ``Path=/ui`` (the JSON API never sees it: it reads keys from the ``Authorization``
header only), ``Secure`` over HTTPS, and a session cookie (gone when the browser closes). The key
is never written into a page or a URL. :func:`principal` then decides exactly as the API's
:func:`app.api.auth.authorize` does: without a cookie the console is open while no key is required
(no unrevoked key, ``require_api_key`` false — the embedded single-user mode), a cookie must hold
an unrevoked key, and a scoped key opens only its projects (:func:`check_scope`, the API's rule).

**CSRF.** Every form and every script request that changes something carries a token, checked by
:func:`check_csrf`. The token is an HMAC-SHA256, under the server secret (``DOCVEC_UI_SECRET``, or
a random one per process), of a random nonce kept in the cookie :data:`NONCE_COOKIE` and of the
signed-in key's hash: OWASP's *signed double-submit cookie*. A page of another site can neither
read the nonce nor compute the token, and signing in as another key changes every token.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Header, HTTPException, Request, Response, status
from sqlalchemy.orm import Session

from app import apikeys
from app.api.auth import check_scope as api_check_scope
from app.apikeys import Principal
from app.config import Settings

__all__ = [
    "COOKIE_PATH",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "KEY_COOKIE",
    "NONCE_COOKIE",
    "CsrfDep",
    "CsrfHeaderDep",
    "PageError",
    "SignInRequired",
    "Visitor",
    "check_csrf",
    "check_scope",
    "csrf_token",
    "ensure_nonce",
    "principal",
    "server_secret",
    "set_key_cookie",
]

#: Cookie holding the signed-in API key.
KEY_COOKIE = "docvec_key"
#: Cookie holding the random nonce that CSRF tokens are bound to.
NONCE_COOKIE = "docvec_csrf"
#: Both cookies go to the console only.
COOKIE_PATH = "/ui"
#: Name of the token's hidden form field, and of the header scripts send it in.
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class PageError(HTTPException):
    """An error the console answers with a page (or, to a script, JSON) instead of the API's
    JSON body: 403, 404, 409, 422 with a message written for people."""


class SignInRequired(PageError):
    """No usable key: a page request is sent to the sign-in form, a script gets 401."""

    def __init__(self, message: str) -> None:
        super().__init__(status.HTTP_401_UNAUTHORIZED, message)


@dataclass(frozen=True, slots=True)
class Visitor:
    """The signed-in caller of one console request.

    Attributes:
        principal: as the API would see it (scope, name).
        key: the API key from the cookie, or None in the open single-user mode. Only ever sent
            on, in an ``Authorization`` header, to the app's own API routes (app/api/ui/bridge.py).
        signed_in: a key is in use (False: the console is open without one).
    """

    principal: Principal
    key: str | None

    @property
    def signed_in(self) -> bool:
        return self.key is not None


def server_secret(settings: Settings) -> bytes:
    """The key of the CSRF HMAC: ``settings.ui_secret``, or 32 random bytes when it is unset
    (drawn once per app by :func:`app.api.ui.install`, kept on ``app.state.ui_secret``)."""
    if settings.ui_secret is not None:
        return settings.ui_secret.get_secret_value().encode("utf-8")
    return secrets.token_bytes(32)


def principal(request: Request, session: Session, settings: Settings) -> Visitor:
    """Who is calling, decided as :func:`app.api.auth.authorize` decides for the API.

    Raises:
        SignInRequired: a key is required and the cookie holds none, or holds one that is unknown
            or revoked.
    """
    key = request.cookies.get(KEY_COOKIE)
    if not key:
        if not settings.require_api_key and not apikeys.any_active_key(session):
            return Visitor(apikeys.ANONYMOUS, None)
        raise SignInRequired("sign in with an API key to use the console")
    found = apikeys.authenticate(session, key)
    if found is None:
        raise SignInRequired("the API key you signed in with is not valid any more (revoked?)")
    return Visitor(found, key)


def check_scope(request: Request, session: Session, visitor: Visitor) -> None:
    """The API's scope rule on a console path: its ``{project_id}`` or ``{document_id}`` outside
    the key's projects answers 404, worded like a missing resource's.

    Raises:
        PageError: 404.
    """
    if visitor.principal.all_projects:
        return
    try:
        api_check_scope(request, session, visitor.principal)
    except HTTPException as exc:
        raise PageError(exc.status_code, str(exc.detail)) from exc


def ensure_nonce(request: Request, response: Response | None = None) -> str:
    """The CSRF nonce of this browser: from its cookie, or a new one, set on ``response``.

    The new nonce is also kept on ``request.state`` so that the page rendered in the same request
    carries tokens bound to it.
    """
    nonce = getattr(request.state, "csrf_nonce", None) or request.cookies.get(NONCE_COOKIE)
    if not nonce or len(nonce) > 100:
        nonce = secrets.token_urlsafe(32)
        request.state.csrf_nonce = nonce
        request.state.csrf_nonce_is_new = True
    if response is not None and getattr(request.state, "csrf_nonce_is_new", False):
        _set_cookie(request, response, NONCE_COOKIE, nonce)
    return str(nonce)


def csrf_token(request: Request, key: str | None) -> str:
    """The token this browser's forms carry while signed in with ``key`` (None: no key)."""
    nonce = ensure_nonce(request)
    fingerprint = apikeys.hash_secret(key) if key else "-"
    secret: bytes = request.app.state.ui_secret
    mac = hmac.new(secret, f"csrf|{nonce}|{fingerprint}".encode(), "sha256")
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def check_csrf(request: Request, token: str | None) -> None:
    """Refuse a state-changing request whose token is missing or not this browser's.

    Raises:
        PageError: 403, saying to reload the page (a token from before a restart of a server
            without ``DOCVEC_UI_SECRET`` is refused too).
    """
    nonce = request.cookies.get(NONCE_COOKIE)
    if not token or not nonce:
        raise PageError(
            status.HTTP_403_FORBIDDEN,
            "this form has no valid security token (CSRF): reload the page and send it again",
        )
    expected = csrf_token(request, request.cookies.get(KEY_COOKIE))
    if not hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace")):
        raise PageError(
            status.HTTP_403_FORBIDDEN,
            "this form's security token (CSRF) does not match: reload the page and send it again",
        )


def _csrf_form_or_header(
    request: Request,
    form_token: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
    header_token: Annotated[str | None, Header(alias=CSRF_HEADER)] = None,
) -> None:
    check_csrf(request, header_token or form_token)


def _csrf_header(
    request: Request, header_token: Annotated[str | None, Header(alias=CSRF_HEADER)] = None
) -> None:
    check_csrf(request, header_token)


#: Dependency of every console form that changes something: the token from the form field
#: ``csrf_token`` or the header ``X-CSRF-Token``.
CsrfDep = Depends(_csrf_form_or_header)
#: The same for routes only scripts call with a JSON body: the header ``X-CSRF-Token``.
CsrfHeaderDep = Depends(_csrf_header)


def set_key_cookie(request: Request, response: Response, key: str | None) -> None:
    """Sign ``response``'s browser in with ``key``, or out (None)."""
    if key is None:
        response.delete_cookie(KEY_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    else:
        _set_cookie(request, response, KEY_COOKIE, key)


def _set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
