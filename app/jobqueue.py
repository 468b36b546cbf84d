"""The job queue seen from the API, the CLI and the sweep: Celery on Redis, enqueued by task name.

Task names and the queue live here, in the layer that sends them (Onyx keeps them in
``configs/constants.py``): the producer is a Celery app that knows the broker and the routes but
no task code, so nothing in ``app/`` imports ``workers/``, and the workers import these names.

Enqueueing is de-duplicated with a Redis guard per document (``SET key generation``), the Onyx
pattern: while a message for a document waits in the queue, a second re-vectorize request (a double
click) is coalesced instead of queueing a second job. The task clears the guard when it claims the
document. The sweep uses the guard to tell "waiting in the queue" from "lost".
"""

from __future__ import annotations

import uuid
from typing import Any

import redis
from celery import Celery

from app.config import Settings

#: Name of the task that vectorizes one document: args ``(document_id: str, generation: int)``.
PROCESS_DOCUMENT = "docvec.process_document"
#: Periodic sweep for stuck documents (scheduled by ``docvec beat``).
SWEEP = "docvec.sweep"

#: Guard lifetime, seconds. Longer than any realistic queue wait; an expired guard only means the
#: sweep may enqueue a duplicate, which the pipeline then skips (already vectorized / superseded).
GUARD_TTL_S = 24 * 3600

# Delete the guard only if it still names this generation: a newer request's guard must survive
# an older job's claim.
_CLEAR_IF_EQUAL = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


def create_producer(settings: Settings) -> Celery:
    """A producer-only Celery app: broker, JSON, routes to ``settings.queue``; no tasks.

    Built from the given settings (not the environment) so the API and tests honour their own
    settings object. ``task_send_sent_event`` lets Flower show a job from the moment it is sent.
    """
    app = Celery("docvec-producer", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=settings.queue,
        task_routes={
            PROCESS_DOCUMENT: {"queue": settings.queue},
            SWEEP: {"queue": settings.queue},
        },
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
    )
    return app


def guard_key(document_id: uuid.UUID | str) -> str:
    """Redis key of a document's "queued" guard."""
    return f"docvec:queued:{document_id}"


class JobQueue:
    """Sends ``process_document(document_id, generation)`` to the workers.

    Args:
        settings: broker URL and queue name come from here.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._task_name = PROCESS_DOCUMENT
        self._celery = create_producer(settings)
        self._redis = redis.Redis.from_url(settings.broker_url, socket_timeout=5)

    def enqueue(self, document_id: uuid.UUID, generation: int) -> None:
        """Queue one job and set the document's guard to ``generation``."""
        self._redis.set(guard_key(document_id), generation, ex=GUARD_TTL_S)
        self._celery.send_task(
            self._task_name, args=[str(document_id), generation], queue=self.settings.queue
        )

    def is_queued(self, document_id: uuid.UUID) -> bool:
        """Whether a job for the document is waiting in the queue (its guard is set)."""
        return bool(self._redis.exists(guard_key(document_id)))

    def depth(self) -> int:
        """Messages waiting in the queue (Redis list length)."""
        return int(self._redis.llen(self.settings.queue))

    def ping(self) -> dict[str, Any]:
        """Raise if the broker cannot be reached; else describe it (without credentials)."""
        self._redis.ping()
        return {"broker": self.settings.broker_url.split("@")[-1], "queue_depth": self.depth()}

    def close(self) -> None:
        """Release the broker connections (the Redis client and the producer's pool)."""
        self._redis.close()
        self._celery.close()


def clear_guard(client: redis.Redis, document_id: str, generation: int) -> None:
    """Called by the task when it claims a document: the job is no longer waiting."""
    client.eval(_CLEAR_IF_EQUAL, 1, guard_key(document_id), str(generation))
