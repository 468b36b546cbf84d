"""The PDF reader (pypdf): page by page, with the page map that ``ExtractedText.page_at`` uses.

A page whose text layer is empty, or nearly (fewer than ``ocr.min_page_chars`` characters that
are not whitespace: a scan's page number or stamp), is rendered with PDFium (pypdfium2) at
``ocr.dpi`` and read by OCR (``ocr.py``); its OCR text replaces the layer's when longer. Pages
with text are left alone, so a mixed PDF keeps its page numbers and character offsets; a page
pypdf cannot read is OCR'd too before it is given up. Without a usable OCR engine such pages are
skipped as before, and a PDF with no text at all fails with the reason OCR could not run.

Most of the rest sorts pypdf's failures into docvec's errors: a safety limit (too large) is told
apart from damage (corrupt); a page that fails (and that OCR cannot read either) is skipped, since
one broken font should not cost the document, unless it hit a safety limit, since indexing the
rest would hide the gap; the page and character limits apply before the rest is read; and a PDF
encrypted only to carry permission flags is opened with the empty password. pypdf's own per-file
warnings are kept out of the logs.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, LimitReachedError

from app.errors import (
    CorruptDocument,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    OcrUnavailable,
    PermanentError,
)
from app.pipeline.extract.base import STAGE, ExtractedText, explain
from app.pipeline.extract.normalize import normalize_text
from app.pipeline.extract.ocr import OcrOptions, Tesseract, visible_chars

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["extract_pdf"]

logger = logging.getLogger(__name__)


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """Hide pypdf's per-file warnings ("incorrect startxref pointer", ...) unless the application
    configured the ``pypdf`` logger itself: on malformed uploads they flood worker logs and the
    outcome is reported through our own errors anyway."""
    pypdf_logger = logging.getLogger("pypdf")
    if pypdf_logger.level != logging.NOTSET:
        yield
        return
    pypdf_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        pypdf_logger.setLevel(logging.NOTSET)


def extract_pdf(
    data: bytes, *, max_pages: int, max_chars: int, ocr: OcrOptions | None = None
) -> ExtractedText:
    """Read a PDF, OCR'ing its pages without text (see :func:`~app.pipeline.extract.extract`
    for the errors)."""
    with _quiet_pypdf():
        return _read_pdf(data, max_pages=max_pages, max_chars=max_chars, ocr=ocr or OcrOptions())


def _pdf_error(exc: Exception, where: str = "") -> PermanentError:
    """The docvec error for a pypdf failure.

    pypdf raises ``LimitReachedError`` both for its safety limits (a stream inflating past 75 MB,
    too many tokens in a content stream, a huge declared xref size) and for reference cycles; only
    the cycles ("Detected loop ...", "Detected cycle ...") mean the file is damaged.
    """
    if isinstance(exc, LimitReachedError) and not str(exc).startswith("Detected"):
        return DocumentTooLarge(
            f"the PDF is too large or complex to read safely{where}: {explain(exc)}", stage=STAGE
        )
    return CorruptDocument(f"corrupt PDF{where}: {explain(exc)}", stage=STAGE)


class _Scans:
    """The OCR side of one PDF: which pages need it, and their text, rendered with PDFium.

    PDFium opens the file only when a first page needs OCR. OCR that cannot run (no engine, a
    file PDFium cannot open) is noted once, and the pages that needed it are then skipped.
    """

    def __init__(self, data: bytes, options: OcrOptions) -> None:
        self.options = options
        self.engine = Tesseract(options)
        self.pages: list[int] = []
        #: Why OCR could not run on this PDF, if it could not.
        self.unavailable: str | None = None
        self._data = data
        self._document: Any = None

    def wanted(self, layer_text: str) -> bool:
        """Whether a page with this text layer is to be OCR'd."""
        mode = self.options.mode
        return mode == "force" or (
            mode == "auto" and visible_chars(layer_text) < self.options.min_page_chars
        )

    def better(self, scanned: str, layer_text: str) -> bool:
        """Whether a page's OCR text replaces its text layer: always when forced or when the
        layer is empty; else only when OCR read a page of text (``min_page_chars`` or more)
        longer than the layer. So a short heading or a line in a script the languages do not
        cover keeps its layer, where OCR would read it no better or as noise."""
        if self.options.mode == "force" or not layer_text:
            return True
        found = visible_chars(scanned)
        return found >= self.options.min_page_chars and found > visible_chars(layer_text)

    def read(self, index: int) -> str | None:
        """The OCR text of page ``index`` (0-based), ``""`` if it shows none, None if OCR could
        not run (:attr:`unavailable` says why).

        Raises:
            DocumentTooLarge: past ``max_pages`` of OCR, or the page over its time or memory.
            CorruptDocument: Tesseract failed on the page.
        """
        if self.unavailable is not None:
            return None
        status = self.engine.status()
        if not status.available:
            self.unavailable = status.reason
            logger.warning("PDF pages without a text layer are skipped: %s", status.reason)
            return None
        with self.engine.timed():
            rendered = self._render(index)
            if rendered is None:
                return None
            image, dpi = rendered
            try:
                return self.engine.read(image, page=index + 1, what="the PDF", dpi=dpi)
            except OcrUnavailable as exc:
                self.unavailable = exc.message
                return None

    def _render(self, index: int) -> tuple[Image, float] | None:
        """Page ``index`` in grayscale at ``dpi``, or at less for a page so large that it would
        pass ``max_image_pixels``; None (with :attr:`unavailable` set) if PDFium cannot open
        the file, or if the page does not render."""
        import pypdfium2

        if self._document is None:
            try:
                self._document = pypdfium2.PdfDocument(self._data)
            except MemoryError:
                raise
            except Exception as exc:
                self.unavailable = f"PDFium cannot open the file to render it ({explain(exc)})"
                return None
        page = self._document[index]
        try:
            width, height = page.get_size()
            if width <= 0 or height <= 0:
                return None
            scale = self.options.dpi / 72  # PDF user space: 72 units per inch
            if width * height * scale * scale > self.options.max_image_pixels:
                scale = math.sqrt(self.options.max_image_pixels / (width * height))
            bitmap = page.render(scale=scale, grayscale=True)
            # A copy: PIL shares the bitmap's buffer otherwise, and the bitmap goes with the page.
            return bitmap.to_pil().copy(), scale * 72
        except MemoryError:
            raise
        except Exception as exc:
            logger.warning("PDF page %d does not render for OCR: %s", index + 1, explain(exc))
            return None
        finally:
            page.close()

    def close(self) -> None:
        if self._document is not None:
            self._document.close()
            self._document = None


