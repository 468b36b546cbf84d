"""``docvec eval``: the retrieval quality of a configuration, measured on a BEIR-format data set.

A BEIR data set is a folder with ``corpus.jsonl`` (``{"_id", "title", "text"}`` per line),
``queries.jsonl`` (``{"_id", "text"}``) and ``qrels/<split>.tsv`` (header, then ``query-id``,
``corpus-id``, ``score`` tab-separated). :func:`run_eval`

1. ingests every corpus record as a document, text ``(title + " " + text).strip()``, through the
   pipeline any upload takes (:func:`app.services.add_document`, then
   :func:`app.pipeline.process.process_document`: extraction, chunking, embedding, the vector
   store and SQL all count), into a project of its own. The project's name carries a fingerprint
   of the data and of every setting that shapes the index, so a second run on the same data and
   settings finds the documents vectorized (same bytes, same sha256) and reuses them;
2. runs each query of the split through :func:`app.services.search`, the code behind
   ``docvec search`` and the API, in each mode, ``CHUNK_DEPTH`` chunks deep;
3. turns chunk hits into document hits, each document at the place of its best chunk, and keeps
   the first ``DOC_DEPTH`` documents;
4. scores the rankings with pytrec_eval (trec_eval's measures): nDCG@10, Recall@100, MRR@10 and
   MAP@100, averaged over the split's judged queries (a query that finds nothing scores 0), and
   the per-query latency of the search call, p50 and p95;
5. optionally computes two references on the same texts and queries, outside the pipeline: the
   embedding model alone (sentence-transformers, one vector per whole document, truncated at the
   model's window, exact cosine search) and bm25s (BM25 over whole documents).

The ranking is evaluated in the order search returned it: the run handed to pytrec_eval scores
documents by rank, so trec_eval's tie-breaking by document id never reorders it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from app import lexical, services
from app.db.models import (
    AttemptOutcome,
    Document,
    DocumentStatus,
    Project,
    VectorizationAttempt,
)
from app.vectorstore import SEARCH_MODES, SearchMode

if TYPE_CHECKING:
    import numpy as np
    from rich.progress import Progress

    from app.runtime import Runtime

#: Chunk hits asked per query: enough for ``DOC_DEPTH`` documents when documents have a few
#: chunks each (SciFact: 2.2 on average with the default chunking).
CHUNK_DEPTH = 300
#: Documents kept per query: the depth of Recall@100 and MAP@100.
DOC_DEPTH = 100
#: The metrics, by name: (pytrec_eval measure, key in its output, documents evaluated).
METRICS: dict[str, tuple[str, str, int]] = {
    "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10", DOC_DEPTH),
    "recall@100": ("recall.100", "recall_100", DOC_DEPTH),
    # trec_eval's recip_rank has no cut-off: it is given the first 10 documents only.
    "mrr@10": ("recip_rank", "recip_rank", 10),
    "map@100": ("map_cut.100", "map_cut_100", DOC_DEPTH),
}
#: Names of the two references in reports.
MODEL_ALONE = "model-alone"
BM25S = "bm25s"
#: Documents per batch when the reference encodes whole documents.
_ENCODE_BATCH = 32


class EvalDataError(ValueError):
    """The folder is not a usable BEIR data set (the message says what is wrong)."""


# ---- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeirData:
    """A BEIR data set, one split of it.

    ``corpus_ids[i]``'s document text is ``texts[i]``. ``queries`` holds the split's judged
    queries only, in file order; ``qrels[query_id][corpus_id]`` is a relevance grade.
    """

    name: str
    split: str
    corpus_ids: list[str]
    texts: list[str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    #: sha256 of ``corpus.jsonl``: the data part of the project's fingerprint.
    corpus_sha256: str


def document_text(record: Mapping[str, Any]) -> str:
    """BEIR's document text: ``(title + " " + text).strip()``."""
    return (str(record.get("title") or "") + " " + str(record.get("text") or "")).strip()


