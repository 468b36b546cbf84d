"""Tests of the extract stage: the real corpus (see its MANIFEST.md) and small files made here.

Nothing is mocked: pypdf, python-docx and charset-normalizer run on real bytes.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import random
import re
import time
import zipfile
from pathlib import Path

import docx
import pytest
from docx.document import Document as DocxDocument
from docx.oxml.ns import qn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from app.errors import (
    CorruptDocument,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    PermanentError,
    UnsupportedFormat,
)
from app.pipeline.chunk import Chunker
from app.pipeline.extract import (
    SUPPORTED_TYPES,
    ExtractedText,
    OcrOptions,
    detect_type,
    extract,
    normalize_text,
)
from tests.security import hostile

CORPUS = Path(
    os.environ.get(
        "DOCVEC_TEST_CORPUS", Path(__file__).resolve().parents[3] / "shared" / "data" / "corpus"
    )
)
CORPUS_FILES = (
    sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file())
    if CORPUS.is_dir()
    else []
)
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no test corpus at {CORPUS}")

# Every file not listed here must yield non-empty normalised text.
EXPECTED_ERRORS: dict[str, tuple[type[PermanentError], str]] = {
    "pdf/encrypted/libreoffice-writer-password.pdf": (
        EncryptedDocument,
        "encrypted with a password",
    ),
    "pdf/encrypted/password.pdf": (EncryptedDocument, "encrypted with a password"),
    # A picture without text: OCR (tests/pipeline/test_ocr.py) finds none in it.
    "pdf/scanned/grayscale-image.pdf": (EmptyDocument, "no text, even after OCR"),
    "pdf/broken/truncated-pdflatex-4-pages.pdf": (CorruptDocument, "corrupt PDF: "),
    "docx/broken/strict.docx": (CorruptDocument, "'Strict Open XML' documents are not supported"),
    "docx/broken/word-owner-lockfile.docx": (CorruptDocument, "not a readable ZIP archive"),
    "docx/broken/truncated-handbook-1p.docx": (CorruptDocument, "not a readable ZIP archive"),
    "text/edge_cases/empty.txt": (EmptyDocument, "the file is empty"),
    "text/edge_cases/fake-text-all-whitespace.txt": (EmptyDocument, "only whitespace"),
}

# Text that must appear, for files whose content says something about the extractor.
EXPECTED_SNIPPETS: dict[str, list[str]] = {
    # Broken xref: pypdf's lenient mode recovers it (strict mode would raise).
    "pdf/broken/issue-297.pdf": ["test example"],
    "pdf/broken/invalid-pdf-structure-pdfminer-one-page.pdf": ["Leadership in Cybersecurity"],
    # Permission flags only: opens with the empty user password.
    "pdf/encrypted/copy-protected.pdf": ["LayoutParser: A Unified Toolkit"],
    "pdf/encoding/embedded-cmap-cidfont.pdf": ["This text uses an embedded CMap"],
    "pdf/encoding/habibi.pdf": ["habibi", "حَبيبي"],
    "pdf/encoding/habibi-oneline-cmap.pdf": ["habibi", "حَبيبي"],
    "pdf/encoding/multilang.pdf": ["Hello World", "Привет, мир", "你好世界", "こんにちは世界"],
    "pdf/scanned/Seige_of_Vicksburg_Sample_OCR.pdf": ["VICKSBURG"],
    # pdfTeX ligatures (U+FB00 "ﬀ") are spelled out.
    "pdf/text/GeoTopo-komprimiert.pdf": ["Geometrie und Topologie", "Begriff"],
    "pdf/text/rotated-page-90.pdf": ["Hello World Test Text"],
    "docx/docx-tables.docx": ["Header Col 1 | Header Col 2", "Lorem ipsum | A link example"],
    "docx/libreoffice_conversion.docx": ["竞争性谈判采购公告"],
    "docx/eng_spa_mult.docx": ["All human beings are born free"],
    "text/edge_cases/fake-text-utf-16-le.txt": ["This is a test document to use for unit tests."],
    "text/edge_cases/fake-text-utf-16-be.txt": ["This is a test document to use for unit tests."],
    "text/edge_cases/umlauts-non-utf8.md": ["## können", "äöüß"],
    # Mostly-valid UTF-8 stays UTF-8: the valid Greek survives, the malformed bytes become U+FFFD.
    "text/edge_cases/UTF-8-test.txt": ["\u03ba\u1f79\u03c3\u03bc\u03b5", "\ufffd"],
    "text/txt/es/pg2000_don_quijote.txt": ["Don Quijote"],
}

# From MANIFEST.md (and, for the one-page files, from opening them).
EXPECTED_PAGE_COUNTS: dict[str, int] = {
    "pdf/broken/invalid-pdf-structure-pdfminer-one-page.pdf": 2,
    "pdf/encrypted/copy-protected.pdf": 2,
    "pdf/scanned/Seige_of_Vicksburg_Sample_OCR.pdf": 6,
    "pdf/text/GeoBase_NHNC1_Data_Model_UML_EN.pdf": 19,
    "pdf/text/GeoTopo-komprimiert.pdf": 117,
    "pdf/text/layout-parser-paper-fast.pdf": 2,
    "pdf/text/multi-column-2p.pdf": 2,
    "pdf/text/multicolumn.pdf": 3,
    "pdf/text/pdflatex-4-pages.pdf": 4,
    "pdf/text/pdflatex-outline.pdf": 4,
    "pdf/text/crazyones-pdfa.pdf": 1,
    "pdf/text/google-doc-document.pdf": 1,
    "pdf/text/rotated-page-90.pdf": 1,
}

_TYPE_BY_SUFFIX = {".pdf": "pdf", ".docx": "docx", ".md": "markdown", ".txt": "text"}
_PROBLEM_CHARS = re.compile(r"[\r\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


@functools.cache
def _corpus_outcome(rel: str) -> ExtractedText | PermanentError:
    """Extract a corpus file once per session (GeoTopo alone takes seconds)."""
    path = CORPUS / rel
    try:
        return extract(path.read_bytes(), path.name)
    except PermanentError as exc:
        return exc


def _corpus_text(rel: str) -> ExtractedText:
    outcome = _corpus_outcome(rel)
    assert isinstance(outcome, ExtractedText), f"{rel}: {outcome!r}"
    return outcome


def _assert_normalized(text: str) -> None:
    assert normalize_text(text) == text
    assert text == text.strip()
    assert "\n\n\n" not in text
    assert "  " not in text
    assert " \n" not in text
    assert "\t" not in text
    assert not _PROBLEM_CHARS.search(text)
    text.encode("utf-8")  # no lone surrogates


# ---- the corpus ----------------------------------------------------------------------------------


@needs_corpus
def test_corpus_expectations_name_real_files() -> None:
    for rel in [*EXPECTED_ERRORS, *EXPECTED_SNIPPETS, *EXPECTED_PAGE_COUNTS]:
        assert (CORPUS / rel).is_file(), rel


@needs_corpus
@pytest.mark.parametrize("rel", CORPUS_FILES)
def test_corpus_file(rel: str) -> None:
    outcome = _corpus_outcome(rel)
    if rel in EXPECTED_ERRORS:
        error_type, message = EXPECTED_ERRORS[rel]
        assert type(outcome) is error_type, f"{rel}: {outcome!r}"
        assert message in str(outcome)
        assert outcome.stage == "extract"
        return

    assert isinstance(outcome, ExtractedText), f"{rel}: {outcome!r}"
    assert outcome.text
    _assert_normalized(outcome.text)
    assert outcome.content_type == _TYPE_BY_SUFFIX[Path(rel).suffix]
    for snippet in EXPECTED_SNIPPETS.get(rel, []):
        assert snippet in outcome.text, f"{rel}: {snippet!r} missing"

    if outcome.content_type == "pdf":
        assert outcome.page_starts is not None
        assert outcome.page_numbers is not None
        assert outcome.page_count is not None
        assert outcome.page_count == EXPECTED_PAGE_COUNTS.get(rel, outcome.page_count)
        assert len(outcome.page_starts) == len(outcome.page_numbers) >= 1
        assert outcome.page_starts[0] == 0
        assert outcome.page_starts == sorted(set(outcome.page_starts))
        assert outcome.page_numbers == sorted(set(outcome.page_numbers))
        assert outcome.page_numbers[0] >= 1
        assert outcome.page_numbers[-1] <= outcome.page_count
        for start in outcome.page_starts[1:]:
            assert outcome.text[start - 2 : start] == "\n\n"
            assert not outcome.text[start].isspace()
    else:
        assert outcome.page_starts is None
        assert outcome.page_numbers is None
        assert outcome.page_count is None
        assert outcome.page_at(0) is None


@needs_corpus
def test_pdf_page_map_matches_each_page() -> None:
    rel = "pdf/text/pdflatex-4-pages.pdf"
    result = _corpus_text(rel)
    assert result.page_count == 4
    assert result.page_numbers == [1, 2, 3, 4]
    assert result.page_starts is not None

    reader = PdfReader(CORPUS / rel)
    ends = [*(start - 2 for start in result.page_starts[1:]), len(result.text)]
    for index, (start, end) in enumerate(zip(result.page_starts, ends, strict=True)):
        assert result.text[start:end] == normalize_text(reader.pages[index].extract_text())
        assert result.page_at(start) == index + 1
        assert result.page_at(end - 1) == index + 1
    assert result.page_at(0) == 1
    assert result.page_at(len(result.text) - 1) == 4
    # The "\n\n" between two pages belongs to the earlier page.
    assert result.page_at(result.page_starts[2] - 1) == 2
    # Out-of-range offsets clamp rather than fail.
    assert result.page_at(-5) == 1
    assert result.page_at(len(result.text) + 100) == 4


@needs_corpus
def test_long_pdf_page_map() -> None:
    result = _corpus_text("pdf/text/GeoTopo-komprimiert.pdf")
    assert result.page_count == 117
    assert result.page_numbers == list(range(1, 118))  # every page of these notes has text
    assert result.page_starts is not None
    for number in (1, 2, 58, 117):
        assert result.page_at(result.page_starts[number - 1]) == number
    assert result.page_at(len(result.text) - 1) == 117


@needs_corpus
def test_pdf_over_page_limit_is_too_large() -> None:
    data = (CORPUS / "pdf/text/pdflatex-4-pages.pdf").read_bytes()
    with pytest.raises(DocumentTooLarge, match="4 pages; the limit is 3") as info:
        extract(data, "pdflatex-4-pages.pdf", max_pages=3)
    assert info.value.stage == "extract"
    assert extract(data, "pdflatex-4-pages.pdf", max_pages=4).page_count == 4


@needs_corpus
def test_pdf_extraction_leaves_pypdf_logger_as_it_was() -> None:
    pypdf_logger = logging.getLogger("pypdf")
    before = pypdf_logger.level
    extract((CORPUS / "pdf/broken/issue-297.pdf").read_bytes(), "issue-297.pdf")
    assert pypdf_logger.level == before


@needs_corpus
def test_docx_tables_join_cells_and_write_merged_cells_once() -> None:
    text = _corpus_text("docx/docx-tables.docx").text
    # Nested table rows follow the row of the cell holding them.
    assert "a | >b< | c\nd | e | f\ng&t | h | i\nj | k | l" in text
    # Merged cells: "b" spans two columns, "a" and "d" two rows, "e" two columns.
    assert "a | b\nc | d\ne" in text
    assert "b | b" not in text
    # A table is its own paragraph.
    assert "Simple uniform table\n\nHeader Col 1" in text


@needs_corpus
def test_docx_body_only_headers_and_footers_excluded() -> None:
    assert _corpus_text("docx/docx-hdrftr.docx").text == "Main document"


@needs_corpus
def test_long_docx_is_complete() -> None:
    result = _corpus_text("docx/handbook-872p.docx")
    # MANIFEST: about 821k characters before normalisation.
    assert 780_000 < len(result.text) < 830_000


@needs_corpus
def test_bom_and_crlf_are_gone_from_don_quijote() -> None:
    text = _corpus_text("text/txt/es/pg2000_don_quijote.txt").text
    assert text.startswith("The Project Gutenberg eBook of Don Quijote")
    assert "\ufeff" not in text
    assert "\r" not in text


@needs_corpus
@pytest.mark.parametrize("rel", ["text/txt/rfc1035.txt", "text/txt/rfc3986.txt"])
def test_rfc_form_feeds_and_crlf_are_gone(rel: str) -> None:
    assert b"\x0c" in (CORPUS / rel).read_bytes()
    text = _corpus_text(rel).text
    assert "\x0c" not in text
    assert "\r" not in text


# ---- type detection ------------------------------------------------------------------------------

_DOCX_HEAD = b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 22 + b"word/document.xml"


@pytest.mark.parametrize(
    ("head", "name", "expected"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "report.pdf", "pdf"),
        (b"%PDF-1.4\n", "no-extension", "pdf"),
        (b"%PDF-1.4\n", "mislabelled.docx", "pdf"),
        (b"\x00\x00junk before the header %PDF-1.4\n", "x.bin", "pdf"),
        (_DOCX_HEAD, "upload", "docx"),
        (b"PK\x03\x04" + b"\x00" * 26 + b"[Content_Types].xml", "Letter.DOCX", "docx"),
        (b"# Title\n", "README.md", "markdown"),
        (b"# Title\n", "notes.markdown", "markdown"),
        (b"plain", "a.txt", "text"),
        (b"plain", "a.TEXT", "text"),
        (b"Some text about PDFs: %PDF-1.7 starts them.\n", "about-pdf.md", "markdown"),
        (b"reStructuredText\n================\n", "index.rst", "text"),
        (b"no extension at all\n", "LICENSE", "text"),
        (b"", "empty", "text"),
        (b"\xff\xfeh\x00i\x00", "utf16.log", "text"),
        (b"h\x00e\x00l\x00l\x00o\x00 \x00w\x00o\x00r\x00l\x00d\x00", "utf16.log", "text"),
        (b"caf\xe9 cr\xe8me\n", "latin1.csv", "text"),
        # Claims a supported type without its content: the parser reports it corrupt later.
        (b"not really a pdf", "fake.pdf", "pdf"),
        (b"\x00\x01\x02garbage", "fake.docx", "docx"),
    ],
)
def test_detect_type(head: bytes, name: str, expected: str) -> None:
    assert detect_type(head, name) == expected
    assert expected in SUPPORTED_TYPES


@pytest.mark.parametrize(
    ("head", "name", "what"),
    [
        (b"GIF89a\x01\x00\x01\x00", "scan.pdf", "GIF image"),
        (b"Plain text under an image's name.\n", "photo.png", "named '.png'"),
        (b"II+\x00\x08\x00\x00\x00", "scan.tif", "BigTIFF image"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 40, "old.doc", "legacy Microsoft Office"),
        (b"{\\rtf1\\ansi hello}", "letter.rtf", "RTF document"),
        (b"PK\x03\x04" + b"\x00" * 26 + b"xl/workbook.xml", "sheet.xlsx", "ZIP archive"),
        (b"PK\x03\x04" + b"\x00" * 26 + b"data.csv", "archive.zip", "ZIP archive"),
        (bytes(range(32)) * 8, "blob.bin", "binary '.bin' file"),
        (bytes(range(32)) * 8, "blob", "binary file without an extension"),
    ],
)
def test_detect_type_refuses(head: bytes, name: str, what: str) -> None:
    with pytest.raises(UnsupportedFormat) as info:
        detect_type(head, name)
    message = str(info.value)
    assert what in message
    for kind in SUPPORTED_TYPES:
        assert kind in message
    assert info.value.stage == "extract"


# ---- small files made here -----------------------------------------------------------------------


def test_text_with_nul_bytes_and_crlf_is_normalized() -> None:
    data = b"Hello\x00 world\r\n\r\n\r\n\r\nSecond\tline  \r\nthird\x0cpage\r\n"
    result = extract(data, "notes.txt")
    assert result.text == "Hello world\n\nSecond line\nthird\npage"
    assert result.content_type == "text"
    assert (result.page_starts, result.page_numbers, result.page_count) == (None, None, None)
    assert result.page_at(3) is None


def test_markdown_source_is_kept() -> None:
    source = "# Title\n\n* item **bold**\n\n```python\nprint('x')\n```\n"
    result = extract(source.encode(), "doc.md")
    assert result.content_type == "markdown"
    assert result.text == source.strip()


def test_latin1_and_bomless_utf16_text() -> None:
    assert extract("Größe und Maß: über".encode("latin-1"), "de.txt").text == "Größe und Maß: über"
    utf16 = "A plain sentence in UTF-16 without a byte order mark.".encode("utf-16-le")
    assert extract(utf16, "x.txt").text.startswith("A plain sentence")
    utf32 = "UTF-32 with its BOM".encode("utf-32")  # Python writes the BOM
    assert utf32.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"))
    assert extract(utf32, "x.txt").text == "UTF-32 with its BOM"


def test_binary_named_txt_is_unsupported() -> None:
    data = random.Random(7).randbytes(4096)
    with pytest.raises(UnsupportedFormat, match="binary data"):
        extract(data, "random.txt")


def test_png_named_pdf_is_read_as_a_png() -> None:
    # Content wins over the name: a PNG signature is a PNG, and this one is broken.
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 100
    with pytest.raises(CorruptDocument, match="corrupt PNG image") as info:
        extract(png, "scan.pdf")
    assert info.value.stage == "extract"


@pytest.mark.parametrize("name", ["random.docx", "random.pdf"])
def test_random_bytes_claiming_a_type_are_corrupt(name: str) -> None:
    data = random.Random(name).randbytes(2048)
    with pytest.raises(CorruptDocument) as info:
        extract(data, name)
    assert info.value.stage == "extract"


def test_zip_that_is_not_docx() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.csv", "a,b\n1,2\n")
    with pytest.raises(UnsupportedFormat, match="ZIP archive"):
        extract(buffer.getvalue(), "data.zip")
    # Named .docx, it claims to be one and is reported corrupt.
    with pytest.raises(CorruptDocument, match="corrupt or unsupported DOCX"):
        extract(buffer.getvalue(), "data.docx")


def test_office_package_that_is_not_word() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>',
        )
        archive.writestr(
            "_rels/.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Target="xl/workbook.xml" Type="http://schemas.'
            'openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>'
            "</Relationships>",
        )
        archive.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(CorruptDocument) as info:
        extract(buffer.getvalue(), "renamed-spreadsheet.docx")
    assert str(info.value) == (
        "corrupt or unsupported DOCX: the package is not a Word document (content type is "
        "'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml')"
    )


def _pdf_bytes(
    pages: list[str | None], *, user_password: str | None = None, owner_password: str = "o"
) -> bytes:
    """A PDF written by pypdf: one page per entry, showing that text in Helvetica (None: blank)."""
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    font_ref = writer._add_object(font)
    for text in pages:
        page = writer.add_blank_page(612, 792)
        if text is None:
            continue
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font_ref})}
        )
        content = DecodedStreamObject()
        content.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(content)
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password=owner_password)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_pdf_blank_pages_are_left_out_of_the_page_map() -> None:
    result = extract(_pdf_bytes([None, "Second   page", None, "Fourth page", None]), "x.pdf")
    assert result.text == "Second page\n\nFourth page"
    assert result.page_count == 5
    assert result.page_starts == [0, 13]
    assert result.page_numbers == [2, 4]
    assert [result.page_at(i) for i in (0, 10, 11, 12, 13, 23)] == [2, 2, 2, 2, 4, 4]


def test_pdf_without_text_is_empty() -> None:
    with pytest.raises(EmptyDocument, match=r"no text, even after OCR — the PDF has 3 page\(s\)"):
        extract(_pdf_bytes([None, None, None]), "scan.pdf")
    with pytest.raises(
        EmptyDocument, match=r"3 page\(s\) without a text layer; OCR is off"
    ) as info:
        extract(_pdf_bytes([None, None, None]), "scan.pdf", ocr=OcrOptions(mode="off"))
    assert info.value.stage == "extract"


def test_pdf_encryption() -> None:
    # Permissions only (empty user password): opens.
    assert extract(_pdf_bytes(["Readable"], user_password=""), "x.pdf").text == "Readable"
    with pytest.raises(EncryptedDocument, match="remove the password"):
        extract(_pdf_bytes(["Secret"], user_password="secret"), "x.pdf")


def test_password_protected_office_file_is_encrypted() -> None:
    # What Word writes for a password-protected .docx: an OLE2 container with an EncryptionInfo
    # stream instead of a ZIP. Only the parts the check looks at are real here.
    data = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + b"\x00" * 1016
        + "EncryptionInfo".encode("utf-16-le")
        + b"\x00" * 64
    )
    with pytest.raises(EncryptedDocument, match="encrypted with a password"):
        extract(data, "secret.docx")


def _docx_bytes(document: DocxDocument) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_docx_made_with_python_docx() -> None:
    document = docx.Document()
    document.add_heading("Quarterly report", level=1)
    document.add_paragraph("First paragraph.\tTabbed.")
    document.add_paragraph("")
    document.add_paragraph("Second paragraph.")
    table = document.add_table(rows=3, cols=3)
    for row_index, row in enumerate(table.rows):
        for col_index, cell in enumerate(row.cells):
            cell.text = f"r{row_index}c{col_index}"
    table.cell(0, 0).merge(table.cell(0, 1))  # horizontal merge
    table.cell(1, 2).merge(table.cell(2, 2))  # vertical merge
    # A paragraph inside a block content control, which python-docx's own iteration skips.
    wrapped = document.add_paragraph("Inside a content control.")
    sdt = wrapped._p.makeelement(qn("w:sdt"), {})
    content = sdt.makeelement(qn("w:sdtContent"), {})
    sdt.append(content)
    wrapped._p.addprevious(sdt)
    content.append(wrapped._p)
    document.add_paragraph("Last words.")

    result = extract(_docx_bytes(document), "report.docx")
    assert result.content_type == "docx"
    assert result.text == (
        "Quarterly report\nFirst paragraph. Tabbed.\n\nSecond paragraph.\n\n"
        "r0c0 r0c1 | r0c2\n"
        "r1c0 | r1c1 | r1c2 r2c2\n"
        "r2c0 | r2c1\n\n"
        "Inside a content control.\nLast words."
    )


def test_docx_without_text_is_empty() -> None:
    document = docx.Document()
    document.add_paragraph("   ")
    with pytest.raises(EmptyDocument, match="no extractable text"):
        extract(_docx_bytes(document), "blank.docx")


@needs_corpus
@pytest.mark.parametrize("rel", ["pdf/text/pdflatex-4-pages.pdf", "docx/handbook-1p.docx"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_files_raise_only_docvec_errors(rel: str, data: st.DataObject) -> None:
    original = (CORPUS / rel).read_bytes()
    damaged = bytearray(original[: data.draw(st.integers(0, len(original)), label="cut")])
    for _ in range(data.draw(st.integers(0, 8), label="flips")):
        if damaged:
            position = data.draw(st.integers(0, len(damaged) - 1))
            damaged[position] = data.draw(st.integers(0, 255))
    try:
        result = extract(bytes(damaged), Path(rel).name)
    except PermanentError as exc:
        assert exc.stage == "extract"
    else:
        assert result.text
        _assert_normalized(result.text)


# ---- normalize_text ------------------------------------------------------------------------------

_TRICKY = st.sampled_from(
    [
        " ", "  ", "\t", "\n", "\n\n\n", "\r", "\r\n", "\x00", "\x01", "\x0b", "\x0c", "\x1b",
        "\x1c", "\x7f", "\x85", "\x9f", "\xa0", "\u1680", "\u2003", "\u2028", "\u2029", "\u202f",
        "\u3000", "\ufeff", "\u200b", "\ufb01", "\ufb03", "\ud800", "a", "é", " \n ", "\r\x00\n",
    ]
)  # fmt: skip
TEXTS = st.lists(st.one_of(_TRICKY, st.characters(), st.text(max_size=4)), max_size=40).map("".join)


@given(TEXTS)
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@given(TEXTS)
def test_normalize_output_shape(text: str) -> None:
    _assert_normalized(normalize_text(text))


@given(TEXTS, TEXTS)
def test_normalized_parts_join_into_normalized_text(a: str, b: str) -> None:
    left, right = normalize_text(a), normalize_text(b)
    if left and right:
        joined = left + "\n\n" + right
        assert normalize_text(joined) == joined


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\r\nb\rc\u2028d\u2029e\x0cf\x85g", "a\nb\nc\nd\ne\nf\ng"),
        ("a\x00b\x07c\x1fd\x7fe\x9ff", "abcdef"),
        ("a \t\xa0\u3000 b", "a b"),
        ("  line   \n\n\n\n\n  next  ", "line\n\n next"),
        ("a\r\x00\nb", "a\nb"),
        ("Begriﬀ aﬃne ﬁnd", "Begriff affine find"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ("zero\u200bwidth", "zero\u200bwidth"),
        ("", ""),
        (" \n\t\r\n ", ""),
    ],
)
def test_normalize_examples(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_page_at_bisects_page_starts() -> None:
    result = ExtractedText(
        text="one\n\nthree\n\nfour",
        page_starts=[0, 5, 12],
        page_numbers=[1, 3, 4],
        page_count=5,
        content_type="pdf",
    )
    assert [result.page_at(i) for i in (0, 3, 4, 5, 11, 12, 15)] == [1, 1, 1, 3, 3, 4, 4]


# ---- hostile input: limits and bombs (issue #5) --------------------------------------------------


def test_docx_zip_bombs_are_refused_before_inflating() -> None:
    with pytest.raises(DocumentTooLarge, match=r"inflates 1,0\d\d:1; the limit is 100:1") as info:
        extract(hostile.docx_ratio_bomb(), "bomb.docx")
    assert info.value.stage == "extract"
    with pytest.raises(DocumentTooLarge, match="would inflate to 221,027,157 bytes; the limit"):
        extract(hostile.docx_size_bomb(), "bomb.docx")
    with pytest.raises(DocumentTooLarge, match="holds 10,067 ZIP entries; the limit is 10,000"):
        extract(hostile.docx_entry_bomb(), "bomb.docx")


def test_docx_entry_that_lies_about_its_size_is_corrupt() -> None:
    data = hostile.docx_lying_sizes()
    # The central directory alone looks harmless...
    assert zipfile.ZipFile(io.BytesIO(data)).getinfo("word/document.xml").file_size == 1000
    # ...but inflating it (1 MiB at a time) shows the lie.
    with pytest.raises(CorruptDocument, match=r"Bad CRC-32 for file 'word/document\.xml'"):
        extract(data, "liar.docx")


def test_docx_bomb_limits_leave_real_documents_alone() -> None:
    assert extract(CORPUS.joinpath("docx/handbook-872p.docx").read_bytes(), "h.docx").text


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"word " * 300, "long.txt"),
        (None, "long.docx"),
        (None, "long.pdf"),
    ],
)
def test_max_chars(data: bytes | None, name: str) -> None:
    if name.endswith(".docx"):
        data = hostile.docx_bytes(*["word " * 60] * 5)
    elif name.endswith(".pdf"):
        data = hostile.pdf_bytes([hostile.text_op("word " * 60)] * 5)
    assert data is not None
    assert len(extract(data, name, max_chars=2000).text) < 2000
    with pytest.raises(DocumentTooLarge, match="the limit is 1,000") as info:
        extract(data, name, max_chars=1000)
    assert info.value.stage == "extract"
    if name.endswith(".pdf"):
        assert "passed at page 4 of 5" in str(info.value)


def test_pdf_page_limit_default() -> None:
    with pytest.raises(DocumentTooLarge, match="the PDF has 5001 pages; the limit is 5000"):
        extract(hostile.pdf_many_pages(5001), "many.pdf")


def test_pdf_stream_over_pypdfs_limit_is_too_large() -> None:
    with pytest.raises(DocumentTooLarge, match=r"too large or complex to read safely \(page 1\)"):
        extract(hostile.pdf_inflating_stream(), "stream.pdf")


def test_aes_encrypted_pdf() -> None:
    locked = hostile.pdf_bytes([hostile.text_op("secret")], user_password="x", algorithm="AES-256")
    with pytest.raises(EncryptedDocument, match="remove the password"):
        extract(locked, "aes.pdf")
    opened = hostile.pdf_bytes([hostile.text_op("open")], user_password="", algorithm="AES-256")
    assert extract(opened, "aes.pdf").text == "open"


def test_password_protected_office_file_is_named_at_upload_sniffing() -> None:
    with pytest.raises(UnsupportedFormat, match="password-protected Office document"):
        detect_type(hostile.encrypted_office_file()[:8192], "secret.docx")


def test_single_line_without_whitespace_stays_linear() -> None:
    """5 MB on one line with no space at all: extracted and hard-cut into chunks in seconds."""
    started = time.monotonic()
    text = extract(hostile.unbroken_token(5_000_000), "line.txt").text
    chunks = Chunker().split(text)
    assert time.monotonic() - started < 30
    assert len(text) == 5_000_000
    assert all(len(c.text) <= 1000 for c in chunks)
    assert chunks[0].start_char == 0 and chunks[-1].end_char == len(text)
