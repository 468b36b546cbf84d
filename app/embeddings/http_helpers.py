"""Reading a failed HTTP exchange: how long the server asked to wait, whether a status or an
exception is worth retrying, and messages with every secret taken out.

Pure functions, no SDK imported: the remote providers (``remote.py``) map their SDK's errors with
them into :class:`app.errors.ProviderUnavailable` (transient, with ``retry_after_s``) or
:class:`app.errors.ProviderRejected` (permanent).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

# ---- secrets ---------------------------------------------------------------------------------
#: Shapes of API keys and credentials SDK messages are known to echo (OpenAI's "Incorrect API key
#: provided: sk-abc***xyz", Google's ``AIza...`` keys, bearer headers, ``key=`` query strings).
_KEY_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-*.]{6,}|AIza[0-9A-Za-z_\-]{20,}|(?i:bearer)\s+[^\s'\",]+"
    r"|(?i:[?&]key=)[^&\s'\"]+)"
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every given secret, and anything shaped like an API key, replaced by ``***``.

    Applied to every provider message that can reach an exception, a log line or the database.
    Secrets shorter than 4 characters are left (replacing them would garble the message).
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _KEY_SHAPES.sub("***", text)


# ---- waiting -----------------------------------------------------------------------------------
_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)")


def parse_duration(value: str) -> float | None:
    """Seconds in a duration such as ``"1.5s"``, ``"6m0s"``, ``"20ms"`` or ``"36s"``; None if
    the string is not one (OpenAI's ``x-ratelimit-reset-*`` headers, Google's ``retryDelay``)."""
    value = value.strip()
    parts = list(_DURATION.finditer(value))
    if not parts or "".join(p.group(0) for p in parts) != value:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(p["n"]) * scale[p["unit"]] for p in parts)


def google_retry_delay(body: Any) -> float | None:
    """Seconds of a ``google.rpc.RetryInfo`` detail in a Google API error body
    (``{"error": {"details": [{"@type": "...google.rpc.RetryInfo", "retryDelay": "36s"}]}}``),
    None if it has none. Gemini sends it with 429 RESOURCE_EXHAUSTED."""
    error = body.get("error", body) if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for d in details or []:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return parse_duration(str(d.get("retryDelay", "")))
    return None


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked to wait: ``retry-after-ms``, ``retry-after`` (seconds or an
    HTTP date, RFC 9110 §10.2.3), else OpenAI's ``x-ratelimit-reset-requests/tokens``.

    Returns None when no header says; never a negative number.
    """
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
    except ValueError:
        pass
    raw = lowered.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            try:
                when = parsedate_to_datetime(raw)
                return max(0.0, when.timestamp() - time.time())
            except (TypeError, ValueError, IndexError):
                pass
    # OpenAI also says when its request window resets ("1s", "6m0s").
    return parse_duration(lowered.get("x-ratelimit-reset-requests", ""))


# ---- transient or permanent --------------------------------------------------------------------
def transient_status(status: int) -> bool:
    """HTTP statuses worth retrying: 408 (request timeout), 409 (OpenAI: lock timeout), 425,
    429 (rate limited) and every 5xx."""
    return status in (408, 409, 425, 429) or status >= 500


def is_network_error(exc: BaseException) -> bool:
    """True for timeouts, refused or reset connections and protocol errors, raised by httpx,
    httpx2 (openai's and google-genai's transport) or the standard library."""
    for cls in type(exc).__mro__:
        if cls.__module__.split(".")[0] in ("httpx", "httpx2") and cls.__name__ in (
            "TransportError",
            "TimeoutException",
        ):
            return True
    return isinstance(exc, (ConnectionError, TimeoutError))