def _read_pdf(data: bytes, *, max_pages: int, max_chars: int, ocr: OcrOptions) -> ExtractedText:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
    except MemoryError:
        raise
    except Exception as exc:
        raise _pdf_error(exc) from exc

    if encrypted:
        _decrypt_with_empty_password(reader)

    try:
        page_count = len(reader.pages)
    except MemoryError:
        raise
    except Exception as exc:
        raise _pdf_error(exc) from exc
    if page_count == 0:
        raise EmptyDocument("no extractable text — the PDF has no pages", stage=STAGE)
    if page_count > max_pages:
        raise DocumentTooLarge(
            f"the PDF has {page_count} pages; the limit is {max_pages}", stage=STAGE
        )

    scans = _Scans(data, ocr)
    try:
        return _read_pages(reader, page_count, scans, max_chars=max_chars)
    finally:
        scans.close()


def _read_pages(
    reader: PdfReader, page_count: int, scans: _Scans, *, max_chars: int
) -> ExtractedText:
    parts: list[str] = []
    page_starts: list[int] = []
    page_numbers: list[int] = []
    failures: list[tuple[int, Exception]] = []
    offset = 0
    for index in range(page_count):
        failed: Exception | None = None
        raw = ""
        try:
            raw = reader.pages[index].extract_text()
        except MemoryError:
            raise
        except LimitReachedError as exc:
            # A page over a safety limit fails the document: indexing the rest would hide that
            # part of it is missing.
            error = _pdf_error(exc, f" (page {index + 1})")
            if isinstance(error, DocumentTooLarge):
                raise error from exc
            failed = exc
        except Exception as exc:
            # One bad page (broken font, bad content stream) should not cost the whole document.
            failed = exc
        page_text = normalize_text(raw or "")
        from_ocr = False
        if scans.wanted(page_text):
            scanned = scans.read(index)
            if scanned and scans.better(scanned, page_text):
                page_text, from_ocr = scanned, True
        if failed is not None and not from_ocr:
            logger.warning("skipping unreadable PDF page %d: %s", index + 1, explain(failed))
            failures.append((index + 1, failed))
            continue
        if not page_text:
            continue
        if parts:
            offset += 2  # the "\n\n" that joins pages
        page_starts.append(offset)
        page_numbers.append(index + 1)
        if from_ocr:
            scans.pages.append(index + 1)
        parts.append(page_text)
        offset += len(page_text)
        if offset > max_chars:
            raise DocumentTooLarge(
                f"the PDF has more than {max_chars:,} characters of text (passed at page "
                f"{index + 1} of {page_count}); the limit is {max_chars:,}",
                stage=STAGE,
            )

    if not parts:
        if failures:
            page, first = failures[0]
            readable = page_count - len(failures)
            raise CorruptDocument(
                f"corrupt PDF: {len(failures)} of {page_count} page(s) could not be read and the "
                f"other {readable} hold no text (page {page}: {explain(first)})"
                if readable
                else f"corrupt PDF: no page could be read (page {page}: {explain(first)})",
                stage=STAGE,
            ) from first
        raise _no_text(page_count, scans)
    return ExtractedText(
        text="\n\n".join(parts),
        page_starts=page_starts,
        page_numbers=page_numbers,
        page_count=page_count,
        content_type="pdf",
        ocr_pages=tuple(scans.pages),
        ocr_ms=round(scans.engine.seconds * 1000, 2) if scans.engine.seconds else None,
    )


