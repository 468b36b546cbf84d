"""Worker mode against pgai's vectorizer worker: N one-chunk documents, one loopback OpenAI server.

    .venv/bin/python bench/workers.py [--quick] [--rounds R] [--latency-ms MS] [--docs N]

Both contenders vectorize the same N distinct documents (slices of War and Peace from the corpus,
``tests.ops.harness.war_and_peace_docs``, 900 characters each: one chunk in either system; 1,000
documents, ``--quick`` 100) through the same kind of loopback OpenAI-compatible server
(``tests.embeddings.fakes.FakeOpenAI``, a fresh one per contender and round), which counts the
embedding requests and their inputs. Every request waits a fixed ``--latency-ms`` (default 50 ms,
about what a real provider's round trip costs) before it answers, so the number of requests costs
wall time as it does against a real API; 0 leaves only the two workers' own overheads.

- ``docvec``: a real ``docvec worker`` (Celery, 2 worker processes, ``DOCVEC_WORKER_CONCURRENCY=2``)
  on the machine's Redis (127.0.0.1:6379, a DB number that is empty when the bench starts), SQL and
  vectors in a fresh database of a pgserver PostgreSQL with pgvector (``DOCVEC_VECTOR_STORE=
  pgvector``: its HNSW index on the points), the ``openai`` provider (the real SDK) on the loopback
  server, batch size 32 (the default; messages of up to 32 documents, ``DOCVEC_JOB_BATCH__WAIT_S``
  at its remote default 0.5 s). The documents are uploaded through the API in this process
  (``fastapi.testclient.TestClient`` on ``create_app``, whose outbox relay publishes the jobs), 50
  files per request as a client sending a folder would. Done = every document ``vectorized`` in
  SQL.
- ``pgai``: pgai's vectorizer worker (PyPI ``pgai[vectorizer-worker]==0.12.1``, installed by this
  script on first use into ``bench/.venv-pgai``, never into docvec's virtualenv), its catalog put
  by ``pgai install`` into a fresh database on the same pgserver PostgreSQL. A table of the
  documents and one vectorizer: ``loading_column``, ``parsing_none``, ``chunking_none`` (one
  document, one chunk), ``embedding_openai`` with the loopback ``base_url`` and the same model and
  dimensions, ``processing_default(batch_size => 32, concurrency => 2)`` (docvec's batch size and
  worker processes), ``scheduling_none`` and ``indexing_none``; an HNSW index is then created on
  its embeddings table by hand, so that both maintain one while writing. ``pgai vectorizer worker
  --poll-interval 1`` runs as a subprocess (1 s: its interval is whole seconds, and 0 would poll
  the queue without pause). The documents are inserted in transactions of 50 rows (the trigger
  enqueues them). Done = N rows in the embeddings table and its queue empty.

Both workers are started, and each vectorizes one warm-up document (not counted: a running
worker is timed, not its first imports — pgai imports the OpenAI SDK and loads tiktoken's encoding
on its first batch) before the provider's request log is cleared and the clock starts. Wall seconds
run from the first upload or insert to the moment the last document is seen done (polled every
50 ms); "submit" is the time until the last upload or insert returned, "first request" the time to
the first provider request (docvec: the relay's wait for a full message; pgai: its next poll).
Worker CPU seconds are those spent over the timed span by every process in the worker's session
(user + system, with reaped children, from ``/proc``); for docvec the uploads and the outbox relay
run in this process and are not counted. Rounds alternate which contender goes first; the ratios
(docvec ÷ pgai) are medians of the per-round ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

import psycopg  # noqa: E402
import redis  # noqa: E402

from tests.embeddings.fakes import FakeOpenAI, FakeServer  # noqa: E402
from tests.ops.harness import DOCVEC, Proc, war_and_peace_docs  # noqa: E402

PGAI_VERSION = "0.12.1"
PGAI_VENV = common.REPO / "bench" / ".venv-pgai"
PGAI = PGAI_VENV / "bin" / "pgai"
#: Written once pip has installed everything (a half-made virtualenv is made again).
PGAI_STAMP = PGAI_VENV / f".installed-pgai-{PGAI_VERSION}"
#: As the Makefile's ``setup`` pins it.
TORCH = "torch==2.13.0"

MODEL = "text-embedding-3-small"
DIMENSIONS = 256
#: docvec's default embedding batch size (EmbeddingSettings.batch_size), given to both.
BATCH = 32
#: docvec's default worker processes (DOCVEC_WORKER_CONCURRENCY); pgai gets as many executors.
CONCURRENCY = 2
#: Characters per document: under the 1,000-character chunk, so one chunk each in docvec.
DOC_CHARS = 900
#: Warm-up documents, in one upload or insert: a full message and one more, which the relay sends
#: 0.5 s later to the other, idle, worker process (Celery's fair scheduling), so that both of
#: docvec's processes have run a task; pgai's worker gets the same rows.
WARMUP = BATCH + 1
#: Files per upload request / rows per insert transaction.
PER_REQUEST = 50
#: Seconds between two looks at "is everything done?".
POLL_S = 0.05
TIMEOUT_S = 900.0
API_KEY = "sk-bench-workers"

CONTENDERS = ("docvec", "pgai")

#: A document: file name and bytes.
Doc = tuple[str, bytes]


@dataclass
class Result:
    """One contender's run in one round."""

    contender: str
    round: int
    documents: int
    chunks: int
    requests: int
    inputs: int
    max_inputs: int
    #: Seconds until the last upload or insert returned.
    submit_s: float
    wall_s: float
    #: Seconds from the first upload or insert to the first provider request.
    first_request_s: float
    worker_cpu_s: float
    errors: int = 0
    inputs_per_request: list[int] = field(default_factory=list)
    #: Seconds from the first upload or insert to each provider request's arrival.
    request_at_s: list[float] = field(default_factory=list)
    #: docvec only: milliseconds per pipeline stage summed over the timed documents' attempts.
    stage_ms: dict[str, float] = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.wall_s if self.wall_s else 0.0


