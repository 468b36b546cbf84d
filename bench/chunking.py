"""docvec's chunker vs langchain-text-splitters and semantic-text-splitter: MB/s on the same text.

    .venv/bin/python bench/chunking.py [--quick] [--mb N] [--rounds R]

The text is the corpus' plain-text and Markdown documents, extracted and normalised by docvec's
extract stage, concatenated and repeated up to ``--mb`` MB of UTF-8 (20 by default, 2 with
``--quick``). Every splitter gets 1,000-character chunks with 200 characters of overlap (docvec's
defaults); docvec also in token mode (256 cl100k tokens, 50 overlap). docvec's figure includes what
its chunks carry and the others do not compute: character offsets and a tiktoken count per chunk.
Rounds rotate the order; figures are medians. The other two packages are in docvec's ``bench``
extra (``pip install -e '.[bench]'``); a missing one is skipped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

from app.pipeline.chunk import Chunker  # noqa: E402
from app.pipeline.extract import extract  # noqa: E402

Splitter = Callable[[str], list[str]]


def corpus_text(megabytes: float) -> str:
    """Normalised text of the corpus' .txt/.md documents, repeated to ``megabytes`` MB."""
    parts = []
    for path in common.corpus_files():
        if path.suffix not in (".txt", ".md"):
            continue
        try:
            parts.append(extract(path.read_bytes(), path.name).text)
        except Exception:  # the corpus' empty and broken files: nothing to chunk
            continue
    unit = "\n\n".join(parts)
    target = int(megabytes * 1_000_000)
    size = len(unit.encode("utf-8"))
    text = unit * max(1, -(-target // size))
    # Cut at a paragraph break near the target, measured in UTF-8 bytes.
    cut = len(text)
    while len(text[:cut].encode("utf-8")) > target and cut > 0:
        cut = text.rfind("\n\n", 0, int(cut * 0.98))
    return text[:cut] if cut > 0 else text


def splitters() -> dict[str, Splitter | str]:
    """name -> split function, or the reason it is unavailable."""
    found: dict[str, Splitter | str] = {}
    chars = Chunker(chunk_size=1000, chunk_overlap=200, min_chunk_size=100)
    tokens = Chunker(chunk_size=256, chunk_overlap=50, min_chunk_size=25, unit="tokens")
    found["docvec (chars 1000/200)"] = lambda t: [c.text for c in chars.split(t)]
    found["docvec (tokens 256/50)"] = lambda t: [c.text for c in tokens.split(t)]
    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        lc = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        found["langchain RecursiveCharacterTextSplitter"] = lc.split_text
    except ImportError:
        found["langchain RecursiveCharacterTextSplitter"] = "langchain-text-splitters missing"
    try:
        from semantic_text_splitter import TextSplitter

        sts = TextSplitter(1000, overlap=200)
        found["semantic-text-splitter"] = sts.chunks
    except ImportError:
        found["semantic-text-splitter"] = "semantic-text-splitter missing"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 MB, 2 rounds")
    parser.add_argument("--mb", type=float, default=None, help="MB of text (default 20)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3)")
    args = parser.parse_args()
    mb = args.mb or (2.0 if args.quick else 20.0)
    rounds = args.rounds or (2 if args.quick else 3)

    before = common.machine()
    text = corpus_text(mb)
    size_mb = len(text.encode("utf-8")) / 1e6
    common.console.print(f"[bold]chunking[/bold]: {size_mb:.1f} MB of text, {rounds} rounds")
    found = splitters()
    ready = {k: v for k, v in found.items() if callable(v)}
    names = list(ready)
    times: dict[str, list[float]] = {k: [] for k in names}
    counts: dict[str, list[int]] = {}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            secs, chunks = common.timed(lambda name=name: ready[name](text))
            times[name].append(secs)
            counts[name] = [len(c) for c in chunks]
    after = common.machine()
    base = size_mb / common.median(times[names[0]])
    rows = []
    results = {}
    for name in names:
        speed = size_mb / common.median(times[name])
        n = len(counts[name])
        mean = sum(counts[name]) / max(n, 1)
        rows.append([name, speed, speed / base, n, mean])
        results[name] = {"mb_per_s": speed, "round_s": times[name], "chunks": n, "mean_chars": mean}
    for name, why in found.items():
        if not callable(why):
            rows.append([name, None, None, None, f"skipped: {why}"])
            results[name] = {"skipped": why}
    common.console.print(
        common.table(
            f"chunking {size_mb:.1f} MB",
            ["splitter", "MB/s", "x docvec chars", "chunks", "mean chunk chars"],
            rows,
        )
    )
    note = common.load_note(before, after)
    common.console.print(f"[dim]{note}[/dim]")
    path = common.save(
        "chunking",
        {
            "machine": before,
            "load_after": after["load_avg_1m"],
            "note": note,
            "params": {"mb": size_mb, "rounds": rounds},
            "results": results,
        },
    )
    common.console.print(f"[dim]written {path.relative_to(common.REPO)}[/dim]")


if __name__ == "__main__":
    main()
