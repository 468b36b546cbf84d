"""OCR engines on scans of real text: words recovered and seconds per page.

    .venv/bin/python bench/ocr.py [--quick] [--pages N] [--rounds R]

Pages of the corpus' War and Peace are typeset with Pillow (its built-in FreeType font, 11 pt and
8 pt, A4) and "scanned" at 300 dpi into an image-only PDF, the kind of file a scanner writes.
docvec reads that PDF end to end — pypdf finds no text layer, PDFium renders each page at the
DPI under test, Tesseract reads it — so its seconds per page include rendering. RapidOCR
(``rapidocr-onnxruntime``, the PyPI engine whose models ship inside its wheel; in the ``bench``
extra) reads the same pages rendered at 200 dpi. Screenshots (1280 x 800, 12 and 14 px text from
the corpus' FastAPI pages) go through docvec's image path, which reads images under 2.5 Mpx at
twice their size, beside Tesseract on the image as it is. The corpus' image-only
``pdf/scanned/loremipsum-flat.pdf`` is timed too (no ground truth: words found only).

Words recovered: the share of the page's words (lowercased letters and digits, as a multiset)
that the OCR text contains. Seconds are wall-clock; CPU seconds (this process's and its children's:
Tesseract runs as a child) hold still when other work shares the machine. Rounds rotate the order;
figures are medians.
"""

from __future__ import annotations

import argparse
import io
import re
import resource
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

common.setup_environment()

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from app.pipeline.extract import OcrOptions, extract, ocr_status  # noqa: E402
from app.pipeline.extract.ocr import Tesseract  # noqa: E402

SCAN_DPI = 300
A4_INCHES = (8.27, 11.69)


def words(text: str) -> Counter[str]:
    return Counter(re.findall(r"[a-z0-9]+", text.lower()))


def recovered(truth: str, found: str) -> float:
    """Share of ``truth``'s words (a multiset) that ``found`` holds."""
    want = words(truth)
    return sum((want & words(found)).values()) / max(sum(want.values()), 1)


def typeset(text: str, *, dpi: int, points: float) -> tuple[list[Image.Image], list[str]]:
    """``text`` set on A4 pages at ``points`` pt with a one-inch margin, as ``dpi`` images, and
    the words each page shows."""
    width, height = (round(side * dpi) for side in A4_INCHES)
    size = round(points * dpi / 72)
    font = ImageFont.load_default(size=size)
    columns = int((width - 2 * dpi) / (size * 0.5))
    pages: list[Image.Image] = []
    shown: list[str] = []
    lines = [line for para in text.split("\n\n") for line in [*textwrap.wrap(para, columns), ""]]
    while lines:
        page = Image.new("L", (width, height), 255)
        draw = ImageDraw.Draw(page)
        y, used = dpi, []
        while lines and y + size * 1.4 < height - dpi:
            line = lines.pop(0)
            draw.text((dpi, y), line, fill=0, font=font)
            used.append(line)
            y += int(size * (1.4 if line else 0.7))
        pages.append(page)
        shown.append(" ".join(used))
    return pages, shown


def scanned_pdf(pages: list[Image.Image], dpi: int) -> bytes:
    out = io.BytesIO()
    pages[0].save(out, format="PDF", save_all=True, append_images=pages[1:], resolution=dpi)
    return out.getvalue()


def screenshot(text: str, px: int) -> tuple[bytes, str]:
    image = Image.new("RGB", (1280, 800), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=px)
    y, used = 10, []
    for para in text.split("\n\n"):
        for line in textwrap.wrap(" ".join(para.split()), int(1240 / (px * 0.5))):
            if y > 780 - px:
                break
            draw.text((20, y), line, fill=(30, 30, 30), font=font)
            y += int(px * 1.4)
            used.append(line)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue(), " ".join(used)


def rapidocr() -> Callable[[Image.Image], str] | str:
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        return "rapidocr-onnxruntime not installed (pip install -e '.[bench]')"
    engine = RapidOCR()

    def read(image: Image.Image) -> str:
        import numpy as np

        result, _ = engine(np.asarray(image.convert("RGB")))
        return "\n".join(str(r[1]) for r in result or [])

    return read