def load_beir(folder: Path, split: str) -> BeirData:
    """Read a BEIR data set's corpus, the queries judged in ``split`` and their judgments.

    Raises:
        EvalDataError: a file is missing or malformed, the split does not exist (the message
            lists the splits that do), or no judged query is in ``queries.jsonl``.
    """
    corpus_file, queries_file = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels_file = folder / "qrels" / f"{split}.tsv"
    for f in (corpus_file, queries_file):
        if not f.is_file():
            raise EvalDataError(f"{folder} is not a BEIR data set: {f.name} is missing")
    if not qrels_file.is_file():
        splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise EvalDataError(
            f"{folder} has no split {split!r} (qrels/{split}.tsv); it has: "
            + (", ".join(splits) or "none")
        )
    qrels: dict[str, dict[str, int]] = {}
    with qrels_file.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if n == 1 and not (len(parts) >= 3 and _is_int(parts[2])):
                continue  # the header
            if not line.strip():
                continue
            if len(parts) < 3 or not _is_int(parts[2]):
                raise EvalDataError(f"{qrels_file}:{n}: expected query-id, corpus-id, score")
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])

    digest = hashlib.sha256()
    corpus_ids: list[str] = []
    texts: list[str] = []
    with corpus_file.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            digest.update(raw)
            if not raw.strip():
                continue
            record = _json_line(raw, corpus_file, n)
            corpus_ids.append(str(record["_id"]))
            texts.append(document_text(record))
    queries: dict[str, str] = {}
    with queries_file.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            record = _json_line(raw, queries_file, n)
            if str(record["_id"]) in qrels:
                queries[str(record["_id"])] = str(record.get("text") or "")
    if not queries:
        raise EvalDataError(f"no query of {queries_file} is judged in {qrels_file}")
    return BeirData(
        name=folder.resolve().name,
        split=split,
        corpus_ids=corpus_ids,
        texts=texts,
        queries=queries,
        qrels={q: r for q, r in qrels.items() if q in queries},
        corpus_sha256=digest.hexdigest(),
    )


def _is_int(text: str) -> bool:
    return re.fullmatch(r"-?\d+", text.strip()) is not None


def _json_line(raw: bytes, path: Path, n: int) -> dict[str, Any]:
    try:
        record = json.loads(raw)
    except ValueError as exc:
        raise EvalDataError(f"{path}:{n}: not JSON ({exc})") from None
    if not isinstance(record, dict) or "_id" not in record:
        raise EvalDataError(f"{path}:{n}: expected an object with an _id")
    return record


# ---- metrics ------------------------------------------------------------------------------------


