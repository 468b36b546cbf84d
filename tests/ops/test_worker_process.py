"""`docvec worker` as a supervisor sees it: its exit code and its process count (embedded store)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.ops.harness import DOCVEC, Proc, wait_until

pytestmark = pytest.mark.slow


def _env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCVEC_")}
    env.update(
        DOCVEC_DATA_DIR=str(tmp_path / "data"),
        DOCVEC_BROKER_URL=redis_url,
        DOCVEC_QUEUE=f"q-{tmp_path.name[-12:]}",
        DOCVEC_WORKER_METRICS_PORT="0",
    )
    return env


def test_a_worker_that_cannot_run_exits_non_zero(tmp_path: Path, redis_url: str) -> None:
    """Celery's own ``worker_main`` exits 0 here (it drops the worker's exit code); a supervisor
    that restarts on failure must see the failure."""
    pidfile = tmp_path / "worker.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # a live process already holds the pidfile
    run = subprocess.run(
        [DOCVEC, "worker", f"--pidfile={pidfile}"],
        env=_env(tmp_path, redis_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "already exists" in run.stdout + run.stderr


def test_on_the_embedded_store_one_process_runs_and_says_why(
    tmp_path: Path, redis_url: str
) -> None:
    env = {**_env(tmp_path, redis_url), "DOCVEC_WORKER_CONCURRENCY": "3"}
    log = tmp_path / "worker.log"
    proc = Proc([DOCVEC, "worker"], env, log, tmp_path)
    try:
        wait_until(lambda: "ready." in proc.tail(20000), 120, "the worker to be ready")
        text = " ".join(proc.tail(20000).split())  # rich wraps the warning
        assert "opens in one process only: running 1 worker process instead of 3" in text
        assert "concurrency: 1 (prefork)" in text, text[-3000:]
    finally:
        assert proc.proc is not None
        os.killpg(proc.proc.pid, signal.SIGTERM)
        code = proc.proc.wait(timeout=60)
    # Asked to stop (SIGTERM: Celery's warm shutdown), it exits 0.
    assert code == 0, proc.tail()
