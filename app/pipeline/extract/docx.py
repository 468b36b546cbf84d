"""The DOCX reader (python-docx): body paragraphs and tables in document order.

Two jobs, both specific to the format. First, refuse a zip bomb from the ZIP's central directory
before python-docx inflates any part. Then walk the WordprocessingML body itself (content controls
unwrapped, merged cells written once, a table row kept on one line), because python-docx's
separate ``paragraphs`` and ``tables`` lists lose the order between the two. Failures of
python-docx and lxml are reworded into messages that say what is wrong with the file (a Word lock
file, Strict Open XML, a package that is not a Word document).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import docx
from lxml import etree

from app.errors import CorruptDocument, DocumentTooLarge, EmptyDocument
from app.pipeline.extract.base import STAGE, ExtractedText, check_length, explain, shorten
from app.pipeline.extract.normalize import normalize_text

__all__ = [
    "DOCX_MAX_ENTRIES",
    "DOCX_MAX_RATIO",
    "DOCX_MAX_UNCOMPRESSED_BYTES",
    "extract_docx",
]

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


def extract_docx(data: bytes, file_name: str, *, max_chars: int) -> ExtractedText:
    """Read a DOCX (see :func:`~app.pipeline.extract.extract` for the errors)."""
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
        raise CorruptDocument(f"corrupt or unsupported DOCX: {explain(exc)}", stage=STAGE) from exc
    except zipfile.BadZipFile as exc:
        raise CorruptDocument(_docx_not_zip_message(file_name, exc), stage=STAGE) from exc
    except KeyError as exc:
        raise CorruptDocument(_docx_key_error_message(data, exc), stage=STAGE) from exc
    except ValueError as exc:
        # python-docx names the BytesIO object in this message; say what the package is instead.
        match = _NOT_WORD.search(str(exc))
        reason = f"the package is not a Word document ({match[1]})" if match else explain(exc)
        raise CorruptDocument(f"corrupt or unsupported DOCX: {reason}", stage=STAGE) from exc
    except Exception as exc:
        raise CorruptDocument(f"corrupt or unsupported DOCX: {explain(exc)}", stage=STAGE) from exc
    text = normalize_text(raw)
    if not text:
        raise EmptyDocument("no extractable text in the DOCX body", stage=STAGE)
    check_length(text, max_chars)
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
            f"corrupt or unsupported DOCX: not a readable ZIP archive ({explain(exc)})",
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
                    f"the DOCX entry {shorten(info.filename)!r} inflates "
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
                f"corrupt or unsupported DOCX: {explain(exc)}", stage=STAGE
            ) from exc


def _docx_not_zip_message(file_name: str, exc: Exception) -> str:
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    if base.startswith("~$"):
        return (
            "corrupt or unsupported DOCX: this is a Word lock file ('~$' name), not a document; "
            "upload the document itself"
        )
    return f"corrupt or unsupported DOCX: not a readable ZIP archive ({explain(exc)})"


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
    return f"corrupt or unsupported DOCX: {explain(exc)}"


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
