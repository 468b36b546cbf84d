"""The API's access log without secrets: credentials sent in a URL by mistake are redacted.

Keys belong in the ``Authorization`` header (app/api/auth.py), and the API reads them nowhere
else; but a client that puts one in the URL (``?api_key=...``) must not leave it in uvicorn's
access log, where logs are shipped and kept. :class:`RedactQuerySecrets` rewrites the value of
every credential-like query parameter, and any docvec key wherever it appears in the line.

It sits on the ``uvicorn.access`` *logger*, so every handler of it (a file, a log shipper, pytest's
capture) gets redacted records: :func:`log_config` puts it there for ``docvec api``, and
:func:`install` — called by :func:`app.api.main.create_app` — for any other server that runs the
app (``uvicorn app.api.main:create_app --factory``, gunicorn with uvicorn workers).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any
from urllib.parse import unquote_plus

from typing_extensions import override

from app.apikeys import KEY_PREFIX

__all__ = ["ACCESS_LOGGER", "RedactQuerySecrets", "install", "log_config", "redact_query"]

#: uvicorn's access logger.
ACCESS_LOGGER = "uvicorn.access"
#: What a redacted value becomes.
REDACTED = "[redacted]"
#: A query parameter is a credential when its name, lower-cased and without ``-``, ``_`` and ``.``,
#: ends with one of these: ``api_key``, ``X-API-Key``, ``key``, ``access_token``, ``client_secret``,
#: ``password``, ``auth``, ...
SECRET_NAME_ENDINGS = (
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "credential",
    "credentials",
    "signature",
    "auth",
    "authorization",
    "bearer",
)

_PARAM = re.compile(r"([?&])([^=&#\s]+)=([^&#\s]*)")
# A docvec key anywhere (a path segment, a parameter of any name); partial keys too.
_KEY = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]+")


def _is_secret_name(name: str) -> bool:
    plain = re.sub(r"[-_.]", "", unquote_plus(name).lower())
    return plain.endswith(SECRET_NAME_ENDINGS)


def _redact_param(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    return f"{sep}{name}={REDACTED}" if value and _is_secret_name(name) else match.group(0)


def redact_query(text: str) -> str:
    """``text`` with the value of every credential-like query parameter, and every docvec key,
    replaced by ``[redacted]``."""
    return _KEY.sub(KEY_PREFIX + REDACTED, _PARAM.sub(_redact_param, text))


class RedactQuerySecrets(logging.Filter):
    """Redacts credentials in log records: in their arguments (uvicorn passes the request's path
    as one, and its access formatter needs the arguments), then in the message they make."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_query(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: logging reports it on its own
            return True
        clean = redact_query(message)
        if clean != message:
            # The secret is in the format string itself: the record keeps the redacted text.
            record.msg, record.args = clean, ()
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put :class:`RedactQuerySecrets` on ``logger`` (uvicorn's access logger), once."""
    logger = logger or logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactQuerySecrets) for f in logger.filters):
        logger.addFilter(RedactQuerySecrets())


def log_config() -> dict[str, Any]:
    """uvicorn's default ``LOGGING_CONFIG`` with :class:`RedactQuerySecrets` on its access
    logger."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": RedactQuerySecrets}
    config["loggers"][ACCESS_LOGGER].setdefault("filters", []).append("redact_query")
    return config
