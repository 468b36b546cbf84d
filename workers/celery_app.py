"""The Celery application: broker, queues and the reliability settings of DESIGN §2 (invariant 4).

Task names come from :mod:`app.jobqueue`, the layer that sends them; this module only consumes.
"""

from __future__ import annotations

from celery import Celery

from app.config import Settings, get_settings
from app.jobqueue import (
    BUILD_INDEX_VERSION,
    PROCESS_DOCUMENT,
    PROCESS_DOCUMENTS,
    SWEEP,
    shared_conf,
)

__all__ = [
    "BUILD_INDEX_VERSION",
    "PROCESS_DOCUMENT",
    "PROCESS_DOCUMENTS",
    "SWEEP",
    "celery_app",
    "create_celery",
    "visibility_timeout_s",
]


def visibility_timeout_s(settings: Settings) -> int:
    """Seconds Redis waits before redelivering an unacknowledged message
    (:attr:`app.config.Settings.redis_visibility_timeout_s`)."""
    return settings.redis_visibility_timeout_s


def create_celery(settings: Settings) -> Celery:
    """A Celery app configured from ``settings``."""
    app = Celery("docvec", broker=settings.broker_url, include=["workers.tasks"])
    app.conf.update(
        shared_conf(settings),
        # Nothing lost on a crash: ack after the work, requeue if the worker process dies,
        # and let each worker process hold only the message it is working on.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        # Ride out a broker restart: reconnect for as long as it takes instead of exiting.
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        # A task running when the connection drops finishes; its message is redelivered (Redis:
        # after the visibility timeout; RabbitMQ: at once) and the generation check skips it.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_send_task_events=True,  # Flower shows tasks live
        worker_hijack_root_logger=False,
        # Children load the embedding model at start (see workers.tasks); Celery's default
        # of 4 s to report "up" is far too short for that on a busy CPU.
        worker_proc_alive_timeout=300,
        beat_schedule={
            "docvec-sweep": {"task": SWEEP, "schedule": float(settings.sweep_interval_s)},
        },
    )
    return app


celery_app = create_celery(get_settings())