def render(pdf: bytes, dpi: int) -> list[Image.Image]:
    import pypdfium2

    doc = pypdfium2.PdfDocument(pdf)
    try:
        return [
            doc[i].render(scale=dpi / 72, grayscale=True).to_pil().copy() for i in range(len(doc))
        ]
    finally:
        doc.close()


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended (Tesseract's runs)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 page, 1 round")
    parser.add_argument("--pages", type=int, default=None, help="pages per size (default 2)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 2)")
    args = parser.parse_args()
    n_pages = args.pages or (1 if args.quick else 2)
    rounds = args.rounds or (1 if args.quick else 2)

    status = ocr_status(OcrOptions())
    if not status.available:
        sys.exit(f"OCR unavailable: {status.reason}")
    before = common.machine()
    book = (common.CORPUS / "text/txt/book-war-and-peace-1225p.txt").read_text("utf-8")
    prose = "\n\n".join(" ".join(p.split()) for p in book.split("\n\n")[1:400])
    fastapi = (common.CORPUS / "text/md/en/fastapi__features.md").read_text("utf-8")[:4000]

    cases: dict[str, Callable[[], tuple[str, str, int]]] = {}
    for points in (11, 8):
        images, shown = typeset(prose, dpi=SCAN_DPI, points=points)
        images, shown = images[:n_pages], shown[:n_pages]
        pdf = scanned_pdf(images, SCAN_DPI)
        truth = " ".join(shown)
        for dpi in (150, 200, 300):
            options = OcrOptions(dpi=dpi)

            def run(pdf: bytes = pdf, options: OcrOptions = options, truth: str = truth) -> Any:
                return truth, extract(pdf, "scan.pdf", ocr=options).text, n_pages

            cases[f"docvec+Tesseract {points} pt, {dpi} dpi"] = run
        reader = rapidocr()
        if callable(reader):
            pages200 = render(pdf, 200)

            def run_rapid(
                pages: list[Image.Image] = pages200,
                truth: str = truth,
                reader: Callable[[Image.Image], str] = reader,
            ) -> Any:
                return truth, "\n".join(reader(p) for p in pages), len(pages)

            cases[f"RapidOCR {points} pt, 200 dpi"] = run_rapid
        else:
            common.console.print(f"[yellow]RapidOCR skipped: {reader}[/yellow]")
    for px in (12, 14):
        png, truth = screenshot(fastapi, px)

        def run_shot(png: bytes = png, truth: str = truth) -> Any:
            return truth, extract(png, "shot.png").text, 1

        def run_plain(png: bytes = png, truth: str = truth) -> Any:
            engine = Tesseract(OcrOptions())
            return truth, engine.read(Image.open(io.BytesIO(png)), page=1), 1

        cases[f"screenshot {px} px, docvec (2x)"] = run_shot
        cases[f"screenshot {px} px, Tesseract as is"] = run_plain
    flat = (common.CORPUS / "pdf/scanned/loremipsum-flat.pdf").read_bytes()
    cases["corpus loremipsum-flat.pdf (200 dpi)"] = lambda: ("", extract(flat, "x.pdf").text, 1)

    names = list(cases)
    secs: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    score: dict[str, float] = {}
    found_words: dict[str, int] = {}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t, c = time.perf_counter(), _cpu()
            truth, text, pages = cases[name]()
            secs[name].append((time.perf_counter() - t) / pages)
            cpu[name].append((_cpu() - c) / pages)
            score[name] = recovered(truth, text) if truth else float("nan")
            found_words[name] = sum(words(text).values())
    after = common.machine()
    rows = []
    results = {}
    for name in names:
        per_page = common.median(secs[name])
        shown = None if score[name] != score[name] else round(100 * score[name], 1)
        rows.append([name, per_page, common.median(cpu[name]), shown, found_words[name]])
        results[name] = {
            "s_per_page": secs[name],
            "cpu_s_per_page": cpu[name],
            "words_recovered": score[name],
        }
    common.console.print(
        common.table(
            f"OCR, {n_pages} page(s) per size, {rounds} round(s); Tesseract {status.version}",
            ["case", "s / page", "CPU s / page", "% words recovered", "words read"],
            rows,
        )
    )
    note = common.load_note(before, after)
    common.console.print(f"[dim]{note}[/dim]")
    path = common.save(
        "ocr",
        {
            "machine": before,
            "load_after": after["load_avg_1m"],
            "note": note,
            "params": {"pages": n_pages, "rounds": rounds, "tesseract": status.version},
            "results": results,
        },
    )
    common.console.print(f"[dim]written {path.relative_to(common.REPO)}[/dim]")


if __name__ == "__main__":
    main()
