"""Extract stage: document bytes in, normalised plain text out.

Supported types are PDF (pypdf), DOCX (python-docx), Markdown and plain text. The type is decided
from the content first and the file name second, so a mislabelled upload is either read correctly or
refused with a message that says what it is.

Every failure is raised as a :class:`~app.errors.PermanentError` subclass with ``stage="extract"``;
retrying never helps an unreadable file.

::

    extract(data, file_name)
    ├── detect_type()        content sniffing, then extension, then "does it look like text"
    ├── _extract_pdf()       page by page; page offsets kept for ``ExtractedText.page_at``
    ├── _extract_docx()      body paragraphs and tables in document order
    └── _extract_plain()     BOM / UTF-8 / charset detection, then as-is (Markdown is not rendered)
"""

from __future__ import annotations

import bisect
import io
import logging
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import charset_normalizer
import docx
from lxml import etree
from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, LimitReachedError

from app.errors import (
    CorruptDocument,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    PermanentError,
    UnsupportedFormat,
)

__all__ = [
    "DOCX_MAX_ENTRIES",
    "DOCX_MAX_RATIO",
    "DOCX_MAX_UNCOMPRESSED_BYTES",
    "SUPPORTED_TYPES",
    "ExtractedText",
    "detect_type",
    "extract",
    "normalize_text",
]

logger = logging.getLogger(__name__)

STAGE = "extract"

#: Content-type keys the pipeline understands, mapped to their MIME types.
SUPPORTED_TYPES: dict[str, str] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "markdown": "text/markdown",
    "text": "text/plain",
}

_EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
}
_TEXT_EXTENSIONS = frozenset(
    ext for ext, kind in _EXTENSIONS.items() if kind in ("markdown", "text")
)

_PDF_MAGIC = b"%PDF-"
# Acrobat accepts the header anywhere in the first 1024 bytes (PDF 1.7 reference, implementation
# note 13), and real files with leading junk exist.
_PDF_HEADER_WINDOW = 1024
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# A password-protected DOCX is not a ZIP but an OLE2 container holding this stream (MS-OFFCRYPTO).
_OLE2_ENCRYPTION_INFO = "EncryptionInfo".encode("utf-16-le")

# Formats people upload by mistake; naming them makes the refusal message useful.
_KNOWN_BINARY: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"{\\rtf", "an RTF document"),
    # A password-protected DOCX is an OLE2 file too; at upload only its head is seen, so the
    # message names both (extract() itself tells them apart).
    (
        _OLE2_MAGIC,
        "a legacy Microsoft Office file (.doc/.xls/.ppt) or a password-protected Office document",
    ),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "an ELF executable"),
)

_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian BOM starts with the UTF-16 one.
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)

# Our own heuristic, not a standard: real text (even Kuhn's malformed-UTF-8 stress test, about 2 %
# replacement characters) stays far below it, while binary data decoded as text is mostly control
# and replacement characters.
_MAX_BINARY_SHARE = 0.10

# Controls that real text does not contain, plus the replacement character a failed decode leaves.
# Tab, the line breaks, form feed and ESC (ANSI colours in logs) are not counted.
_BINARY_CHARS = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f\ufffd]")
_BINARY_BYTES = frozenset(range(0x20)) - frozenset(b"\t\n\v\f\r\x1b")

_REASON_MAX_CHARS = 200

# See _mostly_utf8 for where 20 comes from.
_UTF8_MIN_VALID_PER_INVALID = 20

#: Defaults of :func:`extract`'s limits; the pipeline passes the settings' values
#: (``max_pages``, ``max_document_chars``).
DEFAULT_MAX_PAGES = 5000
DEFAULT_MAX_CHARS = 20_000_000

# Zip-bomb guards for DOCX, checked on the ZIP's central directory before any part is inflated.
# Our limits, not a standard: the largest real DOCX of the test corpus (an 872-page handbook)
# holds 70 entries and 5.6 MB, and no part of any corpus file compresses better than 18:1.
#: Most entries a DOCX may hold.
DOCX_MAX_ENTRIES = 10_000
#: Largest total uncompressed size of a DOCX's entries, bytes (200 MiB).
DOCX_MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
#: Highest compression ratio of one entry larger than :data:`_DOCX_RATIO_FLOOR_BYTES`
#: (deflate tops out near 1032:1, which only degenerate input reaches).
DOCX_MAX_RATIO = 100
# Small parts may be all-alike (a 100 kB run of zero bytes) without being a threat.
_DOCX_RATIO_FLOOR_BYTES = 1024 * 1024
# Entries are inflated in pieces of this size when checked (bounded memory whatever they claim).
_ZIP_READ_BYTES = 1024 * 1024


# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------

_NEWLINES = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# C0 and C1 controls except \t and the line-break ones (\n \v \f \r NEL), DEL, and lone
# surrogates: PostgreSQL text cannot hold NUL and UTF-8 cannot encode surrogates.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff]")
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
    text = _CONTROLS.sub("", text)
    text = _NEWLINES.sub("\n", text)
    text = _LIGATURE.sub(lambda match: _LIGATURE_EXPANSIONS[match.group()], text)
    text = _SPACES.sub(" ", text)
    text = _TRAILING_SPACE.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


# --------------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Type detection
# --------------------------------------------------------------------------------------------------


def _unsupported_message(what: str) -> str:
    kinds = ", ".join(f"{key} ({mime})" for key, mime in SUPPORTED_TYPES.items())
    return f"unsupported file type: {what}; docvec reads {kinds}"


def _extension(file_name: str) -> str:
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    if "." not in base.lstrip("."):
        return ""
    return "." + base.rsplit(".", 1)[-1].lower()


def _bomless_utf16(data: bytes) -> str | None:
    """Guess BOM-less UTF-16 from where the NUL bytes sit (Latin text: every other byte)."""
    pairs = len(data) // 2
    if pairs < 2:
        return None
    zeros_even = data[0 : 2 * pairs : 2].count(0)
    zeros_odd = data[1 : 2 * pairs : 2].count(0)
    # Thresholds are ours: mostly-Latin UTF-16 has a NUL in well over half the code units, and
    # the other half of the bytes almost never is NUL.
    if zeros_odd >= 0.4 * pairs and zeros_even <= 0.02 * pairs:
        return "utf-16-le"
    if zeros_even >= 0.4 * pairs and zeros_odd <= 0.02 * pairs:
        return "utf-16-be"
    return None


def _binary_share(text: str) -> float:
    if not text:
        return 0.0
    return len(_BINARY_CHARS.findall(text)) / len(text)


def _looks_like_text(head: bytes) -> bool:
    if any(head.startswith(bom) for bom, _ in _BOMS):
        return True
    if b"\x00" in head:
        return _bomless_utf16(head) is not None
    # Bytes >= 0x80 are legal in some 8-bit code page, so only control bytes count against text.
    bad = sum(1 for byte in head if byte in _BINARY_BYTES)
    return not head or bad / len(head) <= _MAX_BINARY_SHARE


def detect_type(data_head: bytes, file_name: str) -> str:
    """Decide which extractor reads a file, from its first bytes and its name.

    Content wins over the name: a PDF header within the first 1024 bytes means PDF (unless the
    name says Markdown/text and the header is not at offset 0 — a Markdown file may quote one); a
    ZIP whose name ends in ``.docx`` or whose first entries live under ``word/`` means DOCX;
    recognised non-document formats (images, RTF, legacy Office, archives) are refused whatever
    their name. Then the extension decides (``.pdf``, ``.docx``, ``.md``/``.markdown``,
    ``.txt``/``.text``; case-insensitive); a file that claims PDF or DOCX but is not one is left
    to the parser, which reports it corrupt. With no known extension, content that looks like text
    (a BOM, or no NUL bytes and few control bytes) is plain text.

    Args:
        data_head: the file's first bytes (at least 1024 recommended; the whole file is fine).
        file_name: the original file name; only its extension is used.

    Returns:
        A key of :data:`SUPPORTED_TYPES`.

    Raises:
        UnsupportedFormat: anything else; the message lists the supported types.
    """
    ext = _extension(file_name)
    pdf_at = data_head.find(_PDF_MAGIC, 0, _PDF_HEADER_WINDOW)
    if pdf_at == 0 or (pdf_at > 0 and ext not in _TEXT_EXTENSIONS):
        return "pdf"
    if data_head.startswith(_ZIP_MAGICS):
        if ext == ".docx" or b"word/" in data_head:
            return "docx"
        raise UnsupportedFormat(
            _unsupported_message("a ZIP archive that is not a Word document (.docx)"), stage=STAGE
        )
    for magic, what in _KNOWN_BINARY:
        if data_head.startswith(magic):
            raise UnsupportedFormat(_unsupported_message(what), stage=STAGE)
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if _looks_like_text(data_head):
        return "text"
    shown = f"'{ext}' file" if ext else "file without an extension"
    raise UnsupportedFormat(_unsupported_message(f"binary {shown}"), stage=STAGE)


# --------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------


