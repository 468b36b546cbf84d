"""The job queue seen from the API, the CLI and the sweep: Celery on Redis or RabbitMQ.

Task names and the queue live here, in the layer that sends them (Onyx keeps them in
``configs/constants.py``): the producer is a Celery app that knows the broker and the routes but
no task code, so nothing in ``app/`` imports ``workers/``, and the workers import these names.

Nothing here assumes which broker ``DOCVEC_BROKER_URL`` names: publishing, the queue depth and the
readiness probe all go through kombu, which speaks both. Whether a document has a job on its way is
SQL's to say (``documents.queued_at`` and the outbox, :mod:`app.outbox`), not the broker's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu import Connection

from app import outbox
from app.config import Settings
from app.embeddings import provider_class

#: Name of the task that vectorizes one document: args ``(document_id: str, generation: int)``.
#: Still served, for messages an older docvec published; the relay now sends PROCESS_DOCUMENTS.
PROCESS_DOCUMENT = "docvec.process_document"
#: Name of the task that vectorizes several documents with shared provider requests: args
#: ``(jobs: list[[document_id: str, generation: int]])`` (app/outbox.py groups them).
PROCESS_DOCUMENTS = "docvec.process_documents"
#: Periodic sweep for stuck documents (scheduled by ``docvec beat``).
SWEEP = "docvec.sweep"
#: ``build_index_version(version_id)``: one step of an index build (app/pipeline/build.py).
BUILD_INDEX_VERSION = "docvec.build_index_version"

#: Seconds a partly filled message waits for more jobs with a remote embedding provider, unless
#: ``DOCVEC_JOB_BATCH__WAIT_S`` says otherwise: a lone upload's added latency, and long enough for
#: the uploads of a client sending a folder file by file to meet in one message.
DEFAULT_REMOTE_WAIT_S = 0.5

#: Seconds a publish may wait for the broker before it counts as failed (the job stays in the
#: outbox): short, because the API publishes inline after a request and a broker outage must not
#: hold the answer.
PUBLISH_TIMEOUT_S = 3.0


def encode_jobs(jobs: Sequence[tuple[uuid.UUID, int]]) -> list[list[str | int]]:
    """The JSON form of :data:`PROCESS_DOCUMENTS`' argument: ``[[document_id, generation], ...]``
    (ids, never payloads, through the broker)."""
    return [[str(document_id), generation] for document_id, generation in jobs]


def decode_jobs(jobs: Sequence[Sequence[str | int]]) -> list[tuple[uuid.UUID, int]]:
    """:func:`encode_jobs` undone.

    Raises:
        ValueError: an item is not ``[uuid, int]``.
    """
    return [(uuid.UUID(str(d)), int(g)) for d, g in jobs]


def is_amqp(url: str) -> bool:
    """Whether ``url`` names an AMQP broker (RabbitMQ)."""
    return url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp")


def transport_options(settings: Settings) -> dict[str, Any]:
    """kombu transport options for the configured broker, shared by producer and workers.

    Redis: the visibility timeout (``workers.celery_app.visibility_timeout_s``). RabbitMQ:
    publisher confirms, so a publish returns only once the broker has the message.
    """
    if is_amqp(settings.broker_url):
        return {"confirm_publish": True}
    return {"visibility_timeout": settings.redis_visibility_timeout_s}


def shared_conf(settings: Settings) -> dict[str, Any]:
    """Celery settings the producer and the workers must agree on: the queue and routes, JSON,
    persistent messages, the broker's transport options, Flower's "sent" events."""
    return {
        "task_default_queue": settings.queue,
        "task_routes": {
            PROCESS_DOCUMENT: {"queue": settings.queue},
            PROCESS_DOCUMENTS: {"queue": settings.queue},
            SWEEP: {"queue": settings.queue},
            BUILD_INDEX_VERSION: {"queue": settings.queue},
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        # Status lives in SQL; a result backend would only duplicate it.
        "task_ignore_result": True,
        "task_send_sent_event": True,
        # Messages survive a RabbitMQ restart (Celery's default, stated because it matters).
        "task_default_delivery_mode": "persistent",
        "broker_transport_options": transport_options(settings),
        "broker_connection_retry_on_startup": True,
    }


def create_producer(settings: Settings) -> Celery:
    """A producer-only Celery app: broker, JSON, routes to ``settings.queue``; no tasks.

    Built from the given settings (not the environment) so the API and tests honour their own
    settings object. ``task_send_sent_event`` lets Flower show a job from the moment it is sent.
    """
    app = Celery("docvec-producer", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        shared_conf(settings),
        broker_connection_timeout=PUBLISH_TIMEOUT_S,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },
    )
    return app


class JobQueue:
    """Sends ``process_document(document_id, generation)`` to the workers, on either broker.

    Args:
        settings: broker URL and queue name come from here.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._celery = create_producer(settings)

    def enqueue(self, document_id: uuid.UUID, generation: int) -> None:
        """Publish one job (the outbox relay's ``publish``).

        Raises:
            kombu.exceptions.OperationalError (or another broker error): the broker did not take
                the message within about :data:`PUBLISH_TIMEOUT_S` plus two short retries.
        """
        self._celery.send_task(
            PROCESS_DOCUMENT, args=[str(document_id), generation], queue=self.settings.queue
        )

    def enqueue_batch(
        self, jobs: Sequence[tuple[uuid.UUID, int]], countdown_s: float | None = None
    ) -> None:
        """Publish one message of several jobs: one worker task runs them with shared provider
        requests (:data:`PROCESS_DOCUMENTS`); with ``countdown_s`` the message is held back that
        many seconds (a retry).

        Raises:
            kombu.exceptions.OperationalError (or another broker error): as :meth:`enqueue`.
        """
        self._celery.send_task(
            PROCESS_DOCUMENTS,
            args=[encode_jobs(jobs)],
            queue=self.settings.queue,
            countdown=countdown_s,
        )

    def publisher(self) -> outbox.Publisher:
        """The outbox relay's publisher: messages of several documents, as ``job_batch`` in the
        settings says (``max_documents`` None = the embedding ``batch_size``; ``wait_s`` None =
        :data:`DEFAULT_REMOTE_WAIT_S` for a remote embedding provider, 0 for the local model)."""
        batching = self.settings.job_batch
        wait_s = batching.wait_s
        if wait_s is None:
            remote = provider_class(self.settings.embedding.provider).remote
            wait_s = DEFAULT_REMOTE_WAIT_S if remote else 0.0
        return outbox.Publisher(
            self.enqueue_batch,
            max_documents=batching.max_documents or self.settings.embedding.batch_size,
            max_bytes=batching.max_bytes,
            wait_s=wait_s,
        )

    def enqueue_build(self, version_id: uuid.UUID) -> None:
        """Publish one step of an index version's build. Not through the outbox: the version's
        state in SQL is the record, and the sweep sends a step for a build nobody holds.

        Raises:
            kombu.exceptions.OperationalError (or another broker error): as :meth:`enqueue`.
        """
        self._celery.send_task(
            BUILD_INDEX_VERSION, args=[str(version_id)], queue=self.settings.queue
        )

    def _connection(self) -> Connection:
        return Connection(
            self.settings.broker_url,
            connect_timeout=PUBLISH_TIMEOUT_S,
            transport_options=transport_options(self.settings),
        )

    def depth(self) -> int:
        """Messages waiting in the queue (not those a worker holds), via a passive declare.

        Raises:
            kombu or socket errors: the broker is unreachable.
        """
        with self._connection() as conn:
            conn.ensure_connection(max_retries=1)
            channel: Any = conn.default_channel  # kombu-stubs type it as StdChannel
            try:
                return int(
                    channel.queue_declare(queue=self.settings.queue, passive=True).message_count
                )
            except Exception as exc:  # the queue does not exist yet: nothing was ever sent
                if "NOT_FOUND" in str(exc) or "404" in str(exc):
                    return 0
                raise

    def ping(self) -> dict[str, Any]:
        """Raise if the broker cannot be reached; else describe it (without credentials)."""
        depth = self.depth()
        return {"broker": self.settings.broker_url.split("@")[-1], "queue_depth": depth}

    def close(self) -> None:
        """Release the producer's broker connections."""
        self._celery.close()
