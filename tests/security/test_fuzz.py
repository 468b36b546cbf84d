"""Fuzzing the extractors and the chunker with hypothesis (bounded: a few hundred examples, about
half a minute in all).

The promise under test: whatever the bytes, :func:`extract` returns normalised, non-empty text or
raises a :class:`~app.errors.PermanentError` of stage ``extract`` — never another exception, never
a hang — and the chunker cuts whatever text it gets into chunks that cover it, within the size.
"""

from __future__ import annotations

import io
import zipfile
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import PermanentError
from app.pipeline.budget import ExtractBudget, extract_within_budget
from app.pipeline.chunk import Chunker
from app.pipeline.extract import ExtractedText, OcrOptions, extract, normalize_text
from tests.security import hostile

FUZZ = settings(
    deadline=None,  # a slow example is a finding of the time budget's tests, not of these
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Fuzzed PDF pages without text are rendered and OCR'd too, at a low resolution: the fuzzing is of
# the parsers and of the path through PDFium and Tesseract, not of Tesseract's reading.
FUZZ_OCR = OcrOptions(dpi=72)

NAMES = st.sampled_from(
    ["a.pdf", "a.docx", "a.md", "a.txt", "a.markdown", "a", "a.PDF", "a.bin", "~$a.docx", ".txt"]
)
#: Byte soup biased towards the magic numbers and structures the sniffers and parsers look for.
MAGICS = st.sampled_from(
    [
        b"%PDF-1.7\n",
        b"PK\x03\x04",
        b"PK\x05\x06",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"\xef\xbb\xbf",
        b"\xff\xfe",
        b"\xfe\xff",
        b"\xff\xfe\x00\x00",
        b"\x00",
        b"obj <<",
        b"stream\n",
        b"endstream",
        b"xref\n0 1\n",
        b"trailer <</Root 1 0 R>>",
        b"%%EOF",
        b"word/document.xml",
        b"\r\n",
    ]
)
BYTES = st.lists(st.one_of(MAGICS, st.binary(max_size=64)), max_size=40).map(b"".join)


def _check(result: ExtractedText) -> None:
    assert result.text
    assert normalize_text(result.text) == result.text
    result.text.encode("utf-8")  # storable: no lone surrogates
    assert "\x00" not in result.text
    if result.page_starts is not None:
        assert result.page_numbers is not None and result.page_count is not None
        assert len(result.page_starts) == len(result.page_numbers)
        assert result.page_starts == sorted(result.page_starts)


def _extract_or_error(data: bytes, name: str) -> ExtractedText | PermanentError:
    try:
        result = extract(data, name, max_pages=50, max_chars=1_000_000, ocr=FUZZ_OCR)
    except PermanentError as exc:
        assert exc.stage == "extract", exc
        assert str(exc) and len(str(exc)) < 2000
        return exc
    _check(result)
    return result


@settings(FUZZ, max_examples=300)
@given(data=BYTES, name=NAMES)
def test_extract_any_bytes(data: bytes, name: str) -> None:
    _extract_or_error(data, name)


@settings(FUZZ, max_examples=60)
@given(
    body=st.lists(
        st.one_of(
            st.text(max_size=30).map(lambda t: f"<w:p><w:r><w:t>{escape(t)}</w:t></w:r></w:p>"),
            st.sampled_from(
                [
                    "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>cell</w:t></w:r></w:p></w:tc></w:tr></w:tbl>",
                    "<w:tbl><w:tr><w:tc><w:tcPr><w:vMerge/></w:tcPr></w:tc></w:tr></w:tbl>",
                    "<w:sdt><w:sdtContent><w:p><w:r><w:t>ctl</w:t></w:r></w:p></w:sdtContent></w:sdt>",
                    "<w:p><w:r><w:tab/><w:br/></w:r></w:p>",
                    "<w:p>",
                    "</w:p>",
                    "<!DOCTYPE x [<!ENTITY a 'aaaaaaaaaa'>]>",
                    "&a;&a;&a;",
                    "<w:p><w:r><w:t>\x01</w:t></w:r></w:p>",
                    "<w:customXml><w:p><w:r><w:t>x</w:t></w:r></w:p></w:customXml>",
                ]
            ),
        ),
        max_size=30,
    )
)
def test_extract_docx_with_fuzzed_body(body: list[str]) -> None:
    """Real DOCX packaging around a document.xml body made of valid, broken and hostile XML."""
    base = hostile.docx_bytes("x")
    src = zipfile.ZipFile(io.BytesIO(base))
    xml = src.read("word/document.xml").decode()
    start, end = xml.index("<w:body>") + len("<w:body>"), xml.index("</w:body>")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "word/document.xml":
                data = (xml[:start] + "".join(body) + xml[end:]).encode("utf-8", "surrogatepass")
            archive.writestr(info.filename, data)
    _extract_or_error(out.getvalue(), "fuzzed.docx")


OPERATORS = st.sampled_from(
    [
        b"BT",
        b"ET",
        b"/F1 12 Tf",
        b"/F9 12 Tf",
        b"72 720 Td",
        b"0 -14 TD",
        b"T*",
        b"(text) Tj",
        b"[(a) -250 (b)] TJ",
        b"<48656c6c6f> Tj",
        b"(unbalanced Tj",
        b"q",
        b"Q",
        b"1 0 0 1 0 0 cm",
        b"/Im1 Do",
        b"BI /W 1 /H 1 ID \x00 EI",
        b"1e999 0 Td",
        b"-0 0 Td",
        b"()'",
        b'1 2 (x) "',
        b"<<",
        b">>",
        b"[",
        b"]",
        b"%comment",
    ]
)


@settings(FUZZ, max_examples=80)
@given(
    pages=st.lists(
        st.lists(st.one_of(OPERATORS, st.binary(max_size=12)), max_size=40).map(b"\n".join),
        min_size=1,
        max_size=4,
    )
)
def test_extract_pdf_with_fuzzed_content_streams(pages: list[bytes]) -> None:
    """Real PDF structure (written by pypdf) around content streams of operator soup."""
    _extract_or_error(hostile.pdf_bytes(list(pages), compress=False), "fuzzed.pdf")


@settings(FUZZ, max_examples=25)
@given(data=BYTES, name=NAMES)
def test_budgeted_extraction_agrees_with_extract(data: bytes, name: str) -> None:
    """The forked, budgeted path gives the same outcome as the plain call."""
    expected = _extract_or_error(data, name)
    budget = ExtractBudget(
        timeout_s=60, memory_mb=512, max_pages=50, max_chars=1_000_000, ocr=FUZZ_OCR
    )
    try:
        got: ExtractedText | PermanentError = extract_within_budget(data, name, budget)
    except PermanentError as exc:
        got = exc
    if isinstance(expected, PermanentError):
        assert type(got) is type(expected) and str(got) == str(expected)
    else:
        assert got == expected


# ---- the chunker on hostile text -----------------------------------------------------------------

HOSTILE_TEXT = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "x" * 3000,  # far longer than a chunk, no break at all
                "." * 500,
                "!?" * 200,
                "a. " * 300,
                "\u3002" * 400,  # CJK full stops, no spaces
                "e\u0301" * 600,  # combining accents
                "\U0001f600" * 300,  # astral characters (4 UTF-8 bytes, several tokens)
                "\u200b" * 200,
                "\n\n",
                " ",
                "<|endoftext|>",
                "\"')]}" * 50,
            ]
        ),
        st.text(max_size=200),
    ),
    max_size=25,
).map(lambda parts: normalize_text("".join(parts)))


