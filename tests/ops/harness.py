"""Real processes for fault tests: `docvec worker` / `beat` / `flower` and a private Redis.

Every process runs in its own session so a test can SIGKILL a worker with all its children,
like a machine that dies; everything is stopped at the end of the test.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

DOCVEC = str(Path(sys.executable).parent / "docvec")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


class Proc:
    """A command in its own process group, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.args, self.env, self.log, self.cwd = args, env, log, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            start_new_session=True,
        )
        out.close()

    def kill(self) -> None:
        """SIGKILL the whole group (the worker and its prefork children) at once."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def start_worker(env: dict[str, str], tmp: Path, name: str) -> Proc:
    return Proc([DOCVEC, "worker", f"--hostname={name}@%h"], env, tmp / f"{name}.log", tmp)


def start_redis(port: int, tmp: Path) -> Proc:
    """A private Redis with an append-only file, like docker-compose's, so a restart keeps the
    queue (what is lost anyway — unacknowledged deliveries — the visibility timeout brings back)."""
    data = tmp / f"redis-{port}"
    data.mkdir(exist_ok=True)
    proc = Proc(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(data),
        ],
        dict(os.environ),
        tmp / f"redis-{port}.log",
        tmp,
    )
    wait_port(port)
    return proc


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, on_tick: Callable[[], None] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        if on_tick:
            on_tick()
        time.sleep(0.5)


def pick(items: list[Proc]) -> Proc:
    return random.choice(items)


def war_and_peace_docs(corpus: Path, n: int, size: int = 900) -> list[tuple[str, bytes]]:
    """n distinct real-text documents of about ``size`` characters (War and Peace slices)."""
    text = (corpus / "text/txt/book-war-and-peace-1225p.txt").read_text(encoding="utf-8-sig")
    start = len(text) // 10
    return [
        (f"wp-{i:03d}.txt", text[start + i * size : start + (i + 1) * size].encode())
        for i in range(n)
    ]
