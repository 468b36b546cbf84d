"""Request bodies in strict JSON: no NaN, no Infinity, no number too large for a float, no lone
surrogate in a string — each answered 422 instead of a 500.

Python's ``json`` module accepts ``NaN``, ``Infinity`` and ``1e400`` (which becomes ``inf``), and
decodes ``"\\ud800"`` into a string no encoder can write: the 422 that echoed such an input, or the
database that was handed it, then failed. RFC 8259 §6 leaves NaN and Infinity out of JSON, and
§8.2 calls unpaired surrogates unpredictable; docvec refuses them at the door. Every router uses
:class:`StrictJSONRoute`; FastAPI turns the :class:`json.JSONDecodeError` raised here into its usual
422 ``json_invalid`` error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from typing_extensions import override


class _Refused(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _Refused(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is too large for a 64-bit float")
    return value


def _check_strings(value: Any, path: str = "body") -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _Refused(
                f"{path}: a lone surrogate (U+{ord(value[exc.start]):04X}) is not a character"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, path)
            _check_strings(item, f"{path}.{key}" if key.isascii() else path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_strings(item, f"{path}[{index}]")


def strict_loads(body: bytes | str) -> Any:
    """``json.loads`` that refuses what JSON does not have.

    Raises:
        json.JSONDecodeError: invalid JSON, NaN/Infinity, a non-finite number, a lone surrogate.
    """
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
        _check_strings(value)
    except _Refused as exc:
        raise json.JSONDecodeError(str(exc), text, 0) from None
    return value


class StrictJSONRequest(Request):
    """A request whose ``json()`` is :func:`strict_loads`."""

    @override
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An API route that reads its JSON body with :class:`StrictJSONRequest`."""

    @override
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
