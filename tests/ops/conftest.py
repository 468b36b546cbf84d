"""Fixtures of the fault tests: a deployment's environment with short limits, on either broker."""

from __future__ import annotations

import os

import pytest

from tests.plugins.brokers import Broker


@pytest.fixture
def cluster(
    make_service_env, monkeypatch: pytest.MonkeyPatch, any_broker: Broker
) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A deployment's environment on the test's broker (each fault test runs on Redis and on
    RabbitMQ: the ``any_broker`` fixture)."""
    env = make_service_env(
        DOCVEC_BROKER_URL=any_broker.url,
        # Short limits keep the redelivery of a killed worker's message (the visibility timeout,
        # derived from them: 25 + 3.6 + 60 s) inside the test's time budget. Children load the
        # model before their first task, so a task itself takes a second or two.
        DOCVEC_RETRY_BACKOFF_S="[1, 2, 3]",
        DOCVEC_TASK_SOFT_TIME_LIMIT_S="20",
        DOCVEC_TASK_TIME_LIMIT_S="25",
        DOCVEC_EXTRACT_TIMEOUT_S="10",
        DOCVEC_EMBEDDING__RETRY_BUDGET_S="5",
        DOCVEC_EMBEDDING__REQUEST_TIMEOUT_S="5",
        DOCVEC_LOG_LEVEL="WARNING",
        # Messages of 4 documents: several documents per task (a kill lands mid-message), and
        # enough messages for every worker to get some (each test watches each worker).
        DOCVEC_JOB_BATCH__MAX_DOCUMENTS="4",
    )
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {**os.environ, **env}