def _check_chunks(text: str, chunker: Chunker) -> None:
    chunks = chunker.split(text)
    covered = [False] * len(text)
    for i, c in enumerate(chunks):
        assert c.index == i
        assert c.text == text[c.start_char : c.end_char] and c.text.strip() == c.text
        if chunker.unit == "chars":
            assert len(c.text) <= chunker.chunk_size
        for k in range(c.start_char, c.end_char):
            covered[k] = True
    assert all(covered[k] for k, ch in enumerate(text) if not ch.isspace())
    assert [c.start_char for c in chunks] == sorted({c.start_char for c in chunks})


@settings(FUZZ, max_examples=60)
@given(text=HOSTILE_TEXT)
def test_chunker_chars_on_hostile_text(text: str) -> None:
    _check_chunks(text, Chunker(chunk_size=200, chunk_overlap=50, min_chunk_size=20))


@settings(FUZZ, max_examples=30)
@given(text=HOSTILE_TEXT)
def test_chunker_tokens_on_hostile_text(text: str) -> None:
    _check_chunks(text, Chunker(chunk_size=64, chunk_overlap=16, min_chunk_size=8, unit="tokens"))


@pytest.mark.parametrize("unit", ["chars", "tokens"])
def test_chunker_on_a_megabyte_without_breaks(unit: str) -> None:
    text = normalize_text(hostile.unbroken_token(1_000_000).decode())
    chunker = Chunker(unit=unit) if unit == "chars" else Chunker(256, 50, 20, unit="tokens")
    _check_chunks(text, chunker)
