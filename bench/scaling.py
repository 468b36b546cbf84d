"""Horizontal scaling: the same document set with 1 worker and with 4, against an I/O-bound
provider (a loopback OpenAI-compatible server that takes ~150 ms per request).

    .venv/bin/python bench/scaling.py [--docs N] [--workers 1,4] [--delay 0.15]

Real parts as in production: `docvec worker` processes (concurrency 1 each) on the machine's Redis,
a fresh PostgreSQL database on 127.0.0.1:5432, pgvector from pgserver as the shared store, the real
``openai`` SDK. Each run enqueues the documents and waits until every one is vectorized; the rate is
documents per second from the first enqueue to the last commit. Prints the ratio N workers / 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from app import services  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import migrate  # noqa: E402
from app.db.models import Document  # noqa: E402
from app.jobqueue import JobQueue  # noqa: E402
from app.runtime import Runtime  # noqa: E402
from tests.embeddings.fakes import FakeOpenAI  # noqa: E402
from tests.ops.harness import start_worker, war_and_peace_docs  # noqa: E402

PG_ADMIN = os.environ.get(
    "DOCVEC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def run(
    n_workers: int, docs: list[tuple[str, bytes]], fake: FakeOpenAI, pgvector_url: str, tmp: Path
) -> dict[str, float]:
    name = f"docvec_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    env = {
        **os.environ,
        "DOCVEC_DATA_DIR": str(tmp / name),
        "DOCVEC_DATABASE_URL": db_url,
        "DOCVEC_VECTOR_STORE": "pgvector",
        "DOCVEC_PGVECTOR_URL": pgvector_url,
        "DOCVEC_COLLECTION": f"c_{name[-8:]}",
        "DOCVEC_BROKER_URL": "redis://127.0.0.1:6379/7",
        "DOCVEC_QUEUE": f"q_{name[-8:]}",
        "DOCVEC_WORKER_CONCURRENCY": "1",
        "DOCVEC_WORKER_METRICS_PORT": "0",
        "DOCVEC_EMBEDDING__PROVIDER": "openai",
        "DOCVEC_EMBEDDING__MODEL": "text-embedding-3-small",
        "DOCVEC_EMBEDDING__DIMENSIONS": "64",
        "DOCVEC_EMBEDDING__BASE_URL": fake.url + "/v1",
        "DOCVEC_EMBEDDING__BATCH_SIZE": "4",
        "OPENAI_API_KEY": "sk-bench",
        "DOCVEC_LOG_LEVEL": "WARNING",
    }
    migrate.upgrade(db_url)
    settings = Settings(
        _env_file=None,
        **{  # type: ignore[arg-type]
            "data_dir": env["DOCVEC_DATA_DIR"],
            "database_url": db_url,
            "vector_store": "pgvector",
            "pgvector_url": pgvector_url,
            "collection": env["DOCVEC_COLLECTION"],
            "broker_url": env["DOCVEC_BROKER_URL"],
            "queue": env["DOCVEC_QUEUE"],
        },
    )
    rt = Runtime(settings)
    workers = [start_worker(env, tmp, f"{name}-w{i}") for i in range(n_workers)]
    queue = JobQueue(settings)
    try:
        time.sleep(8)  # let the workers connect before the clock starts
        with rt.sessions() as s:
            proj = services.get_or_create_project(s, name="scaling")
            added = [
                services.add_document(
                    s, project=proj, storage=rt.storage, file_name=n, pieces=[b]
                ).document
                for n, b in docs
            ]
            s.commit()
        started = time.perf_counter()
        for d in added:
            queue.enqueue(d.id, d.generation)
        while True:
            with rt.sessions() as s:
                done = s.scalar(select(func.count()).where(Document.status == "vectorized"))
            if done == len(docs):
                break
            time.sleep(0.2)
        wall = time.perf_counter() - started
    finally:
        for w in workers:
            w.stop()
        queue.close()
        rt.close()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return {"workers": n_workers, "seconds": wall, "docs_per_s": len(docs) / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--workers", default="1,4")
    ap.add_argument("--delay", type=float, default=0.15, help="seconds per provider request")
    args = ap.parse_args()
    import pgserver

    before = common.machine()
    docs = war_and_peace_docs(common.CORPUS, args.docs, size=1200)
    with (
        tempfile.TemporaryDirectory() as tmpdir,
        FakeOpenAI(dim=64, random_delay_s=(args.delay, args.delay)) as fake,
    ):
        tmp = Path(tmpdir)
        pg = pgserver.get_server(tmp / "pgvector", cleanup_mode="stop")
        url = pg.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        with create_engine(url).begin() as c:
            c.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        results = [run(int(n), docs, fake, url, tmp) for n in args.workers.split(",")]
        pg.cleanup()
    base = results[0]["docs_per_s"]
    rows = [
        (
            r["workers"],
            f"{r['seconds']:.1f}",
            f"{r['docs_per_s']:.2f}",
            f"{r['docs_per_s'] / base:.2f}x",
        )
        for r in results
    ]
    common.console.print(
        common.table(
            f"scaling: {args.docs} documents, provider +{args.delay * 1000:.0f} ms/request",
            ["workers", "seconds", "docs/s", "vs 1 worker"],
            rows,
        )
    )
    after = common.machine()
    common.console.print(common.load_note(before, after))
    common.save(
        "scaling",
        {
            "machine": before,
            "after": after,
            "results": results,
            "delay_s": args.delay,
            "docs": args.docs,
        },
    )


if __name__ == "__main__":
    main()