def _no_text(page_count: int, scans: _Scans) -> PermanentError:
    """The error for a PDF none of whose pages gave text: OCR off, unavailable, or blind."""
    pages = f"the PDF has {page_count} page(s) without a text layer"
    if scans.options.mode == "off":
        return EmptyDocument(
            f"no extractable text — {pages}; OCR is off (DOCVEC_OCR__MODE=off)", stage=STAGE
        )
    if scans.unavailable is not None:
        return OcrUnavailable(
            f"no extractable text — {pages}, and OCR could not run: {scans.unavailable}",
            stage=STAGE,
        )
    return EmptyDocument(
        f"no text, even after OCR — {pages}, and Tesseract ({scans.options.languages}) found "
        "none on them",
        stage=STAGE,
    )


def _decrypt_with_empty_password(reader: PdfReader) -> None:
    """Open a PDF that is encrypted only to carry permission flags (the empty user password)."""
    try:
        result = reader.decrypt("")
    except MemoryError:
        raise
    except DependencyError as exc:
        raise EncryptedDocument(
            f"PDF is encrypted with an algorithm this installation cannot decrypt ({explain(exc)})",
            stage=STAGE,
        ) from exc
    except Exception as exc:
        raise EncryptedDocument(
            f"PDF is encrypted and could not be decrypted ({explain(exc)})", stage=STAGE
        ) from exc
    if result == PasswordType.NOT_DECRYPTED:
        raise EncryptedDocument(
            "PDF is encrypted with a password; docvec cannot open it "
            "(remove the password and upload again)",
            stage=STAGE,
        )
