"""The Markdown and plain-text reader: decode the bytes, refuse binary data, keep the text as is.

Markdown is not rendered (its markup is text a search should match). The work is in decoding:
a BOM, UTF-16 without one, strict UTF-8, UTF-8 with damaged bytes, and only then a detected 8-bit
charset, because charset detectors garble damaged UTF-8. Data that decodes mostly to control
characters is binary under a text name and refused.
"""

from __future__ import annotations

import re

import charset_normalizer

from app.errors import CorruptDocument, EmptyDocument, UnsupportedFormat
from app.pipeline.extract.base import STAGE, ExtractedText, check_length, explain
from app.pipeline.extract.detect import (
    BOMS,
    MAX_BINARY_SHARE,
    bomless_utf16,
    unsupported_message,
)
from app.pipeline.extract.normalize import normalize_text

__all__ = ["extract_plain"]

# Controls that real text does not contain, plus the replacement character a failed decode leaves.
# Tab, the line breaks, form feed and ESC (ANSI colours in logs) are not counted.
_BINARY_CHARS = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f\ufffd]")

# See _mostly_utf8 for where 20 comes from.
_UTF8_MIN_VALID_PER_INVALID = 20


def _binary_share(text: str) -> float:
    if not text:
        return 0.0
    return len(_BINARY_CHARS.findall(text)) / len(text)


def extract_plain(data: bytes, content_type: str, *, max_chars: int) -> ExtractedText:
    """Read Markdown or plain text; ``content_type`` (``"markdown"`` or ``"text"``) is passed
    through to the result."""
    if not data:
        raise EmptyDocument("the file is empty", stage=STAGE)
    try:
        decoded = _decode_text(data)
    except MemoryError:
        raise
    except Exception as exc:  # charset detection on hostile bytes; never let it escape
        raise CorruptDocument(f"unreadable text file: {explain(exc)}", stage=STAGE) from exc
    if _binary_share(decoded) > MAX_BINARY_SHARE:
        raise UnsupportedFormat(
            unsupported_message("binary data (mostly control characters), not text"), stage=STAGE
        )
    text = normalize_text(decoded)
    del decoded
    if not text:
        raise EmptyDocument("the file contains only whitespace", stage=STAGE)
    check_length(text, max_chars)
    return ExtractedText(
        text=text, page_starts=None, page_numbers=None, page_count=None, content_type=content_type
    )


def _decode_text(data: bytes) -> str:
    """Decode text bytes: BOM, UTF-16 without BOM, strict UTF-8, mostly-UTF-8, detected charset."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    if b"\x00" in data:
        utf16 = bomless_utf16(data)
        if utf16 is not None:
            return data.decode(utf16, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lenient = data.decode("utf-8", errors="replace")
    if _mostly_utf8(data, lenient):
        return lenient
    best = charset_normalizer.from_bytes(data).best()
    return str(best) if best is not None else lenient


def _mostly_utf8(data: bytes, lenient: str) -> bool:
    """UTF-8 with damaged bytes, as opposed to text in an 8-bit code page.

    Charset detectors guess a single-byte code page for damaged UTF-8 (for Kuhn's UTF-8 stress
    test charset_normalizer says ISO-8859-2) and so garble every valid multi-byte character.
    In 8-bit text a byte pair forms a valid UTF-8 sequence only by chance: measured on this
    project's corpus (Spanish, German, Russian, Greek and UDHR texts re-encoded in cp1252,
    Latin-1, cp1250, cp1251, KOI8-R, ISO-8859-7) at most 0.05 % as many valid sequences as
    invalid ones; the stress test has about 20 %. One valid per 20 invalid sits between the two.
    """
    replacements = lenient.count("\ufffd")
    invalid = replacements - data.count(b"\xef\xbf\xbd")
    ascii_chars = len(lenient.encode("ascii", errors="ignore"))
    valid_multibyte = len(lenient) - ascii_chars - replacements
    return valid_multibyte * _UTF8_MIN_VALID_PER_INVALID >= invalid
