"""Request bodies in strict JSON: no NaN, no Infinity, no number too large for a float, no lone
surrogate in a string, no body a JSON parser cannot read — each answered 422 instead of a 500.

Python's ``json`` module accepts ``NaN``, ``Infinity`` and ``1e400`` (which becomes ``inf``), and
decodes ``"\\ud800"`` into a string no encoder can write: the 422 that echoed such an input, or the
database that was handed it, then failed. RFC 8259 §6 leaves NaN and Infinity out of JSON, and
§8.2 calls unpaired surrogates unpredictable; docvec refuses them at the door. Bodies that are not
UTF-8/16/32, integers longer than Python converts (4,300 digits) and nesting deeper than the
parser's recursion limit get the same 422 with a reason, not FastAPI's bare 400 "There was an error
parsing the body". Every router uses :class:`StrictJSONRoute`; FastAPI turns the
:class:`json.JSONDecodeError` raised here into its usual 422 ``json_invalid`` error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from typing_extensions import override

__all__ = ["StrictJSONRequest", "StrictJSONRoute", "strict_loads"]


class _Refused(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _Refused(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is too large for a 64-bit float")
    return value


def _check_strings(value: Any) -> None:
    """Raise :class:`_Refused` naming the first string (or key) with a lone surrogate.

    Iterative: a body nested as deep as the parser allows must not overflow the stack here.
    """
    todo: list[tuple[Any, str]] = [(value, "body")]
    while todo:
        item, path = todo.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise _Refused(
                    f"{path}: a lone surrogate (U+{ord(item[exc.start]):04X}) is not a character"
                ) from None
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                # A key with a surrogate cannot name itself in the message: its parent does.
                todo.append((child, f"{path}.{key}" if key.isascii() else path))
                todo.append((key, path))
        elif isinstance(item, list):
            todo.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))


def strict_loads(body: bytes | str) -> Any:
    """``json.loads`` that refuses what JSON does not have.

    Bytes are decoded as ``json.loads`` does (UTF-8, or UTF-16/32 told by their first bytes).

    Raises:
        json.JSONDecodeError: invalid JSON or encoding, NaN/Infinity, a non-finite number, a lone
            surrogate, an integer too long to convert, nesting too deep to parse.
    """
    text = ""
    try:
        text = body.decode(json.detect_encoding(body)) if isinstance(body, bytes) else body
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
        _check_strings(value)
    except _Refused as exc:
        raise json.JSONDecodeError(str(exc), text, 0) from None
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(
            f"the body is not valid {exc.encoding.upper()} (JSON is UTF-8)", "", exc.start
        ) from None
    except RecursionError:
        raise json.JSONDecodeError("the body is nested too deeply", text, 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        # int() refuses integers of more than sys.get_int_max_str_digits() digits (CVE-2020-10735).
        raise json.JSONDecodeError(f"a number is too long: {exc}", text, 0) from None
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