def evaluate(
    qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """The :data:`METRICS` of ``rankings`` (query id -> corpus ids, best first), in [0, 1].

    Computed by pytrec_eval, averaged over every query of ``qrels``; a query with no ranking
    (or an empty one) counts 0. Documents are handed to trec_eval with scores that follow the
    given order, so its tie-breaking cannot reorder them.
    """
    import pytrec_eval

    totals = dict.fromkeys(METRICS, 0.0)
    for name, (measure, key, depth) in METRICS.items():
        run = {
            q: {d: float(depth - i) for i, d in enumerate(ranked[:depth])}
            for q, ranked in rankings.items()
            if q in qrels and ranked
        }
        judged = {q: dict(r) for q, r in qrels.items()}
        scores = pytrec_eval.RelevanceEvaluator(judged, {measure}).evaluate(run) if run else {}
        totals[name] = sum(s[key] for s in scores.values()) / len(qrels)
    return totals


def percentiles(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50 and p95 of ``latencies_ms`` (nearest rank), in milliseconds."""
    if not latencies_ms:
        return {"p50": 0.0, "p95": 0.0}
    ordered = sorted(latencies_ms)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {"p50": round(rank(50), 2), "p95": round(rank(95), 2)}


# ---- report -------------------------------------------------------------------------------------


@dataclass
class Ranking:
    """One way of searching, measured: metrics, latency and each query's documents."""

    metrics: dict[str, float]
    latency_ms: dict[str, float]
    #: Query id -> corpus ids, best first, at most ``DOC_DEPTH``.
    rankings: dict[str, list[str]] = field(repr=False)


@dataclass
class IngestStats:
    """What the ingest of the corpus did.

    ``seconds`` is this run's wall time (small when documents are reused); ``pipeline_seconds``
    is the time the pipeline spent on the documents as they are now: the time covered by their
    successful runs (claim to commit; overlapping runs counted once), whichever eval run it was.
    """

    documents: int
    vectorized_now: int
    reused: int
    failed: int
    chunks: int
    seconds: float
    pipeline_seconds: float = 0.0


@dataclass
class EvalReport:
    """Everything ``docvec eval`` measured."""

    dataset: str
    split: str
    project: str
    queries: int
    ingest: IngestStats
    modes: dict[str, Ranking]
    references: dict[str, Ranking]
    settings: dict[str, Any]

    def as_dict(self, *, rankings: bool = False) -> dict[str, Any]:
        """A JSON-able dict; per-query rankings only if asked (they are large)."""

        def ranking(r: Ranking) -> dict[str, Any]:
            data: dict[str, Any] = {
                "metrics": {k: round(v, 4) for k, v in r.metrics.items()},
                "latency_ms": r.latency_ms,
            }
            if rankings:
                data["rankings"] = r.rankings
            return data

        return {
            "dataset": self.dataset,
            "split": self.split,
            "project": self.project,
            "queries": self.queries,
            "ingest": asdict(self.ingest),
            "modes": {m: ranking(r) for m, r in self.modes.items()},
            "references": {m: ranking(r) for m, r in self.references.items()},
            "settings": self.settings,
        }


# ---- the evaluation -----------------------------------------------------------------------------


def index_settings(rt: Runtime) -> dict[str, Any]:
    """Every setting that shapes the index (so a change of any of them means a new project)."""
    settings, provider = rt.settings, rt.provider
    return {
        "provider": provider.name,
        "model": provider.model,
        "dimensions": settings.embedding.dimensions,
        "document_prefix": settings.embedding.document_prefix,
        "chunking": settings.chunking.model_dump(),
        "vector_store": settings.vector_store,
        "collection": settings.collection,
        "bm25": {"k1": lexical.K1, "b": lexical.B, "avg_length": lexical.AVG_LENGTH},
    }


def project_name(data: BeirData, rt: Runtime) -> str:
    """``eval-<data set>-<split-independent fingerprint of the data and index settings>``."""
    key = json.dumps(
        {"corpus": data.corpus_sha256, "index": index_settings(rt)}, sort_keys=True, default=str
    )
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", data.name).strip("-") or "beir"
    return f"eval-{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def run_eval(
    rt: Runtime,
    folder: Path,
    *,
    split: str = "test",
    modes: Sequence[SearchMode] = SEARCH_MODES,
    references: bool = True,
    progress: Progress | None = None,
) -> EvalReport:
    """Ingest ``folder``'s corpus (or reuse it), run the split's queries, measure.

    Args:
        rt: the process's parts; its settings choose provider, chunking and store as for any
            ingest.
        folder: the BEIR data set.
        split: the qrels file to use (``qrels/<split>.tsv``).
        modes: the search modes to measure.
        references: also measure the model alone and bm25s on whole documents.
        progress: a rich progress display to report to (ingest, each mode, references).

    Raises:
        EvalDataError: the folder is not a BEIR data set or lacks the split.
        DocvecError: the pipeline's start-up errors (e.g. DimensionMismatch).
    """
    data = load_beir(folder, split)
    name = project_name(data, rt)
    rt.ensure_collection()
    stats, corpus_of = ingest(rt, data, project=name, progress=progress)
    with rt.sessions() as s:
        project = s.scalar(select(Project).where(Project.name == name))
        assert project is not None
        results: dict[str, Ranking] = {
            mode: run_queries(rt, s, project, data, corpus_of, mode=mode, progress=progress)
            for mode in modes
        }
    refs: dict[str, Ranking] = {}
    if references:
        refs[MODEL_ALONE] = model_alone(rt, data, progress=progress)
        refs[BM25S] = bm25s_reference(data, progress=progress)
    return EvalReport(
        dataset=data.name,
        split=split,
        project=name,
        queries=len(data.queries),
        ingest=stats,
        modes=results,
        references=refs,
        settings=index_settings(rt),
    )


def ingest(
    rt: Runtime, data: BeirData, *, project: str, progress: Progress | None = None
) -> tuple[IngestStats, dict[uuid.UUID, list[str]]]:
    """Every corpus record as a ``<id>.txt`` document of ``project``, vectorized by the pipeline.

    Documents already vectorized (same bytes) are reused; failed ones stay failed (they are
    counted). Returns the statistics and, per document, the corpus ids it stands for (records
    with the same text are one document).
    """
    from app.pipeline.ingest import process_many

    started = time.perf_counter()
    corpus_of: dict[uuid.UUID, list[str]] = {}
    todo: list[tuple[uuid.UUID, int]] = []
    reused = failed = 0
    with _task(progress, "storing documents", len(data.texts)) as advance, rt.sessions() as s:
        proj = services.get_or_create_project(s, name=project)
        s.commit()
        proj_id = proj.id
        for n, (cid, text) in enumerate(zip(data.corpus_ids, data.texts, strict=True), 1):
            added = services.add_document(
                s,
                project=proj,
                storage=rt.storage,
                file_name=f"{cid}.txt",
                pieces=[text.encode("utf-8")],
                content_type="text/plain",
            )
            doc = added.document
            seen = doc.id in corpus_of
            corpus_of.setdefault(doc.id, []).append(cid)
            if seen:
                pass
            elif doc.status == DocumentStatus.vectorized:
                reused += 1
            elif doc.status == DocumentStatus.failed:
                failed += 1
            else:
                todo.append((doc.id, doc.generation))
            if n % 500 == 0:
                s.commit()
            advance(1)
        s.commit()
    with _task(progress, "vectorizing documents", len(todo)) as advance:
        # Small records share embedding batches (app/pipeline/ingest.py).
        for result in process_many(rt, todo):
            if result.outcome not in ("succeeded", "skipped"):
                failed += 1
            advance(1)
    if todo:
        with _task(progress, "optimizing the search index", 1) as advance:
            rt.vector_store.optimize()  # a no-op but for Qdrant Edge, which indexes when asked
            advance(1)
    with rt.sessions() as s:
        chunks = sum(
            s.scalars(select(Document.chunk_count).where(Document.id.in_(list(corpus_of)))).all()
        )
        runs = s.execute(
            select(VectorizationAttempt.started_at, VectorizationAttempt.finished_at)
            .join(Document, Document.id == VectorizationAttempt.document_id)
            .where(
                Document.project_id == proj_id,
                VectorizationAttempt.outcome == AttemptOutcome.succeeded,
                VectorizationAttempt.generation == Document.generation,
            )
        ).all()
    # Runs overlap (the next documents are extracted while others embed): count the time covered
    # by at least one run, which also leaves out the gaps between eval runs that resumed.
    pipeline_s, covered_to = 0.0, None
    for start, end in sorted((a, b) for a, b in runs if b is not None):
        if covered_to is None or start >= covered_to:
            pipeline_s += (end - start).total_seconds()
            covered_to = end
        elif end > covered_to:
            pipeline_s += (end - covered_to).total_seconds()
            covered_to = end
    stats = IngestStats(
        documents=len(corpus_of),
        vectorized_now=len(todo),
        reused=reused,
        failed=failed,
        chunks=chunks,
        seconds=round(time.perf_counter() - started, 2),
        pipeline_seconds=round(pipeline_s, 2),
    )
    return stats, corpus_of


def run_queries(
    rt: Runtime,
    s: Any,
    project: Project,
    data: BeirData,
    corpus_of: Mapping[uuid.UUID, Sequence[str]],
    *,
    mode: SearchMode,
    progress: Progress | None = None,
) -> Ranking:
    """Every query through :func:`app.services.search` in ``mode``; documents by best chunk."""
    rankings: dict[str, list[str]] = {}
    latencies: list[float] = []
    with _task(progress, f"queries, {mode}", len(data.queries)) as advance:
        for qid, text in data.queries.items():
            t = time.perf_counter()
            hits = services.search(
                s,
                project=project,
                query=text,
                provider=rt.provider,
                store=rt.vector_store,
                top_k=CHUNK_DEPTH,
                mode=mode,
            )
            latencies.append((time.perf_counter() - t) * 1000)
            rankings[qid] = documents_by_best_chunk(
                [h.document_id for h in hits], corpus_of, depth=DOC_DEPTH
            )
            advance(1)
    return Ranking(evaluate(data.qrels, rankings), percentiles(latencies), rankings)


def documents_by_best_chunk(
    hit_documents: Sequence[uuid.UUID],
    corpus_of: Mapping[uuid.UUID, Sequence[str]],
    *,
    depth: int,
) -> list[str]:
    """Corpus ids in the order of their documents' first (best) chunk among the hits."""
    ranked: dict[str, None] = {}
    for doc_id in hit_documents:
        for cid in corpus_of.get(doc_id, ()):
            ranked.setdefault(cid, None)
    return list(ranked)[:depth]


# ---- references ---------------------------------------------------------------------------------


def model_alone(rt: Runtime, data: BeirData, *, progress: Progress | None = None) -> Ranking:
    """The embedding model alone: one vector per whole document, exact cosine top ``DOC_DEPTH``.

    A provider with a reference encoder (the local one: sentence-transformers run directly,
    truncating each document at the model's window) is measured through it; other providers
    embed whole documents through their own client. Document vectors are cached under
    ``{data_dir}/eval`` by data and model. Latency covers embedding the query and the exact
    search.
    """
    import numpy as np

    reference = rt.provider.reference_encoder(batch_size=_ENCODE_BATCH)

    def encode(texts: list[str]) -> np.ndarray:
        if reference is not None:
            return reference(texts)
        vectors = np.asarray(rt.provider.embed_documents(texts), dtype=np.float32)
        normalized: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return normalized

    key = f"{data.corpus_sha256[:16]}-{rt.provider.name}-{rt.provider.model}"
    cache = rt.settings.data_dir / "eval" / (re.sub(r"[^A-Za-z0-9_.-]+", "-", key) + ".npy")
    if cache.is_file():
        docs = np.load(cache)
    else:
        parts = []
        with _task(progress, f"{MODEL_ALONE}: documents", len(data.texts)) as advance:
            for start in range(0, len(data.texts), _ENCODE_BATCH * 8):
                batch = data.texts[start : start + _ENCODE_BATCH * 8]
                parts.append(encode(batch))
                advance(len(batch))
        docs = np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, docs)

    def search(text: str) -> list[str]:
        if reference is not None:
            query = reference([text])[0]
        else:
            query = np.asarray(rt.provider.embed_query(text), dtype=np.float32)
            query /= np.linalg.norm(query)
        scores = docs @ query
        top = np.argsort(-scores, kind="stable")[:DOC_DEPTH]
        return [data.corpus_ids[i] for i in top]

    return _reference(MODEL_ALONE, data, search, progress)


