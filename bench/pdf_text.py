"""PDF text engines: PDFium (pypdfium2) against pypdf, seconds per document and text recovered.

    .venv/bin/python bench/pdf_text.py [--quick] [--rounds R] [--show FILE]

Every PDF of the corpus with a text layer (``pdf/text``, ``pdf/encoding``, the scans that carry an
OCR layer, the permission-only encrypted one and the repairable broken one) is read page by page
by both engines, in one process, round after round in alternating order; a document's time is the
median over rounds of opening it and reading every page's text, each page passed through docvec's
``normalize_text`` as the PDF reader does (so both are measured on the text docvec would index).
pypdf runs as docvec runs it (``strict=False``, ``extract_text()`` per page); PDFium through
``PdfTextPage.get_text_bounded()``, the full-Unicode call (``get_text_range`` is UCS-2 only).

Text recovered: characters per engine, and the word-level agreement of the two, an F1 over the
documents' multisets of case-folded words (``\\w+``): 1.0 when both give the same words, whatever
their order and line breaks. Where a document's agreement is below 0.98, the words each engine
alone gives are printed, for a look at which is right; ``--show FILE`` prints one document's
first page from both. No OCR runs: pages without a text layer are not what is compared.
"""

from __future__ import annotations

import argparse
import io
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

from app.pipeline.extract import normalize_text  # noqa: E402

#: Corpus PDFs that hold a text layer and open without a password (MANIFEST.md).
PDFS = (
    "pdf/text",
    "pdf/encoding",
    "pdf/scanned/Seige_of_Vicksburg_Sample_OCR.pdf",
    "pdf/scanned/a1977-backus-p21.pdf",
    "pdf/scanned/pdf-with-ocr-text.pdf",
    "pdf/encrypted/copy-protected.pdf",
    "pdf/broken/invalid-pdf-structure-pdfminer-one-page.pdf",
)
#: ``--quick``: small documents of each kind, and the long pdfTeX one that dominates the time.
QUICK = (
    "pdf/text/GeoTopo-komprimiert.pdf",
    "pdf/text/multicolumn.pdf",
    "pdf/text/layout-parser-paper-fast.pdf",
    "pdf/encoding/multilang.pdf",
    "pdf/encoding/habibi.pdf",
)
_WORD = re.compile(r"\w+")

Reader = Callable[[bytes], list[str]]


def read_pypdf(data: bytes) -> list[str]:
    """Each page's normalised text, read by pypdf as docvec's PDF reader reads it."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        reader.decrypt("")  # permission flags only: the empty user password opens it
    return [normalize_text(page.extract_text() or "") for page in reader.pages]


def read_pdfium(data: bytes) -> list[str]:
    """Each page's normalised text, read by PDFium."""
    import pypdfium2

    document = pypdfium2.PdfDocument(data)
    try:
        pages = []
        for index in range(len(document)):
            page = document[index]
            text_page = page.get_textpage()
            try:
                pages.append(normalize_text(text_page.get_text_bounded()))
            finally:
                text_page.close()
                page.close()
        return pages
    finally:
        document.close()


READERS: dict[str, Reader] = {"pypdf": read_pypdf, "pdfium": read_pdfium}


@dataclass
class Reading:
    """One engine on one document: its pages' text and the seconds of each round."""

    pages: list[str]
    seconds: list[float]
    error: str | None = None

    @property
    def text(self) -> str:
        return "\n\n".join(p for p in self.pages if p)


def words(text: str) -> Counter[str]:
    return Counter(w.casefold() for w in _WORD.findall(text))


def agreement(a: str, b: str) -> float:
    """F1 of the two texts' word multisets (1.0 for the same words; 1.0 for two empty texts)."""
    wa, wb = words(a), words(b)
    total = sum(wa.values()) + sum(wb.values())
    return 2 * sum((wa & wb).values()) / total if total else 1.0


def documents(quick: bool) -> list[Path]:
    """The PDFs compared, corpus-relative order."""
    chosen: list[Path] = []
    for rel in QUICK if quick else PDFS:
        path = common.CORPUS / rel
        chosen.extend(sorted(path.glob("*.pdf")) if path.is_dir() else [path])
    return [p for p in chosen if p.is_file()]


def measure(paths: list[Path], rounds: int) -> dict[Path, dict[str, Reading]]:
    """Every engine on every document, ``rounds`` times, the engines' order alternating."""
    names = list(READERS)
    out: dict[Path, dict[str, Reading]] = {p: {} for p in paths}
    blobs = {p: p.read_bytes() for p in paths}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for path in paths:
            for name in order:
                reading = out[path].get(name)
                started = time.perf_counter()
                try:
                    pages = READERS[name](blobs[path])
                except Exception as exc:  # a failure is a result here: it goes in the table
                    out[path][name] = Reading([], [], f"{type(exc).__name__}: {exc}"[:60])
                    continue
                secs = time.perf_counter() - started
                if reading is None:
                    out[path][name] = reading = Reading(pages, [])
                reading.seconds.append(secs)
    return out


