"""Prometheus metrics.

Workers record counters and histograms in each Celery child process; ``docvec worker`` serves
them from its main process in prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``
set to a folder of its own before any child starts). The API's ``/metrics`` adds gauges read at
scrape time: documents by status (SQL) and queue depth (the broker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from typing_extensions import override

CHUNKS_EMBEDDED = Counter("docvec_chunks_embedded_total", "Chunks embedded", ["provider"])
EMBED_BATCH_SECONDS = Histogram(
    "docvec_embedding_batch_seconds",
    "Seconds per embedding request/batch, retries excluded",
    ["provider"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
EMBED_BATCH_SIZE = Histogram(
    "docvec_embedding_batch_size",
    "Inputs per embedding request",
    ["provider"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
)
DOCUMENTS_PROCESSED = Counter(
    "docvec_documents_processed_total", "Document runs by outcome", ["outcome"]
)
TASK_RETRIES = Counter(
    "docvec_task_retries_total", "Runs that will be retried, by error class", ["error_class"]
)
TASK_FAILURES = Counter(
    "docvec_task_failures_total", "Documents failed, by error class", ["error_class"]
)
STAGE_SECONDS = Histogram(
    "docvec_stage_seconds",
    "Seconds per pipeline stage",
    ["stage"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
)
EMBED_PROVIDER_RETRIES = Counter(
    "docvec_embedding_retries_total", "In-call retries of embedding requests", ["provider"]
)


class LiveGauges(Collector):
    """Gauges computed at scrape time: documents by status, queue depth, index builds.

    Args:
        documents_by_status: returns ``{status: count}`` (a SQL ``GROUP BY``).
        queue_depth: returns the number of messages waiting in the broker queue, or None.
    """

    def __init__(
        self,
        documents_by_status: Callable[[], dict[str, int]],
        queue_depth: Callable[[], int | None],
        index_builds: Callable[[], list[tuple[str, int, str, dict[str, float]]]] | None = None,
    ) -> None:
        self._docs = documents_by_status
        self._queue = queue_depth
        #: ``[(project, version, state, {"documents_done": .., "documents_total": .., ...})]``
        #: of the index versions being built or waiting for activation.
        self._builds = index_builds

    @override
    def collect(self) -> Iterable[GaugeMetricFamily]:
        docs = GaugeMetricFamily("docvec_documents", "Documents by status", labels=["status"])
        try:
            for status, n in sorted(self._docs().items()):
                docs.add_metric([status], n)
        except Exception:  # a scrape must not fail because the database blinked
            pass
        yield docs
        if self._builds is not None:
            builds = GaugeMetricFamily(
                "docvec_index_build",
                "Index versions being built: documents done and total, failures, chunks, ETA s",
                labels=["project", "version", "state", "measure"],
            )
            try:
                for project, version, state, figures in self._builds():
                    for measure, value in sorted(figures.items()):
                        builds.add_metric([project, str(version), state, measure], value)
            except Exception:  # as above
                pass
            yield builds
        depth = self._safe_depth()
        if depth is not None:
            q = GaugeMetricFamily("docvec_queue_depth", "Messages waiting in the docvec queue")
            q.add_metric([], depth)
            yield q

    def _safe_depth(self) -> int | None:
        try:
            return self._queue()
        except Exception:
            return None