def extract(
    data: bytes,
    file_name: str,
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> ExtractedText:
    """Extract the normalised text of a document.

    This runs the parsers in the calling process with no time or memory bound: the pipeline calls
    it through :func:`app.pipeline.budget.extract_within_budget`, which adds both.

    Args:
        data: the whole file.
        file_name: the original file name (used for its extension and in messages).
        max_pages: PDFs with more pages are refused.
        max_chars: documents whose normalised text is longer (characters) are refused; a PDF is
            refused at the first page past the limit, before the rest is read.

    Returns:
        An :class:`ExtractedText` with non-empty ``text``; PDFs also carry their page map.

    Raises:
        UnsupportedFormat: not a PDF, DOCX, Markdown or text file (also: text that is mostly
            control characters, i.e. binary data).
        EncryptedDocument: a PDF the empty password does not open, or a password-protected DOCX.
        CorruptDocument: the file claims a supported type but its parser fails on it.
        EmptyDocument: no text (empty or whitespace-only file, image-only PDF).
        DocumentTooLarge: a PDF with more than ``max_pages`` pages, text longer than
            ``max_chars``, a PDF stream over one of pypdf's safety limits, or a DOCX whose ZIP
            is a bomb (see :data:`DOCX_MAX_ENTRIES`, :data:`DOCX_MAX_UNCOMPRESSED_BYTES`,
            :data:`DOCX_MAX_RATIO`).

    All raised errors carry ``stage="extract"``. ``MemoryError`` propagates unchanged (also when
    lxml reports a failed allocation as a parse error).
    """
    if data.startswith(_OLE2_MAGIC) and _OLE2_ENCRYPTION_INFO in data:
        raise EncryptedDocument(
            "the Office document is encrypted with a password; docvec cannot open it "
            "(remove the password and upload again)",
            stage=STAGE,
        )
    content_type = detect_type(data[:4096], file_name)
    if content_type == "pdf":
        return _extract_pdf(data, max_pages=max_pages, max_chars=max_chars)
    if content_type == "docx":
        return _extract_docx(data, file_name, max_chars=max_chars)
    return _extract_plain(data, content_type, max_chars=max_chars)


def _check_length(text: str, max_chars: int) -> None:
    if len(text) > max_chars:
        raise DocumentTooLarge(
            f"the document has {len(text):,} characters of text; the limit is {max_chars:,}",
            stage=STAGE,
        )


def _reason(exc: BaseException) -> str:
    """A short, single-line description of a parser exception for a user-facing message."""
    # KeyError's str() is the repr of its key, quotes included.
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return _shorten(message) or type(exc).__name__


def _shorten(message: str) -> str:
    """``message`` on one line (whitespace runs and control characters become one space), cut to
    200 characters."""
    message = " ".join(_CONTROLS.sub(" ", message).split())
    if len(message) > _REASON_MAX_CHARS:
        message = message[: _REASON_MAX_CHARS - 1] + "…"
    return message


# ---- PDF -----------------------------------------------------------------------------------------


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


def _extract_pdf(data: bytes, *, max_pages: int, max_chars: int) -> ExtractedText:
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
            f"the PDF is too large or complex to read safely{where}: {_reason(exc)}", stage=STAGE
        )
    return CorruptDocument(f"corrupt PDF{where}: {_reason(exc)}", stage=STAGE)


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
            logger.warning("skipping unreadable PDF page %d: %s", index + 1, _reason(exc))
            failures.append((index + 1, exc))
            continue
        except Exception as exc:
            # One bad page (broken font, bad content stream) should not cost the whole document.
            logger.warning("skipping unreadable PDF page %d: %s", index + 1, _reason(exc))
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
                f"other {readable} hold no text (page {page}: {_reason(first)})"
                if readable
                else f"corrupt PDF: no page could be read (page {page}: {_reason(first)})",
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
            f"PDF is encrypted with an algorithm this installation cannot decrypt ({_reason(exc)})",
            stage=STAGE,
        ) from exc
    except Exception as exc:
        raise EncryptedDocument(
            f"PDF is encrypted and could not be decrypted ({_reason(exc)})", stage=STAGE
        ) from exc
    if result == PasswordType.NOT_DECRYPTED:
        raise EncryptedDocument(
            "PDF is encrypted with a password; docvec cannot open it "
            "(remove the password and upload again)",
            stage=STAGE,
        )