@dataclass
class Services:
    """What every round uses: the pgserver PostgreSQL, a Redis DB number, a scratch folder."""

    server: Any  # pgserver.PostgresServer
    redis_url: str
    tmp: Path

    def new_database(self, prefix: str) -> str:
        """A fresh database with ``vector``; its libpq URI (Unix socket of the pgserver)."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.server.psql(f'CREATE DATABASE "{name}";')
        uri: str = self.server.get_uri(database=name)
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return uri

    def drop_database(self, uri: str) -> None:
        name = uri.split("?", 1)[0].rsplit("/", 1)[1]
        self.server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')


def free_redis_db() -> str:
    """The URL of the first empty Redis DB among 1..7 (the tests take 8..15)."""
    for db in range(1, 8):
        client = redis.Redis(host="127.0.0.1", port=6379, db=db)
        try:
            if client.dbsize() == 0:
                return f"redis://127.0.0.1:6379/{db}"
        finally:
            client.close()
    sys.exit("no empty Redis DB among 1..7 on 127.0.0.1:6379")


@contextlib.contextmanager
def services() -> Iterator[Services]:
    """A pgserver PostgreSQL (with pgvector) and a free Redis DB, for the whole run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning under root
        import pgserver

        # Not under a pytest temp dir: pgserver runs PostgreSQL as another user when root and
        # opens the folders above its data dir to it (tests/plugins/pgvector_server.py).
        root = Path(tempfile.mkdtemp(prefix="docvec-bench-workers-"))
        get_server = pgserver.get_server  # type: ignore[attr-defined]
        server = get_server(root / "pgdata", cleanup_mode="stop")
    url = free_redis_db()
    try:
        yield Services(server, url, root)
    finally:
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


