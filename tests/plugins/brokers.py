"""Both brokers for the tests that must hold on either: a private Redis or a RabbitMQ vhost.

``any_broker`` (function, parametrized ``redis`` / ``amqp``): a :class:`Broker` of its own — a
private ``redis-server`` on a free port (append-only, like docker-compose's), or a fresh vhost on
the machine's RabbitMQ (127.0.0.1:5672, guest/guest), deleted afterwards. ``Broker.restart()``
stops and starts it as an operator would: the Redis process, or RabbitMQ's application on its
node (``rabbitmqctl stop_app`` / ``start_app``: every connection drops, durable queues and
persistent messages stay). ``Broker.stop()`` / ``start()`` make an outage of any length.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.ops.harness import Proc, free_port, start_redis, wait_port

RABBITMQ_PORT = 5672


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def rabbitmq_available() -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    try:
        wait_port(RABBITMQ_PORT, timeout=2)
    except TimeoutError:
        return False
    return True


@dataclass
class Broker:
    """One broker of a test: its URL and how to interrupt it."""

    kind: str
    url: str
    tmp: Path
    redis: Proc | None = None
    port: int = 0
    stopped: bool = field(default=False)

    def stop(self) -> None:
        if self.kind == "redis":
            assert self.redis is not None
            self.redis.stop()
        else:
            _rabbitmqctl("stop_app")
        self.stopped = True

    def start(self) -> None:
        if self.kind == "redis":
            assert self.redis is not None
            self.redis.start()
            wait_port(self.port)
        else:
            _rabbitmqctl("start_app")
            _rabbitmqctl("await_startup")
        self.stopped = False

    def restart(self, down_s: float = 3.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


@pytest.fixture(params=["redis", "amqp"])
def any_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    if request.param == "redis":
        port = free_port()
        proc = start_redis(port, tmp_path)
        broker = Broker("redis", f"redis://127.0.0.1:{port}/0", tmp_path, redis=proc, port=port)
        try:
            yield broker
        finally:
            proc.stop()
        return
    if not rabbitmq_available():
        pytest.fail("RabbitMQ is not running on 127.0.0.1:5672 (rabbitmq-server -detached)")
    vhost = f"docvec-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    broker = Broker("amqp", f"amqp://guest:guest@127.0.0.1:{RABBITMQ_PORT}/{vhost}", tmp_path)
    try:
        yield broker
    finally:
        if broker.stopped:
            broker.start()
        _rabbitmqctl("delete_vhost", vhost)
