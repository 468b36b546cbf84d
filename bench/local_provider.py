"""Chunks/s of each local backend on the same corpus chunks, and agreement of vectors with torch.

    .venv/bin/python bench/local_provider.py [--quick] [--chunks N] [--rounds R]

Every backend embeds exactly the same chunks (the default chunker over English prose, Markdown
docs in English and Spanish, and Russian/Chinese/Japanese READMEs) through the provider's own path
(``LocalProvider.embed_documents``, batch 32), round after round in rotating order; "x torch" is
the median over rounds of torch's time divided by the backend's in the same round. Agreement is the
cosine of each chunk's vector to torch FP32's (sentence-transformers as it ships): worst chunk,
1st percentile and mean.

"GFLOP/s" is the model's matrix-product work each engine did per second (counted from the model's
shapes and each batch's token lengths, :class:`ModelShape`), and "% sgemm" that rate as a share of
this CPU's FP32 matrix-multiply throughput, measured in the same run with a large sgemm on as many
threads as the engines use (:func:`sgemm_rates`): how far an engine is from what the CPU can do.

"x torch CPU 1 thr" is the same comparison in CPU seconds with one thread per engine (first chunk
size, up to 128 chunks, 2 rounds): the work each engine does per chunk. It holds still when other
processes share the cores, where wall-clock ratios swing with their load (and torch's spinning
OpenMP threads lose most), so on a busy machine it is the figure to trust.

A backend exported for the first time is exported (and cached) before it is timed; its export
time is shown apart.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

import numpy as np  # noqa: E402

from app.config import EmbeddingSettings  # noqa: E402
from app.embeddings.local import (  # noqa: E402
    BACKENDS,
    LocalProvider,
    default_cache_dir,
    resolve_model_path,
)
from app.pipeline.chunk import Chunker  # noqa: E402
from app.pipeline.extract import extract  # noqa: E402

#: Documents the chunks are drawn from: prose, technical Markdown in two languages, other scripts.
SOURCES = (
    "text/txt/book-war-and-peace-1225p.txt",
    "text/md/en/fastapi__deployment__docker.md",
    "text/md/en/fastapi__async.md",
    "text/md/en/the-art-of-command-line__README.md",
    "text/md/es/fastapi__tutorial__sql-databases.md",
    "text/md/i18n/the-art-of-command-line__README-ru.md",
    "text/md/i18n/the-art-of-command-line__README-zh.md",
    "text/md/i18n/the-art-of-command-line__README-ja.md",
    "text/txt/rfc3986.txt",
)


def corpus_chunks(n: int, chunk_size: int) -> list[str]:
    """``n`` chunks spread evenly over :data:`SOURCES` (half of them from the novel)."""
    chunker = Chunker(chunk_size=chunk_size, chunk_overlap=chunk_size // 5, min_chunk_size=1)
    per_doc: list[list[str]] = []
    for rel in SOURCES:
        path = common.CORPUS / rel
        text = extract(path.read_bytes(), path.name).text
        if rel.startswith("text/txt/book"):
            text = text[: 400 * chunk_size]  # enough of the novel, and the same part every time
        per_doc.append([c.text for c in chunker.split(text)])
    want = [n // 2] + [0] * (len(per_doc) - 1)
    for i in range(n - want[0]):
        want[1 + i % (len(per_doc) - 1)] += 1
    out: list[str] = []
    for chunks, k in zip(per_doc, want, strict=True):
        step = max(1, len(chunks) // max(k, 1))
        out.extend(chunks[::step][:k])
    return out[:n]


@dataclass(frozen=True)
class ModelShape:
    """The shapes of a BERT-style encoder that set its matrix-product work per token.

    FLOPs are counted honestly, as the matrix products the engines execute, a multiply-add being
    2 FLOPs: per layer and token, the Q, K, V and output projections (4 h^2 multiply-adds), the
    feed-forward up and down projections (2 h f), and attention's scores QK^T and weights x V
    (2 L h for a sequence of L tokens, summed over the heads). LayerNorm, GELU, softmax, biases,
    the embedding lookup and mean pooling are left out: elementwise work, about 1 % of the total
    for all-MiniLM-L6-v2 (h 384, f 1536, 6 layers) at these lengths, and memory-bound anyway.
    """

    layers: int
    hidden: int
    intermediate: int

    @classmethod
    def of(cls, folder: Path) -> ModelShape:
        """Read from the model folder's ``config.json`` (Hugging Face's names)."""
        config = json.loads((folder / "config.json").read_text("utf-8"))
        return cls(
            int(config["num_hidden_layers"]),
            int(config["hidden_size"]),
            int(config["intermediate_size"]),
        )

    def sequence_flops(self, tokens: int) -> float:
        """FLOPs of one sequence of ``tokens`` word pieces (special tokens included)."""
        h, f = self.hidden, self.intermediate
        per_layer = 2 * tokens * (4 * h * h + 2 * h * f) + 4 * tokens * tokens * h
        return float(self.layers * per_layer)

    def batch_flops(self, lengths: Sequence[int]) -> tuple[float, float]:
        """``(executed, useful)`` FLOPs of one forward pass over sequences of ``lengths`` tokens.

        Every engine pads a batch to its longest input and computes the padding too, so
        ``executed`` counts each sequence at the batch's longest length; ``useful`` counts each
        at its own (what an engine that skipped padding would have had to do).
        """
        longest = max(lengths, default=0)
        executed = len(lengths) * self.sequence_flops(longest)
        return executed, sum(self.sequence_flops(n) for n in lengths)


def token_lengths(folder: Path, texts: Sequence[str]) -> list[int]:
    """Word pieces per text as the engines feed them: stripped, truncated at the model's
    ``max_seq_length`` (its ``sentence_bert_config.json``), [CLS] and [SEP] included."""
    from tokenizers import Tokenizer

    window = json.loads((folder / "sentence_bert_config.json").read_text("utf-8"))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.enable_truncation(max_length=int(window["max_seq_length"]))
    return [len(e.ids) for e in tokenizer.encode_batch([t.strip() for t in texts])]


def chunks_flops(
    shape: ModelShape, provider: LocalProvider, chunks: Sequence[str], folder: Path
) -> tuple[float, float]:
    """``(executed, useful)`` FLOPs of embedding ``chunks`` once through ``provider``, batch by
    batch exactly as its ``embed_documents`` cuts them."""
    lengths = token_lengths(folder, chunks)
    executed = useful = 0.0
    for start, end in provider.batches(chunks):
        e, u = shape.batch_flops(lengths[start:end])
        executed += e
        useful += u
    return executed, useful


def sgemm_rates(threads: int, *, reps: int) -> dict[str, float]:
    """This CPU's FP32 matrix-multiply rate in GFLOP/s (2 m n k FLOPs per product), best of
    ``reps`` products after a warm-up, on ``threads`` threads.

    Three products: a large square one (4096^3) through numpy's BLAS (OpenBLAS) and through
    torch (MKL), the CPU's attainable FP32 rate; and one shaped like the model's largest
    (32 x 256 tokens by 384 into 1536, the feed-forward up-projection of a full batch), the rate
    the model's own shapes allow.
    """
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    def best(product: Callable[[], object], flops: float) -> float:
        product()  # warm-up: thread pools started, pages touched
        secs = min(common.timed(product)[0] for _ in range(reps))
        return flops / secs / 1e9

    rng = np.random.default_rng(0)
    n = 4096
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out: dict[str, float] = {}
    with threadpool_limits(limits=threads, user_api="blas"):
        out["numpy 4096^3"] = best(lambda: a @ b, 2.0 * n**3)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        out["torch 4096^3"] = best(lambda: torch.mm(ta, tb), 2.0 * n**3)
        m, k, f = 32 * 256, 384, 1536
        x, w = torch.randn(m, k), torch.randn(k, f)
        out["torch 8192x384x1536 (model-shaped)"] = best(lambda: torch.mm(x, w), 2.0 * m * k * f)
    finally:
        torch.set_num_threads(previous)
    return out


def load(backend: str, batch: int, threads: int | None, *, quiet: bool = False) -> LocalProvider:
    """A warm provider on ``backend`` (exported first if its cache is empty)."""
    cache = default_cache_dir()
    existed = cache.exists() and any(cache.rglob(f"{backend}-*/docvec-export.json"))
    p = LocalProvider(EmbeddingSettings(backend=backend, batch_size=batch, num_threads=threads))
    secs, _ = common.timed(lambda: p.embed_query("warm up"))
    if not quiet:
        note = "" if backend == "torch" or existed else " (exported now, cached for next time)"
        common.console.print(f"  {backend}: loaded in {secs:.1f} s{note}")
    return p


def run_rounds(
    providers: dict[str, LocalProvider],
    chunks: list[str],
    rounds: int,
    clock: Callable[[], float],
) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Each provider embeds ``chunks`` once per round, in rotating order; ``clock`` times it."""
    names = list(providers)
    times: dict[str, list[float]] = {b: [] for b in names}
    vectors: dict[str, np.ndarray] = {}
    for r in range(rounds):
        for b in names[r % len(names) :] + names[: r % len(names)]:
            t = clock()
            vecs = providers[b].embed_documents(chunks)
            times[b].append(clock() - t)
            vectors.setdefault(b, np.asarray(vecs, dtype=np.float32))
    return times, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 chunks, 2 rounds, 1000 chars")
    parser.add_argument("--chunks", type=int, default=None, help="chunks per size (default 384)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3)")
    parser.add_argument(
        "--chunk-sizes", default=None, help="comma-separated chunk sizes in characters"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-cpu", action="store_true", help="skip the 1-thread CPU-time pass")
    parser.add_argument("--threads", type=int, default=None, help="engine threads (all cores)")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help=f"subset of {','.join(BACKENDS)}"
    )
    args = parser.parse_args()
    n = args.chunks or (64 if args.quick else 384)
    rounds = args.rounds or (2 if args.quick else 3)
    sizes = [
        int(s) for s in (args.chunk_sizes or ("1000" if args.quick else "1000,200")).split(",")
    ]
    backends = [b for b in args.backends.split(",") if b]
    if "torch" not in backends:
        backends.insert(0, "torch")

    before = common.machine()
    common.console.print(
        f"[bold]local backends[/bold]: {n} chunks x {sizes} chars, {rounds} rounds"
    )
    providers = {b: load(b, args.batch_size, args.threads) for b in backends}
    # The engines' own default is one thread per core here (torch, ONNX Runtime and OpenVINO
    # alike on a CPU without SMT), so the sgemm runs on as many.
    threads = args.threads or len(os.sched_getaffinity(0))
    reps = 2 if args.quick else 4
    common.console.print(f"  sgemm on {threads} threads ...")
    sgemm = sgemm_rates(threads, reps=reps)
    folder = Path(resolve_model_path(providers["torch"].model))
    shape = ModelShape.of(folder)
    results: dict[str, object] = {}
    rows: list[list[Any]] = []
    engine_stats: list[dict[str, Any]] = []
    for i, size in enumerate(sizes):
        chunks = corpus_chunks(n, size)
        mean_chars = sum(map(len, chunks)) / len(chunks)
        times, vectors = run_rounds(providers, chunks, rounds, time.perf_counter)
        cpu: dict[str, float] = {}
        if i == 0 and not args.no_cpu:
            # Compute per chunk, one thread each, in CPU seconds: robust when other processes
            # share the cores (wall-clock ratios then swing with their load, and spinning
            # OpenMP threads suffer most), and free of the engines' thread-scaling differences.
            common.console.print("  CPU-time pass, 1 thread per engine ...")
            single = {b: load(b, args.batch_size, 1, quiet=True) for b in backends}
            k = min(len(chunks), 128)
            cpu_times, _ = run_rounds(single, chunks[:k], 2, time.process_time)
            cpu = {
                b: common.median(
                    [t / c for t, c in zip(cpu_times["torch"], cpu_times[b], strict=True)]
                )
                for b in backends
            }
            results["cpu_1_thread"] = {"chunks": k, "round_cpu_s": cpu_times, "x_torch": cpu}
        ref = vectors["torch"]
        executed, useful = chunks_flops(shape, providers["torch"], chunks, folder)
        per_size: dict[str, object] = {
            "mean_chars": round(mean_chars, 1),
            "chunks": len(chunks),
            "gflop_executed": executed / 1e9,
            "gflop_useful": useful / 1e9,
        }
        for b in backends:
            cos = np.sum(ref * vectors[b], axis=1) / (
                np.linalg.norm(ref, axis=1) * np.linalg.norm(vectors[b], axis=1)
            )
            ratios = [tt / tb for tt, tb in zip(times["torch"], times[b], strict=True)]
            rate = len(chunks) / common.median(times[b])
            speedup = common.median(ratios)
            gflops = executed / common.median(times[b]) / 1e9
            stats: dict[str, Any] = {
                "chunks_per_s": rate,
                "x_torch": speedup,
                "gflop_per_s": gflops,
                "useful_gflop_per_s": useful / common.median(times[b]) / 1e9,
                "round_s": times[b],
                "cos_min": float(cos.min()),
                "cos_p1": float(np.percentile(cos, 1)),
                "cos_mean": float(cos.mean()),
            }
            per_size[b] = stats
            engine_stats.append(stats)
            rows.append(
                [
                    f"{size} ({mean_chars:.0f})",
                    b,
                    rate,
                    speedup,
                    cpu.get(b),
                    f"{cos.min():.5f}",
                    f"{np.percentile(cos, 1):.5f}",
                    f"{cos.mean():.5f}",
                    gflops,
                    None,  # the share of sgemm, once its second run is in
                ]
            )
        results[f"chars_{size}"] = per_size
        common.console.print(
            f"  {size} chars: {executed / len(chunks) / 1e9:.2f} GFLOP per chunk as padded in "
            f"batches of {args.batch_size}, {useful / len(chunks) / 1e9:.2f} without the padding"
        )
    # Once more after the engines, so a load that changed during the run shows in the spread;
    # the best of both is the CPU's rate.
    first, later = sgemm, sgemm_rates(threads, reps=reps)
    sgemm = {k: max(v, later[k]) for k, v in first.items()}
    results["sgemm_gflop_per_s"] = {
        "threads": threads,
        "best": sgemm,
        "before_engines": first,
        "after_engines": later,
    }
    peak = max(v for k, v in sgemm.items() if "4096" in k)
    for row in rows:
        row[-1] = f"{100 * row[-2] / peak:.0f} %"
    for stats in engine_stats:
        stats["share_of_sgemm"] = stats["gflop_per_s"] / peak
    after = common.machine()
    common.console.print(
        common.table(
            f"local provider, batch {args.batch_size}: chunks/s and agreement with torch FP32",
            [
                "chunk chars (mean)",
                "backend",
                "chunks/s",
                "x torch",
                "x torch CPU 1 thr",
                "cos min",
                "cos p1",
                "cos mean",
                "GFLOP/s",
                "% sgemm",
            ],
            rows,
        )
    )
    common.console.print(
        common.table(
            f"FP32 sgemm, {threads} threads, best of {reps} before and after the engines "
            "('% sgemm': of the faster 4096^3)",
            ["product", "GFLOP/s"],
            [[k, v] for k, v in sgemm.items()],
        )
    )
    note = common.load_note(before, after)
    common.console.print(f"[dim]{note}[/dim]")
    path = common.save(
        "local_provider",
        {
            "machine": before,
            "load_after": after["load_avg_1m"],
            "note": note,
            "params": {
                "chunks": n,
                "rounds": rounds,
                "sizes": sizes,
                "batch": args.batch_size,
                "threads": threads,
            },
            "results": results,
        },
    )
    common.console.print(f"[dim]written {path.relative_to(common.REPO)}[/dim]")


if __name__ == "__main__":
    main()