# ---- helpers ---------------------------------------------------------------------------------
def ensure_pgai() -> None:
    """pgai's worker in a virtualenv of its own (``bench/.venv-pgai``), made on first use."""
    if PGAI_STAMP.exists():
        return
    common.console.print(f"installing pgai[vectorizer-worker]=={PGAI_VERSION} into {PGAI_VENV}")
    # The interpreter docvec's virtualenv was made from, not the virtualenv itself.
    base = Path(getattr(sys, "_base_executable", sys.executable))
    subprocess.run([str(base), "-m", "venv", "--clear", str(PGAI_VENV)], check=True)
    pip = [str(PGAI_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    # The worker extra pulls docling and with it torch, which the worker never loads for text
    # columns; the CPU build docvec's Makefile installs (a wheel on this machine's disk) spares
    # the ~4 GB of CUDA libraries the default build brings.
    subprocess.run([*pip, TORCH, f"pgai[vectorizer-worker]=={PGAI_VERSION}"], check=True)
    PGAI_STAMP.touch()


def wait_for(check: Callable[[], bool], what: str, proc: Proc, timeout: float = TIMEOUT_S) -> None:
    """Poll ``check`` every :data:`POLL_S` until true; fail with the worker's log tail."""
    deadline = time.monotonic() + timeout
    while not check():
        if not proc.alive():
            raise RuntimeError(f"the worker exited while waiting for {what}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}:\n{proc.tail()}")
        time.sleep(POLL_S)


def session_cpu_s(proc: Proc) -> float:
    """CPU seconds (user + system, and of reaped children) of the worker's session so far."""
    assert proc.proc is not None
    sid = proc.proc.pid
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # proc(5): after "(comm)" come state ppid pgrp session ..., utime stime cutime cstime
        # the 12th to 15th of them.
        if int(fields[3]) == sid:
            total += sum(int(f) for f in fields[11:15])
    return total / ticks


def fake_server(latency_s: float) -> FakeOpenAI:
    return FakeOpenAI(dim=DIMENSIONS, random_delay_s=(latency_s, latency_s))


def request_counts(fake: FakeServer) -> list[int]:
    return [len(r.body["input"]) for r in fake.embed_requests]


# ---- docvec ----------------------------------------------------------------------------------
def run_docvec(
    svc: Services, warmup: list[Doc], docs: list[Doc], latency_s: float, round_no: int
) -> Result:
    """Upload ``docs`` through the API to a running ``docvec worker``; time until all are
    ``vectorized`` in SQL."""
    from fastapi.testclient import TestClient

    from app.api.main import create_app
    from app.config import Settings
    from app.db import migrate
    from app.runtime import Runtime

    n = len(docs)
    uri = svc.new_database("docvec_bench")
    url = uri.replace("postgresql://", "postgresql+psycopg://", 1)
    tmp = svc.tmp / f"docvec-{round_no}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    suffix = uuid.uuid4().hex[:8]
    with fake_server(latency_s) as fake:
        env = {
            "DOCVEC_DATA_DIR": str(tmp / "data"),
            "DOCVEC_STORAGE_DIR": str(tmp / "files"),
            "DOCVEC_DATABASE_URL": url,
            "DOCVEC_VECTOR_STORE": "pgvector",
            "DOCVEC_PGVECTOR_URL": url,
            "DOCVEC_COLLECTION": f"chunks_{suffix}",
            "DOCVEC_BROKER_URL": svc.redis_url,
            "DOCVEC_QUEUE": f"docvec_bench_{suffix}",
            "DOCVEC_WORKER_CONCURRENCY": str(CONCURRENCY),
            "DOCVEC_WORKER_METRICS_PORT": "0",
            "DOCVEC_EMBEDDING__PROVIDER": "openai",
            "DOCVEC_EMBEDDING__MODEL": MODEL,
            "DOCVEC_EMBEDDING__DIMENSIONS": str(DIMENSIONS),
            "DOCVEC_EMBEDDING__BASE_URL": fake.url + "/v1",
            "DOCVEC_EMBEDDING__BATCH_SIZE": str(BATCH),
            "OPENAI_API_KEY": API_KEY,
            "DOCVEC_LOG_LEVEL": "INFO",  # Celery's "ready." line is INFO
        }
        migrate.upgrade(url)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        worker = Proc(
            [DOCVEC, "worker", f"--hostname=bench{round_no}@%h"],
            dict(os.environ),
            tmp / "worker.log",
            tmp,
        )
        rt: Runtime | None = None
        try:
            wait_for(lambda: "ready." in worker.tail(20000), "the docvec worker", worker, 180)
            settings = Settings(_env_file=None)
            rt = Runtime(settings)
            with (
                TestClient(create_app(settings, runtime=rt)) as client,
                psycopg.connect(uri, autocommit=True) as conn,
            ):
                pid = client.post("/projects", json={"name": "bench"}).json()["id"]

                def upload(batch: list[Doc]) -> list[str]:
                    files = [("files", (name, body, "text/plain")) for name, body in batch]
                    r = client.post(f"/projects/{pid}/documents", files=files)
                    if r.status_code != 202:
                        raise RuntimeError(f"upload refused: {r.status_code} {r.text}")
                    return [d["id"] for d in r.json()["documents"]]

                def vectorized(count: int) -> Callable[[], bool]:
                    def check() -> bool:
                        row = conn.execute(
                            "SELECT count(*) FILTER (WHERE status = 'vectorized'),"
                            " count(*) FILTER (WHERE status = 'failed') FROM documents"
                        ).fetchone()
                        assert row is not None
                        if row[1]:
                            raise RuntimeError(f"{row[1]} documents failed:\n{worker.tail()}")
                        return int(row[0]) == count

                    return check

                warm_ids = upload(warmup)
                wait_for(vectorized(len(warmup)), "the warm-up documents", worker)
                warmed = set(
                    re.findall(r"ForkPoolWorker-(\d+)\] Task \S+ succeeded", worker.tail())
                )
                if len(warmed) < CONCURRENCY:
                    raise RuntimeError(f"warm-up reached worker processes {warmed} only")
                fake.requests.clear()
                cpu0, t0 = session_cpu_s(worker), time.monotonic()
                for start in range(0, n, PER_REQUEST):
                    upload(docs[start : start + PER_REQUEST])
                submit = time.monotonic() - t0
                wait_for(vectorized(n + len(warmup)), f"{n} documents vectorized", worker)
                wall = time.monotonic() - t0
                cpu = session_cpu_s(worker) - cpu0
                row = conn.execute(
                    "SELECT count(*) FROM document_chunks WHERE NOT document_id = ANY(%s)",
                    (warm_ids,),
                ).fetchone()
                chunks = int(row[0]) if row else 0
                stage_ms: dict[str, float] = {}
                for (timings,) in conn.execute(
                    "SELECT timings_ms FROM vectorization_attempts WHERE NOT document_id = ANY(%s)",
                    (warm_ids,),
                ):
                    for stage, ms in (timings or {}).items():
                        stage_ms[stage] = stage_ms.get(stage, 0.0) + float(ms)
        finally:
            worker.stop(timeout=30)
            if rt is not None:
                rt.close()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            redis.Redis.from_url(svc.redis_url).flushdb()
            svc.drop_database(uri)
        counts = request_counts(fake)
        at = [r.at - t0 for r in fake.embed_requests]
    return Result(
        "docvec", round_no, n, chunks, len(counts), sum(counts), max(counts), submit, wall, at[0],
        cpu, inputs_per_request=counts, request_at_s=at, stage_ms=stage_ms,
    )  # fmt: skip


# ---- pgai ------------------------------------------------------------------------------------
def create_vectorizer_sql(base_url: str) -> str:
    """The vectorizer: one chunk per row, docvec's batch size and worker count, no scheduler."""
    return f"""
        SELECT ai.create_vectorizer(
            'wp_docs'::regclass,
            name => 'bench',
            loading => ai.loading_column('body'),
            parsing => ai.parsing_none(),
            embedding => ai.embedding_openai(
                '{MODEL}', {DIMENSIONS}, api_key_name => 'OPENAI_API_KEY',
                base_url => '{base_url}'),
            chunking => ai.chunking_none(),
            destination => ai.destination_table(target_table => 'wp_docs_embeddings'),
            indexing => ai.indexing_none(),
            scheduling => ai.scheduling_none(),
            processing => ai.processing_default(batch_size => {BATCH}, concurrency => {CONCURRENCY})
        )
    """


def run_pgai(
    svc: Services, warmup: list[Doc], docs: list[Doc], latency_s: float, round_no: int
) -> Result:
    """Insert ``docs`` into a table with a pgai vectorizer while ``pgai vectorizer worker`` runs;
    time until the embeddings table holds every one and the queue is empty."""
    n = len(docs)
    uri = svc.new_database("pgai_bench")
    tmp = svc.tmp / f"pgai-{round_no}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    # The worker's own environment: nothing of docvec's (PYTHONPATH points at this checkout).
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DOCVEC_", "PYTHON", "VIRTUAL"))
    }
    env["OPENAI_API_KEY"] = API_KEY
    with fake_server(latency_s) as fake:
        subprocess.run(
            [str(PGAI), "install", "-d", uri], check=True, capture_output=True, env=env, cwd=tmp
        )
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE TABLE wp_docs (id int PRIMARY KEY, name text, body text NOT NULL)")
            row = conn.execute(create_vectorizer_sql(fake.url + "/v1")).fetchone()
            assert row is not None
            vectorizer_id = int(row[0])
            conn.execute(
                "CREATE INDEX ON wp_docs_embeddings USING hnsw (embedding vector_cosine_ops)"
            )
            worker = Proc(
                [str(PGAI), "vectorizer", "worker", "-d", uri, "--poll-interval", "1"],
                env,
                tmp / "worker.log",
                tmp,
            )
            try:
                wait_for(
                    lambda: "sleeping for" in worker.tail(20000), "the pgai worker", worker, 180
                )

                def insert(rows: list[tuple[int, str, str]]) -> None:
                    with conn.transaction(), conn.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO wp_docs (id, name, body) VALUES (%s, %s, %s)", rows
                        )

                def embedded(count: int) -> Callable[[], bool]:
                    def check() -> bool:
                        row = conn.execute(
                            "SELECT (SELECT count(*) FROM wp_docs_embeddings),"
                            " ai.vectorizer_queue_pending(%s, true)",
                            (vectorizer_id,),
                        ).fetchone()
                        assert row is not None
                        return int(row[0]) >= count and int(row[1]) == 0

                    return check

                # The warm-up rows have ids -1, -2, ..., the timed ones 0..n-1.
                insert([(-1 - i, nm, b.decode()) for i, (nm, b) in enumerate(warmup)])
                wait_for(embedded(len(warmup)), "the warm-up documents", worker)
                fake.requests.clear()
                cpu0, t0 = session_cpu_s(worker), time.monotonic()
                for start in range(0, n, PER_REQUEST):
                    batch = docs[start : start + PER_REQUEST]
                    insert([(i, nm, b.decode()) for i, (nm, b) in enumerate(batch, start)])
                submit = time.monotonic() - t0
                wait_for(embedded(n + len(warmup)), f"{n} documents embedded", worker)
                wall = time.monotonic() - t0
                cpu = session_cpu_s(worker) - cpu0
                row = conn.execute(
                    "SELECT count(*), count(DISTINCT id) FROM wp_docs_embeddings WHERE id >= 0"
                ).fetchone()
                assert row is not None
                chunks, documents = int(row[0]), int(row[1])
                err = conn.execute("SELECT count(*) FROM ai.vectorizer_errors").fetchone()
                errors = int(err[0]) if err else 0
            finally:
                worker.stop(timeout=30)
        svc.drop_database(uri)
        counts = request_counts(fake)
        at = [r.at - t0 for r in fake.embed_requests]
    return Result(
        "pgai", round_no, documents, chunks, len(counts), sum(counts), max(counts), submit, wall,
        at[0], cpu, errors=errors, inputs_per_request=counts, request_at_s=at,
    )  # fmt: skip


