"""Text normalisation (DESIGN §6): one spelling of line breaks, spaces and ligatures, no controls.

Every reader passes its raw text through :func:`normalize_text` before it is measured or joined,
so that chunk offsets computed on the result are stable and the text can be stored (PostgreSQL
``text`` holds no NUL, UTF-8 no lone surrogate). It lives apart from the readers because it is
format-blind and because the chunker's contract (``app.pipeline.chunk``) is stated against it.
"""

from __future__ import annotations

import re

__all__ = ["CONTROLS", "normalize_text"]

_NEWLINES = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# C0 and C1 controls except \t and the line-break ones (\n \v \f \r NEL), DEL, and lone
# surrogates: PostgreSQL text cannot hold NUL and UTF-8 cannot encode surrogates.
CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff]")
# Tab and every Unicode space separator (category Zs), NBSP and ideographic space included, so
# that a chunker splitting on " " sees them. The pattern matches only what must change (a run, or a
# single space that is not U+0020): leaving lone ASCII spaces alone keeps it fast on large texts.
_OTHER_SPACES = r"\t\xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
_SPACES = re.compile(rf"[ {_OTHER_SPACES}]{{2,}}|[{_OTHER_SPACES}]")
_TRAILING_SPACE = re.compile(r" \n")
_BLANK_LINES = re.compile(r"\n{3,}")
# pdfTeX and other typesetters emit Latin ligature code points (U+FB00-FB06); expanded, "Begriﬀ"
# matches a search for "Begriff".
_LIGATURE = re.compile("[\ufb00-\ufb06]")
_LIGATURE_EXPANSIONS = {
    "\ufb00": "ff",
    "\ufb01": "fi",
    "\ufb02": "fl",
    "\ufb03": "ffi",
    "\ufb04": "ffl",
    "\ufb05": "st",
    "\ufb06": "st",
}


def normalize_text(text: str) -> str:
    r"""Normalise extracted text (DESIGN §6) so that chunk offsets are stable and storable.

    - line endings ``\r\n``, ``\r``, U+2028, U+2029, NEL, vertical tab and form feed become ``\n``;
    - NUL, other C0/C1 control characters (except ``\n`` and ``\t``) and lone surrogates are
      removed;
    - Latin ligatures (U+FB00-FB06) are spelled out;
    - tabs and runs of spaces, including NBSP and other Unicode spaces, become one space;
    - spaces at the end of lines are removed; three or more newlines become two (paragraph breaks
      are kept); the whole text is stripped.

    The function is idempotent, and for non-empty normalised ``a`` and ``b``,
    ``a + "\n\n" + b`` is normalised too (pages and blocks are joined without renormalising).

    Args:
        text: any string.

    Returns:
        The normalised string (possibly empty).
    """
    # Controls go first so that "\r\x00\n" is one line break, not two.
    text = CONTROLS.sub("", text)
    text = _NEWLINES.sub("\n", text)
    text = _LIGATURE.sub(lambda match: _LIGATURE_EXPANSIONS[match.group()], text)
    text = _SPACES.sub(" ", text)
    text = _TRAILING_SPACE.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()
