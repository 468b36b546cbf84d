"""What every reader of the extract stage shares: the result type and the wording of failures.

:class:`ExtractedText` is what :func:`~app.pipeline.extract.extract` returns whatever the format
(and what the budget's child process pickles back to its parent). :data:`STAGE` and the helpers
below keep the readers' errors alike: the stage name on every error, one length check, and parser
exceptions cut to one short line before they reach a user-facing message.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

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
        text: normalised full text (see :func:`normalize_text`); never empty.
        page_starts: PDF only: character offset into ``text`` where each contributing page's text
            begins, ascending; pages without text are absent. ``None`` for other types.
        page_numbers: PDF only: 1-based page number for each entry of ``page_starts``.
        page_count: PDF only: total number of pages in the file, including pages without text.
        content_type: a key of :data:`SUPPORTED_TYPES`.
    """

    text: str
    page_starts: list[int] | None
    page_numbers: list[int] | None
    page_count: int | None
    content_type: str

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