def bm25s_reference(data: BeirData, *, progress: Progress | None = None) -> Ranking:
    """bm25s over whole documents: its tokenizer with English stop words and the Snowball
    English stemmer (PyStemmer), its default BM25 (``method="lucene"``, k1 1.5, b 0.75)."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    with _task(progress, f"{BM25S}: index", 1) as advance:
        tokens = bm25s.tokenize(data.texts, stopwords="en", stemmer=stemmer, show_progress=False)
        index = bm25s.BM25()
        index.index(tokens, show_progress=False)
        advance(1)

    def search(text: str) -> list[str]:
        words = bm25s.tokenize(
            [text], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
        )[0]
        # The query's words in the index's vocabulary (bm25s refuses unknown ones).
        known = [w for w in words if w in index.vocab_dict]
        if not known:
            return []
        found, scores = index.retrieve(
            [known], k=min(DOC_DEPTH, len(data.texts)), show_progress=False, n_threads=1
        )
        # bm25s fills k with documents of score 0; they match no word of the query.
        return [data.corpus_ids[int(i)] for i, v in zip(found[0], scores[0], strict=True) if v > 0]

    return _reference(BM25S, data, search, progress)


def _reference(
    label: str,
    data: BeirData,
    search: Callable[[str], list[str]],
    progress: Progress | None,
) -> Ranking:
    rankings: dict[str, list[str]] = {}
    latencies: list[float] = []
    with _task(progress, f"{label}: queries", len(data.queries)) as advance:
        for qid, text in data.queries.items():
            t = time.perf_counter()
            rankings[qid] = search(text)
            latencies.append((time.perf_counter() - t) * 1000)
            advance(1)
    return Ranking(evaluate(data.qrels, rankings), percentiles(latencies), rankings)


@contextmanager
def _task(
    progress: Progress | None, description: str, total: int
) -> Iterator[Callable[[int], None]]:
    """A progress bar task (or nothing without a display); yields ``advance(n)``."""
    if progress is None:
        yield lambda n: None
        return
    task = progress.add_task(description, total=total)
    try:
        yield lambda n: progress.advance(task, n)
    finally:
        progress.update(task, completed=total)


def best_mode(report: EvalReport, metric: str = "ndcg@10") -> str:
    """The measured mode with the highest ``metric``."""
    return max(report.modes, key=lambda m: report.modes[m].metrics[metric])


__all__ = [
    "BM25S",
    "CHUNK_DEPTH",
    "DOC_DEPTH",
    "METRICS",
    "MODEL_ALONE",
    "BeirData",
    "EvalDataError",
    "EvalReport",
    "IngestStats",
    "Ranking",
    "best_mode",
    "document_text",
    "documents_by_best_chunk",
    "evaluate",
    "ingest",
    "load_beir",
    "model_alone",
    "percentiles",
    "project_name",
    "run_eval",
]