# ---- DOCX ----------------------------------------------------------------------------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_W_P = _W + "p"
_W_TBL = _W + "tbl"
_W_TR = _W + "tr"
_W_TC = _W + "tc"
# Wrappers whose children belong to the enclosing container: content controls and custom XML.
_W_SDT = _W + "sdt"
_W_SDT_CONTENT = _W + "sdtContent"
_W_CUSTOM_XML = _W + "customXml"
_STRICT_OOXML_MARK = b"purl.oclc.org/ooxml/officeDocument"
_NOT_WORD = re.compile(r"is not a Word file, (content type is '[^']*')")


def _extract_docx(data: bytes, file_name: str, *, max_chars: int) -> ExtractedText:
    _check_docx_zip(data, file_name)
    try:
        document = docx.Document(io.BytesIO(data))
        raw = _docx_body(document.element.body)
    except MemoryError:
        raise
    except etree.Error as exc:
        # libxml2 reports a failed allocation as a parse error ("Memory allocation failed").
        if "memory" in str(exc).lower():
            raise MemoryError(str(exc)) from exc
        raise CorruptDocument(f"corrupt or unsupported DOCX: {_reason(exc)}", stage=STAGE) from exc
    except zipfile.BadZipFile as exc:
        raise CorruptDocument(_docx_not_zip_message(file_name, exc), stage=STAGE) from exc
    except KeyError as exc:
        raise CorruptDocument(_docx_key_error_message(data, exc), stage=STAGE) from exc
    except ValueError as exc:
        # python-docx names the BytesIO object in this message; say what the package is instead.
        match = _NOT_WORD.search(str(exc))
        reason = f"the package is not a Word document ({match[1]})" if match else _reason(exc)
        raise CorruptDocument(f"corrupt or unsupported DOCX: {reason}", stage=STAGE) from exc
    except Exception as exc:
        raise CorruptDocument(f"corrupt or unsupported DOCX: {_reason(exc)}", stage=STAGE) from exc
    text = normalize_text(raw)
    if not text:
        raise EmptyDocument("no extractable text in the DOCX body", stage=STAGE)
    _check_length(text, max_chars)
    return ExtractedText(
        text=text, page_starts=None, page_numbers=None, page_count=None, content_type="docx"
    )


