"""Scans and images made in the tests: real corpus text typeset with Pillow and "scanned" into
image-only PDFs, screenshots, and hostile images (decompression bombs, truncated and lying files,
TIFFs with too many pages).

The text is real (the corpus' War and Peace and FastAPI pages, MANIFEST.md); the font is Pillow's
built-in FreeType font, so nothing depends on the fonts a machine has. Pages are small and at low
resolution where the test allows: each OCR'd page costs a Tesseract run.
"""

from __future__ import annotations

import io
import re
import struct
import textwrap
import zlib
from collections import Counter
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfReader, PdfWriter

from tests.security import hostile

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "corpus"


def prose(first_paragraph: int = 1, paragraphs: int = 6) -> str:
    """Paragraphs of War and Peace (corpus ``text/txt``), each on one line."""
    book = (CORPUS / "text/txt/book-war-and-peace-1225p.txt").read_text("utf-8")
    parts = [" ".join(p.split()) for p in book.split("\n\n")]
    return "\n\n".join(p for p in parts[first_paragraph : first_paragraph + paragraphs] if p)


def words(text: str) -> Counter[str]:
    """The words of ``text``: lowercased runs of letters and digits, as a multiset."""
    return Counter(re.findall(r"[a-z0-9]+", text.lower()))


def words_recovered(truth: str, found: str) -> float:
    """Share of ``truth``'s words (a multiset) that ``found`` holds, 0..1."""
    want = words(truth)
    return sum((want & words(found)).values()) / max(sum(want.values()), 1)


def typeset(
    text: str,
    *,
    dpi: int = 150,
    points: float = 12,
    inches: tuple[float, float] = (5.83, 8.27),  # A5: a page of text, half the pixels of A4
    margin: float = 0.6,
) -> tuple[Image.Image, str]:
    """``text`` set on one page (grayscale, black on white) at ``dpi``, and the part of it that
    fits, as shown."""
    width, height = (round(side * dpi) for side in inches)
    size = round(points * dpi / 72)
    font = ImageFont.load_default(size=size)
    left = round(margin * dpi)
    columns = int((width - 2 * left) / (size * 0.52))
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    y, shown = left, []
    for para in text.split("\n\n"):
        for line in textwrap.wrap(para, columns):
            if y + size * 1.4 > height - left:
                return page, " ".join(shown)
            draw.text((left, y), line, fill=0, font=font)
            shown.append(line)
            y += int(size * 1.4)
        y += int(size * 0.7)
    return page, " ".join(shown)


def scanned_pdf(*pages: Image.Image, dpi: int = 150) -> bytes:
    """An image-only PDF of ``pages`` (what a scanner writes): no text layer at all."""
    out = io.BytesIO()
    pages[0].save(out, format="PDF", save_all=True, append_images=list(pages[1:]), resolution=dpi)
    return out.getvalue()


def mixed_pdf(text_page: str, scan: Image.Image, dpi: int = 150) -> bytes:
    """Page 1 with ``text_page`` as a text layer (Helvetica, pypdf), page 2 the scan."""
    writer = PdfWriter()
    for data in (hostile.pdf_bytes([hostile.text_op(text_page)]), scanned_pdf(scan, dpi=dpi)):
        for page in PdfReader(io.BytesIO(data)).pages:
            writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def screenshot(
    text: str, *, px: int = 16, size: tuple[int, int] = (1000, 420)
) -> tuple[bytes, str]:
    """A PNG "screenshot": ``text`` in dark grey on an off-white RGB window, and what it shows."""
    image = Image.new("RGB", size, (248, 248, 246))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=px)
    y, shown = 12, []
    for para in text.split("\n\n"):
        for line in textwrap.wrap(para, int((size[0] - 24) / (px * 0.52))):
            if y + px * 1.5 > size[1]:
                break
            draw.text((12, y), line, fill=(34, 34, 34), font=font)
            shown.append(line)
            y += int(px * 1.5)
        y += px // 2
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue(), " ".join(shown)


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


# ---- hostile images ------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, rows: int = 1) -> bytes:
    """A well-formed PNG header for a ``width`` x ``height`` 1-bit image whose data holds only
    ``rows`` rows: with a large size, a decompression bomb's header; with a small one, a file
    that lies about how much it holds."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    raw = (b"\x00" + b"\xff" * ((width + 7) // 8)) * rows
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def tiff_with_pages(pages: int, size: tuple[int, int] = (16, 16)) -> bytes:
    """A TIFF of ``pages`` small blank pages (a few bytes each, compressed)."""
    frames = [Image.new("L", size, 255) for _ in range(pages)]
    return encoded(
        frames[0], "TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw"
    )