def only_in(a: str, b: str, k: int = 8) -> str:
    """The ``k`` commonest words of ``a`` that ``b`` lacks, with their surplus counts."""
    surplus = (words(a) - words(b)).most_common(k)
    return ", ".join(f"{w}" + (f" x{n}" if n > 1 else "") for w, n in surplus) or "-"


def show(path: Path) -> None:
    """Print the first page with text from each engine."""
    data = path.read_bytes()
    for name, reader in READERS.items():
        pages = reader(data)
        first = next((p for p in pages if p), "")
        common.console.rule(f"{name}: {path.name}, first page with text")
        common.console.print(first[:3000], markup=False, highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 documents, 2 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5)")
    parser.add_argument("--show", type=Path, default=None, help="print FILE's first page, both")
    args = parser.parse_args()
    # pypdf's warnings on malformed files: docvec's reader hides them too.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if args.show:
        show(args.show if args.show.is_file() else common.CORPUS / args.show)
        return
    rounds = args.rounds or (2 if args.quick else 5)
    paths = documents(args.quick)
    before = common.machine()
    common.console.print(
        f"[bold]PDF text[/bold]: {len(paths)} PDFs, {rounds} rounds, pypdf vs PDFium"
    )
    readings = measure(paths, rounds)
    after = common.machine()

    rows: list[list[Any]] = []
    diffs: list[list[Any]] = []
    results: dict[str, Any] = {}
    totals: dict[str, dict[str, float]] = {}
    for path, by_engine in readings.items():
        rel = str(path.relative_to(common.CORPUS))
        a, b = by_engine["pypdf"], by_engine["pdfium"]
        ok = a.error is None and b.error is None
        ta = common.median(a.seconds) if a.seconds else None
        tb = common.median(b.seconds) if b.seconds else None
        f1 = agreement(a.text, b.text) if ok else None
        rows.append(
            [
                rel,
                len(a.pages) if a.error is None else a.error,
                ta,
                tb,
                ta / tb if ta and tb else None,
                len(a.text) if a.error is None else None,
                len(b.text) if b.error is None else b.error,
                f1,
            ]
        )
        results[rel] = {
            "pages": len(a.pages),
            "pypdf_s": ta,
            "pdfium_s": tb,
            "pypdf_chars": len(a.text),
            "pdfium_chars": len(b.text),
            "word_f1": f1,
            "errors": {"pypdf": a.error, "pdfium": b.error},
        }
        if ok and ta is not None and tb is not None:
            for group in ("all", rel.split("/")[1]):
                t = totals.setdefault(group, {"docs": 0, "pypdf_s": 0.0, "pdfium_s": 0.0})
                t["docs"] += 1
                t["pypdf_s"] += ta
                t["pdfium_s"] += tb
                t["pypdf_chars"] = t.get("pypdf_chars", 0) + len(a.text)
                t["pdfium_chars"] = t.get("pdfium_chars", 0) + len(b.text)
        if f1 is not None and f1 < 0.98:
            diffs.append([rel, f"{f1:.3f}", only_in(a.text, b.text), only_in(b.text, a.text)])

    common.console.print(
        common.table(
            "per document: median seconds to open and read every page, characters, word F1",
            [
                "document",
                "pages",
                "pypdf s",
                "pdfium s",
                "x faster",
                "pypdf chars",
                "pdfium chars",
                "word F1",
            ],
            rows,
        )
    )
    summary = [
        [
            group,
            int(t["docs"]),
            t["pypdf_s"] / t["docs"],
            t["pdfium_s"] / t["docs"],
            t["pypdf_s"] / t["pdfium_s"],
            int(t["pypdf_chars"]),
            int(t["pdfium_chars"]),
        ]
        for group, t in sorted(totals.items(), key=lambda kv: kv[0] != "all")
    ]
    common.console.print(
        common.table(
            "totals (documents both engines read): seconds per document, and the ratio",
            [
                "set",
                "docs",
                "pypdf s/doc",
                "pdfium s/doc",
                "pypdf / pdfium",
                "pypdf chars",
                "pdfium chars",
            ],
            summary,
        )
    )
    if diffs:
        common.console.print(
            common.table(
                "where the engines disagree (word F1 < 0.98): words only one of them gives",
                ["document", "F1", "only pypdf", "only pdfium"],
                diffs,
            )
        )
    note = common.load_note(before, after)
    common.console.print(f"[dim]{note}[/dim]")
    path = common.save(
        "pdf_text",
        {
            "machine": before,
            "load_after": after["load_avg_1m"],
            "note": note,
            "params": {"rounds": rounds, "documents": len(paths)},
            "totals": totals,
            "results": results,
        },
    )
    common.console.print(f"[dim]written {path.relative_to(common.REPO)}[/dim]")


if __name__ == "__main__":
    main()
