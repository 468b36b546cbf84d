"""The PDF reader (pypdf): page by page, with the page map that ``ExtractedText.page_at`` uses.

Most of it sorts pypdf's failures into docvec's errors: a safety limit (too large) is told apart
from damage (corrupt); a page that fails is skipped, since one broken font should not cost the
document, unless it hit a safety limit, since indexing the rest would hide the gap; the page and
character limits apply before the rest is read; and a PDF encrypted only to carry permission
flags is opened with the empty password. pypdf's own per-file warnings are kept out of the logs.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, LimitReachedError

from app.errors import (
    CorruptDocument,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    PermanentError,
)
from app.pipeline.extract.base import STAGE, ExtractedText, explain
from app.pipeline.extract.normalize import normalize_text

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


def extract_pdf(data: bytes, *, max_pages: int, max_chars: int) -> ExtractedText:
    """Read a PDF (see :func:`~app.pipeline.extract.extract` for the errors)."""
    with _quiet_pypdf():
        return _read_pdf(data, max_pages=max_pages, max_chars=max_chars)


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


def _read_pdf(data: bytes, *, max_pages: int, max_chars: int) -> ExtractedText:
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

    parts: list[str] = []
    page_starts: list[int] = []
    page_numbers: list[int] = []
    failures: list[tuple[int, Exception]] = []
    offset = 0
    for index in range(page_count):
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
            logger.warning("skipping unreadable PDF page %d: %s", index + 1, explain(exc))
            failures.append((index + 1, exc))
            continue
        except Exception as exc:
            # One bad page (broken font, bad content stream) should not cost the whole document.
            logger.warning("skipping unreadable PDF page %d: %s", index + 1, explain(exc))
            failures.append((index + 1, exc))
            continue
        page_text = normalize_text(raw or "")
        if not page_text:
            continue
        if parts:
            offset += 2  # the "\n\n" that joins pages
        page_starts.append(offset)
        page_numbers.append(index + 1)
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
        raise EmptyDocument(
            f"no extractable text — the PDF has {page_count} page(s) of images only; "
            "OCR is not enabled",
            stage=STAGE,
        )
    return ExtractedText(
        text="\n\n".join(parts),
        page_starts=page_starts,
        page_numbers=page_numbers,
        page_count=page_count,
        content_type="pdf",
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