RUNNERS: dict[str, Callable[[Services, list[Doc], list[Doc], float, int], Result]] = {
    "docvec": run_docvec,
    "pgai": run_pgai,
}


# ---- report ----------------------------------------------------------------------------------
def ratios(results: list[Result]) -> dict[str, float]:
    """Medians over rounds of docvec ÷ pgai: requests and wall seconds."""
    by_round: dict[int, dict[str, Result]] = {}
    for r in results:
        by_round.setdefault(r.round, {})[r.contender] = r
    pairs = [(d["docvec"], d["pgai"]) for d in by_round.values() if len(d) == 2]
    return {
        "requests": common.median([a.requests / b.requests for a, b in pairs]),
        "wall": common.median([a.wall_s / b.wall_s for a, b in pairs]),
        "worker_cpu": common.median([a.worker_cpu_s / b.worker_cpu_s for a, b in pairs]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="100 documents, 1 round")
    parser.add_argument("--docs", type=int, help="documents (default 1000, --quick 100)")
    parser.add_argument("--rounds", type=int, help="rounds (default 2, --quick 1)")
    parser.add_argument(
        "--latency-ms", type=float, default=50.0, help="fixed wait of every provider request"
    )
    args = parser.parse_args()
    n = args.docs or (100 if args.quick else 1000)
    rounds = args.rounds or (1 if args.quick else 2)
    latency_s = args.latency_ms / 1000

    ensure_pgai()
    # More slices, distinct from the timed ones, for the warm-up.
    slices = war_and_peace_docs(common.CORPUS, n + WARMUP, size=DOC_CHARS)
    docs, warmup = slices[:n], slices[n:]
    before = common.machine()
    results: list[Result] = []
    with services() as svc:
        for rnd in range(rounds):
            order = CONTENDERS if rnd % 2 == 0 else CONTENDERS[::-1]
            for name in order:
                res = RUNNERS[name](svc, warmup, docs, latency_s, rnd)
                common.console.print(
                    f"round {rnd + 1}/{rounds} {name}: {res.wall_s:.2f} s, "
                    f"{res.requests} requests, load {os.getloadavg()[0]:.2f}"
                )
                results.append(res)
    after = common.machine()

    rows = []
    for name in CONTENDERS:
        mine = [r for r in results if r.contender == name]
        walls = [r.wall_s for r in mine]
        last = mine[-1]
        rows.append(
            [
                name,
                last.documents,
                last.chunks,
                ", ".join(str(r.requests) for r in mine),
                f"{sum(r.inputs for r in mine) / sum(r.requests for r in mine):.2f}"
                f" (max {max(r.max_inputs for r in mine)})",
                ", ".join(f"{w:.2f}" for w in walls),
                ", ".join(f"{r.submit_s:.2f}" for r in mine),
                ", ".join(f"{r.first_request_s:.2f}" for r in mine),
                last.documents / common.median(walls),
                ", ".join(f"{r.worker_cpu_s:.1f}" for r in mine),
            ]
        )
    common.console.print(
        common.table(
            f"{n} one-chunk documents in worker mode, batch {BATCH}, {CONCURRENCY} workers, "
            f"{args.latency_ms:g} ms per provider request",
            [
                "contender",
                "documents",
                "chunks",
                "requests (rounds)",
                "inputs/request",
                "wall s (rounds)",
                "submit s",
                "first request s",
                "docs/s (median)",
                "worker CPU s",
            ],
            rows,
        )
    )
    ratio = ratios(results)
    common.console.print(
        f"docvec ÷ pgai: requests {ratio['requests']:.2f}, wall {ratio['wall']:.2f}, "
        f"worker CPU {ratio['worker_cpu']:.2f}"
    )
    note = common.load_note(before, after)
    common.console.print(note)
    path = common.save(
        "workers",
        {
            "machine": before,
            "machine_after": after,
            "load": note,
            "documents": n,
            "rounds": rounds,
            "batch": BATCH,
            "concurrency": CONCURRENCY,
            "latency_ms": args.latency_ms,
            "pgai_version": PGAI_VERSION,
            "results": [{**asdict(r), "docs_per_s": r.docs_per_s} for r in results],
            "ratios_docvec_over_pgai": ratio,
        },
    )
    common.console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
