"""Client-side rate limits: requests per minute and tokens per minute, and the shared pause a
429 with ``Retry-After`` imposes.

Hosted APIs limit an account per minute (OpenAI and Gemini publish per-tier requests and tokens
per minute); sending faster only buys 429s and retries. One :class:`RateLimiter` is shared by the
threads of one provider instance, i.e. one per process: with N worker processes, configure 1/N of
the account's limit (``DOCVEC_EMBEDDING__REQUESTS_PER_MINUTE`` / ``__TOKENS_PER_MINUTE``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class _Bucket:
    """A token bucket refilled at ``per_minute / 60`` per second, holding at most one second's
    worth (providers may enforce per-minute limits over shorter windows, so no big bursts).

    A cost larger than the bucket is allowed once the bucket is full and leaves it in debt, so
    the average rate holds for requests of any size.
    """

    def __init__(self, per_minute: float, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.last = now

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.last) * self.rate)
        self.last = now

    def wait_time(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` may be taken (0.0: now)."""
        self._refill(now)
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, cost: float) -> None:
        self.level -= cost


class RateLimiter:
    """Client-side limit of requests per minute and tokens per minute, shared by the threads of
    one provider instance (one per process), plus a shared pause after a 429.

    Args:
        requests_per_minute / tokens_per_minute: None = unlimited.
        clock: seconds, monotonic; injectable for tests (default ``time.monotonic``).

    Waiting is an ``Event`` wait, so a cancelled call stops waiting at once.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        now = clock()
        self._requests = _Bucket(requests_per_minute, now) if requests_per_minute else None
        self._tokens = _Bucket(tokens_per_minute, now) if tokens_per_minute else None
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute

    def delay(self, tokens: int) -> float:
        """Seconds to wait before a request of ``tokens`` may go; 0.0 means it was admitted (and
        charged). Callers sleep the returned time and ask again."""
        with self._lock:
            now = self._clock()
            wait_s = max(0.0, self._paused_until - now)
            for bucket, cost in ((self._requests, 1.0), (self._tokens, float(tokens))):
                if bucket is not None:
                    wait_s = max(wait_s, bucket.wait_time(cost, now))
            if wait_s > 0:
                return wait_s
            if self._requests is not None:
                self._requests.take(1.0)
            if self._tokens is not None:
                self._tokens.take(float(tokens))
            return 0.0

    def acquire(self, tokens: int, cancel: threading.Event | None = None) -> float:
        """Block until a request of ``tokens`` tokens may be sent; returns seconds waited.

        Returns early (without admission) if ``cancel`` is set meanwhile.
        """
        waited = 0.0
        event = cancel or threading.Event()
        while (wait_s := self.delay(tokens)) > 0:
            if event.wait(wait_s):
                break
            waited += wait_s
        return waited

    def pause(self, seconds: float) -> None:
        """Hold every request of this process for ``seconds`` (a 429 with ``Retry-After``)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
