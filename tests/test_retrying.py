"""The in-process retry helper (app/retrying.py), with an injected sleep: no real waiting.

Delays are random (equal jitter), so each property is checked over many runs and against its
bounds, which hold for every draw.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.errors import DatabaseUnavailable, TransientError, VectorStoreUnavailable
from app.retrying import backoff_delay, retry_call

RUNS = 200


class Flaky:
    """A call that raises ``errors`` one by one, then returns ``"done"``; counts its calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError)


def _down(n: int) -> list[Exception]:
    return [VectorStoreUnavailable(f"down {i}") for i in range(1, n + 1)]


def _run(
    call: Callable[[], str],
    delays: list[float],
    *,
    attempts: int = 4,
    budget_s: float = 20.0,
    base_s: float = 0.5,
) -> str:
    """``retry_call(call)`` with transient errors retried; its waits are appended to ``delays``."""
    return retry_call(
        call,
        is_transient=_transient,
        attempts=attempts,
        budget_s=budget_s,
        base_s=base_s,
        sleep=delays.append,
    )


def test_returns_after_transient_errors_with_one_wait_each() -> None:
    delays: list[float] = []
    call = Flaky(*_down(2))
    assert _run(call, delays) == "done"
    assert call.calls == 3 and len(delays) == 2


def test_no_error_no_wait() -> None:
    delays: list[float] = []
    call = Flaky()
    assert _run(call, delays) == "done"
    assert call.calls == 1 and delays == []


def test_stops_at_the_attempts_and_raises_the_last_error() -> None:
    delays: list[float] = []
    call = Flaky(*_down(10))
    with pytest.raises(VectorStoreUnavailable, match="down 3"):
        _run(call, delays, attempts=3, budget_s=1000)
    assert call.calls == 3 and len(delays) == 2


def test_one_attempt_never_waits() -> None:
    delays: list[float] = []
    call = Flaky(*_down(1))
    with pytest.raises(VectorStoreUnavailable):
        _run(call, delays, attempts=1)
    assert call.calls == 1 and delays == []


def test_stops_at_the_budget() -> None:
    for _ in range(RUNS):
        delays: list[float] = []
        call = Flaky(*_down(20))
        with pytest.raises(VectorStoreUnavailable):
            _run(call, delays, attempts=10, base_s=1.0, budget_s=2.0)
        # Waits of [0.5, 1) then [1, 2) then [2, 4): the budget stops it after one or two.
        assert sum(delays) <= 2.0
        assert 1 <= len(delays) <= 2
        assert call.calls == len(delays) + 1


def test_zero_budget_means_no_retry() -> None:
    delays: list[float] = []
    call = Flaky(*_down(1))
    with pytest.raises(VectorStoreUnavailable):
        _run(call, delays, budget_s=0)
    assert call.calls == 1 and delays == []


def test_non_transient_error_is_raised_at_once() -> None:
    delays: list[float] = []
    call = Flaky(ValueError("a bug"), *_down(1))
    with pytest.raises(ValueError, match="a bug"):
        _run(call, delays)
    assert call.calls == 1 and delays == []
    # is_transient decides, not the class alone.
    call = Flaky(DatabaseUnavailable("down"))
    with pytest.raises(DatabaseUnavailable):
        retry_call(call, is_transient=lambda e: False, sleep=delays.append)
    assert call.calls == 1 and delays == []


def test_transient_after_a_permanent_one_is_not_reached() -> None:
    delays: list[float] = []
    call = Flaky(*_down(1), ValueError("a bug"), *_down(1))
    with pytest.raises(ValueError):
        _run(call, delays)
    assert call.calls == 2 and len(delays) == 1


@pytest.mark.parametrize("base_s", [0.5, 1.0, 2.0])
def test_delays_grow_within_equal_jitter_bounds(base_s: float) -> None:
    for _ in range(RUNS):
        delays: list[float] = []
        with pytest.raises(VectorStoreUnavailable):
            _run(Flaky(*_down(10)), delays, attempts=4, base_s=base_s, budget_s=1000)
        assert len(delays) == 3
        for n, delay in enumerate(delays, 1):
            full = base_s * 2 ** (n - 1)
            assert 0.5 * full <= delay < full, (n, delay)
        # Each wait's lowest value is the previous one's highest: they always grow.
        assert delays == sorted(delays) and len(set(delays)) == 3


def test_backoff_delay_is_capped() -> None:
    for attempt in range(1, 12):
        for _ in range(50):
            delay = backoff_delay(attempt, base_s=1.0, cap_s=8.0)
            full = min(8.0, 2.0 ** (attempt - 1))
            assert 0.5 * full <= delay < full


def test_retry_after_is_honoured_never_earlier() -> None:
    for _ in range(RUNS):
        delays: list[float] = []
        call = Flaky(
            VectorStoreUnavailable("busy", retry_after_s=5.0),
            VectorStoreUnavailable("busy", retry_after_s=0.2),
        )
        assert _run(call, delays, base_s=0.5, budget_s=20) == "done"
        first, second = delays
        # As asked, plus a little: up to 10 % + 50 ms, at most 1 s.
        assert 5.0 <= first <= 5.0 + 0.55 + 1e-9
        assert 0.2 <= second <= 0.2 + 0.07 + 1e-9


def test_retry_after_beyond_the_budget_is_raised_at_once() -> None:
    delays: list[float] = []
    call = Flaky(VectorStoreUnavailable("busy", retry_after_s=60.0))
    with pytest.raises(VectorStoreUnavailable, match="busy"):
        _run(call, delays, budget_s=20)
    assert call.calls == 1 and delays == []


def test_retries_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    delays: list[float] = []
    with caplog.at_level("WARNING", logger="app.retrying"):
        retry_call(
            Flaky(*_down(2)),
            is_transient=_transient,
            sleep=delays.append,
            what="writing document X",
        )
    messages = [r.getMessage() for r in caplog.records if r.name == "app.retrying"]
    assert len(messages) == 2
    assert messages[0].startswith("writing document X failed (down 1); retry 1 in ")
    assert messages[1].startswith("writing document X failed (down 2); retry 2 in ")
