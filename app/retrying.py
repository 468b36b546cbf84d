"""Short, bounded, jittered retries inside one call — the first of Onyx's two retry levels.

A blip of a few seconds (a vector store restarting, a dropped SQL connection) is retried here, in
the process, so work already paid for (the embeddings of a document) is not thrown away; only
when these retries are spent does the error reach the task, whose retry is minutes later. Shared
by the pipeline's store writes and the embedding providers' HTTP calls.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def backoff_delay(
    attempt: int,
    *,
    base_s: float = 0.5,
    cap_s: float = 8.0,
    retry_after_s: float | None = None,
) -> float:
    """Seconds to wait before retry ``attempt`` (1-based).

    Without a server's word: ``base_s * 2**(attempt-1)`` capped at ``cap_s``, times a random
    factor in [0.5, 1.0) ("equal jitter": clients that failed together spread out, and none
    retries at once). With ``retry_after_s`` (Retry-After, RetryInfo): never earlier than asked,
    and a little later — up to 10 % plus 50 ms, at most 1 s — so paused workers do not all
    return in the same instant.
    """
    if retry_after_s is not None:
        return retry_after_s + random.uniform(0.0, min(1.0, 0.1 * retry_after_s + 0.05))
    return min(cap_s, base_s * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def retry_call(
    call: Callable[[], T],
    *,
    is_transient: Callable[[BaseException], bool],
    attempts: int = 4,
    budget_s: float = 20.0,
    base_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "call",
) -> T:
    """Run ``call()``; on an error ``is_transient`` accepts, wait :func:`backoff_delay` and try
    again, at most ``attempts`` times in all and never past ``budget_s`` seconds of waiting.

    An error that carries ``retry_after_s`` (:class:`app.errors.TransientError`: a store's
    Retry-After) is waited for as asked, never less; one that asks for more than the budget
    left is re-raised at once.

    Raises:
        the last error: when it is not transient, or the attempts or the budget are spent.
    """
    waited = 0.0
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            retry_after = getattr(exc, "retry_after_s", None)
            delay = backoff_delay(
                attempt,
                base_s=base_s,
                retry_after_s=float(retry_after) if retry_after is not None else None,
            )
            if waited + delay > budget_s:
                raise
            log.warning("%s failed (%s); retry %d in %.1f s", what, exc, attempt, delay)
            sleep(delay)
            waited += delay
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
