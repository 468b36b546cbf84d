"""The API's access log without secrets: query parameters that look like credentials are redacted.

Keys belong in the ``Authorization`` header (app/api/auth.py), and the API reads them nowhere
else; but a client that puts one in the URL by mistake (``?api_key=...``) must not leave it in
uvicorn's access log, where logs are shipped and kept. :func:`log_config` is uvicorn's own logging
configuration with :class:`RedactQuerySecrets` on the access handler.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from typing_extensions import override

#: Query parameter names redacted in the log (case-insensitive, ``-``/``_`` alike).
SECRET_PARAMS = ("api_key", "apikey", "key", "token", "access_token", "secret", "password")

_SECRET = re.compile(
    r"(?i)([?&](?:" + "|".join(p.replace("_", "[-_]?") for p in SECRET_PARAMS) + r")=)[^&#\s]*"
)


def redact_query(text: str) -> str:
    """``text`` with the value of every credential-like query parameter replaced."""
    return _SECRET.sub(r"\1[redacted]", text)


class RedactQuerySecrets(logging.Filter):
    """Redacts credential-like query parameters in uvicorn access records (their path is an
    argument of the record, not part of its format)."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_query(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        record.msg = redact_query(str(record.msg))
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's default ``LOGGING_CONFIG`` with :class:`RedactQuerySecrets` on its access log."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": RedactQuerySecrets}
    config["handlers"]["access"].setdefault("filters", []).append("redact_query")
    return config