def _check_docx_zip(data: bytes, file_name: str) -> None:
    """Refuse a DOCX that is a zip bomb, before python-docx inflates any of it.

    The central directory is checked against :data:`DOCX_MAX_ENTRIES`,
    :data:`DOCX_MAX_UNCOMPRESSED_BYTES` and :data:`DOCX_MAX_RATIO`; then every entry is inflated
    in 1 MiB pieces and dropped, which proves the declared sizes and CRCs true with bounded memory
    (an entry that inflates past its declared size fails its CRC).

    Raises:
        DocumentTooLarge: over one of the limits.
        CorruptDocument: not a readable ZIP, or an entry that does not inflate to what it claims.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise CorruptDocument(_docx_not_zip_message(file_name, exc), stage=STAGE) from exc
    except MemoryError:
        raise
    except Exception as exc:  # EOFError, OSError, ValueError on mangled headers
        raise CorruptDocument(
            f"corrupt or unsupported DOCX: not a readable ZIP archive ({_reason(exc)})",
            stage=STAGE,
        ) from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > DOCX_MAX_ENTRIES:
            raise DocumentTooLarge(
                f"the DOCX holds {len(infos):,} ZIP entries; the limit is {DOCX_MAX_ENTRIES:,}",
                stage=STAGE,
            )
        total = sum(info.file_size for info in infos)
        if total > DOCX_MAX_UNCOMPRESSED_BYTES:
            raise DocumentTooLarge(
                f"the DOCX would inflate to {total:,} bytes; the limit is "
                f"{DOCX_MAX_UNCOMPRESSED_BYTES:,} (a zip bomb?)",
                stage=STAGE,
            )
        for info in infos:
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > _DOCX_RATIO_FLOOR_BYTES and ratio > DOCX_MAX_RATIO:
                raise DocumentTooLarge(
                    f"the DOCX entry {_shorten(info.filename)!r} inflates "
                    f"{ratio:,.0f}:1; the limit is {DOCX_MAX_RATIO}:1 (a zip bomb?)",
                    stage=STAGE,
                )
        try:
            for info in infos:
                with archive.open(info) as entry:
                    while entry.read(_ZIP_READ_BYTES):
                        pass
        except MemoryError:
            raise
        except Exception as exc:  # BadZipFile (CRC), zlib.error, encrypted or unknown method
            raise CorruptDocument(
                f"corrupt or unsupported DOCX: {_reason(exc)}", stage=STAGE
            ) from exc


def _docx_not_zip_message(file_name: str, exc: Exception) -> str:
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    if base.startswith("~$"):
        return (
            "corrupt or unsupported DOCX: this is a Word lock file ('~$' name), not a document; "
            "upload the document itself"
        )
    return f"corrupt or unsupported DOCX: not a readable ZIP archive ({_reason(exc)})"


def _docx_key_error_message(data: bytes, exc: KeyError) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            rels = archive.read("_rels/.rels")
    except Exception:  # only the wording of the error is at stake here
        rels = b""
    if _STRICT_OOXML_MARK in rels:
        return (
            "corrupt or unsupported DOCX: 'Strict Open XML' documents are not supported; "
            "save it as a standard Word document (.docx) and upload again"
        )
    return f"corrupt or unsupported DOCX: {_reason(exc)}"


def _docx_children(element: Any) -> Iterator[Any]:
    """Child elements of a WordprocessingML container, with content controls unwrapped."""
    for child in element.iterchildren():
        tag = child.tag
        if tag == _W_SDT:
            content = child.find(_W_SDT_CONTENT)
            if content is not None:
                yield from _docx_children(content)
        elif tag == _W_CUSTOM_XML:
            yield from _docx_children(child)
        else:
            yield child


def _docx_blocks(container: Any) -> Iterator[tuple[bool, str]]:
    """``(is_table, text)`` for the paragraphs and tables of a body or cell, in document order."""
    for child in _docx_children(container):
        if child.tag == _W_P:
            # python-docx's CT_P.text renders runs and hyperlinks, tabs as \t and breaks as \n.
            yield False, child.text
        elif child.tag == _W_TBL:
            table = _docx_table(child)
            if table:
                yield True, table


def _docx_body(body: Any) -> str:
    """Paragraphs one per line; each table set off by blank lines as a paragraph of its own."""
    return "\n".join(f"\n{text}\n" if is_table else text for is_table, text in _docx_blocks(body))


def _docx_table(tbl: Any) -> str:
    """One line per row, cells joined by " | "; a merged cell is written once.

    Horizontally merged cells are a single ``w:tc`` (with ``gridSpan``); the continuation cells of
    a vertical merge (``vMerge`` without ``restart``) hold no text of their own and are skipped.
    """
    rows: list[str] = []
    for tr in _docx_children(tbl):
        if tr.tag != _W_TR:
            continue
        cells = [
            _docx_cell(tc)
            for tc in _docx_children(tr)
            if tc.tag == _W_TC and not _is_vmerge_continuation(tc)
        ]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _docx_cell(tc: Any) -> str:
    """A cell's paragraphs on one line, so that a row stays one line; nested tables keep theirs."""
    lines: list[str] = []
    words: list[str] = []
    for is_table, text in _docx_blocks(tc):
        if is_table:
            lines += [" ".join(words), text]
            words = []
        else:
            words += text.split()
    lines.append(" ".join(words))
    return "\n".join(line for line in lines if line)


def _is_vmerge_continuation(tc: Any) -> bool:
    tc_pr = tc.find(_W + "tcPr")
    if tc_pr is None:
        return False
    v_merge = tc_pr.find(_W + "vMerge")
    # An absent w:val means "continue" (ECMA-376 Part 1, the vMerge element).
    return v_merge is not None and v_merge.get(_W + "val", "continue") == "continue"


# ---- Markdown and plain text ---------------------------------------------------------------------


def _extract_plain(data: bytes, content_type: str, *, max_chars: int) -> ExtractedText:
    if not data:
        raise EmptyDocument("the file is empty", stage=STAGE)
    try:
        decoded = _decode_text(data)
    except MemoryError:
        raise
    except Exception as exc:  # charset detection on hostile bytes; never let it escape
        raise CorruptDocument(f"unreadable text file: {_reason(exc)}", stage=STAGE) from exc
    if _binary_share(decoded) > _MAX_BINARY_SHARE:
        raise UnsupportedFormat(
            _unsupported_message("binary data (mostly control characters), not text"), stage=STAGE
        )
    text = normalize_text(decoded)
    del decoded
    if not text:
        raise EmptyDocument("the file contains only whitespace", stage=STAGE)
    _check_length(text, max_chars)
    return ExtractedText(
        text=text, page_starts=None, page_numbers=None, page_count=None, content_type=content_type
    )


def _decode_text(data: bytes) -> str:
    """Decode text bytes: BOM, UTF-16 without BOM, strict UTF-8, mostly-UTF-8, detected charset."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    if b"\x00" in data:
        utf16 = _bomless_utf16(data)
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
