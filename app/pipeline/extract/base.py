"""What every reader of the extract stage shares: the result type and the wording of failures.

:class:`ExtractedText` is what :func:`~app.pipeline.extract.extract` returns whatever the format
(and what the budget's child process pickles back to its parent). :data:`STAGE` and the helpers
below keep the readers' errors alike: the stage name on every error, one length check, and parser
exceptions cut to one short line before they reach a user-facing message.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from app.errors import DocumentTooLarge
from app.pipeline.extract.normalize import CONTROLS

__all__ = ["STAGE", "ExtractedText", "check_length", "explain", "shorten"]

#: The ``stage`` every error of this package carries.
STAGE = "extract"

_REASON_MAX_CHARS = 200


@dataclass(frozen=True)
class ExtractedText:
    """The text of one document, normalised, with its page map when the format has pages.

    Attributes:
        text: normalised full text (see :func:`normalize_text`); never empty, except for an
            image upload whose ``page_pictures`` were asked for and in which OCR found no text
            (it is found by what it shows).
        page_starts: PDF and images: character offset into ``text`` where each contributing
            page's text begins, ascending; pages without text are absent. ``None`` for other
            types.
        page_numbers: PDF and images: 1-based page number for each entry of ``page_starts``.
        page_count: PDF and images: total number of pages in the file, including pages without
            text.
        content_type: a key of :data:`SUPPORTED_TYPES`.
        ocr_pages: 1-based numbers of the pages whose text came from OCR, ascending (a PDF's
            scanned pages; every page of an image).
        ocr_ms: wall-clock milliseconds spent in OCR (rendering, decoding and Tesseract), part
            of the extraction's time; None when no page needed OCR.
        page_pictures: images, when the index has an image model: one PNG per page, at most
            ``image_embedding.max_side`` pixels a side (:mod:`~app.pipeline.extract.pictures`),
            for the image embedding model; empty otherwise.

    Images (PNG, JPEG, TIFF, WebP) have pages too: one per TIFF page, one for the others.
    """

    text: str
    page_starts: list[int] | None
    page_numbers: list[int] | None
    page_count: int | None
    content_type: str
    ocr_pages: tuple[int, ...] = ()
    # A timing, not content: two extractions of one file are equal whatever it took.
    ocr_ms: float | None = field(default=None, compare=False)
    page_pictures: tuple[bytes, ...] = field(default=(), repr=False)

    def page_at(self, char_offset: int) -> int | None:
        """Return the 1-based page that holds ``char_offset`` (an index into ``text``).

        The blank line joining two pages counts as part of the earlier page; offsets before the
        start or past the end are clamped to the first or last page with text.

        Returns:
            The page number, or ``None`` when the document has no pages (DOCX, Markdown, text).
        """
        if not self.page_starts or not self.page_numbers:
            return None
        index = bisect.bisect_right(self.page_starts, char_offset) - 1
        return self.page_numbers[max(index, 0)]

    def from_ocr(self, start_char: int, end_char: int) -> bool:
        """Whether any of ``text[start_char:end_char]`` came from OCR (a chunk that spans a page
        with a text layer and a scanned one counts as OCR'd: some of its text may be misread)."""
        if not self.ocr_pages or not self.page_starts or not self.page_numbers:
            return False
        first = max(bisect.bisect_right(self.page_starts, start_char) - 1, 0)
        last = max(bisect.bisect_right(self.page_starts, max(end_char - 1, start_char)) - 1, 0)
        scanned = set(self.ocr_pages)
        return any(number in scanned for number in self.page_numbers[first : last + 1])


def check_length(text: str, max_chars: int) -> None:
    """Refuse normalised text longer than ``max_chars`` (:class:`~app.errors.DocumentTooLarge`)."""
    if len(text) > max_chars:
        raise DocumentTooLarge(
            f"the document has {len(text):,} characters of text; the limit is {max_chars:,}",
            stage=STAGE,
        )


def explain(exc: BaseException) -> str:
    """A short, single-line description of a parser exception for a user-facing message."""
    # KeyError's str() is the repr of its key, quotes included.
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return shorten(message) or type(exc).__name__


def shorten(message: str) -> str:
    """``message`` on one line (whitespace runs and control characters become one space), cut to
    200 characters."""
    message = " ".join(CONTROLS.sub(" ", message).split())
    if len(message) > _REASON_MAX_CHARS:
        message = message[: _REASON_MAX_CHARS - 1] + "…"
    return message
