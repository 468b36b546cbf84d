"""Hostile files, made on the fly: truncations and bit flips of real documents, zip bombs, encrypted
files, wrong extensions, giant lines, files built to exhaust a time or memory budget.

Every generator is deterministic (seeded) and returns bytes; nothing here is stored in the repo.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

import docx
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject, StreamObject

MIB = 1024 * 1024


# ---- mutations of real files ---------------------------------------------------------------------


def truncated(data: bytes, fraction: float) -> bytes:
    """The first ``fraction`` of ``data``."""
    return data[: max(1, int(len(data) * fraction))]


def bit_flipped(data: bytes, *, flips: int, seed: int) -> bytes:
    """``data`` with ``flips`` random bits inverted, away from the first 8 bytes (the magic number,
    so the file still claims its type)."""
    rnd = random.Random(seed)
    out = bytearray(data)
    for _ in range(flips):
        i = rnd.randrange(8, len(out))
        out[i] ^= 1 << rnd.randrange(8)
    return bytes(out)


# ---- DOCX ----------------------------------------------------------------------------------------


def docx_bytes(*paragraphs: str) -> bytes:
    """A small valid DOCX written by python-docx."""
    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _rezip(
    source: bytes, replace: dict[str, bytes], extra: dict[str, bytes] | None = None
) -> bytes:
    """``source`` (a ZIP) with some entries replaced and others added, deflated."""
    src = zipfile.ZipFile(io.BytesIO(source))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in src.infolist():
            archive.writestr(info.filename, replace.get(info.filename, src.read(info.filename)))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


def docx_ratio_bomb(inflated: int = 50 * MIB) -> bytes:
    """A DOCX whose document.xml inflates about 1000:1 (``inflated`` bytes of spaces)."""
    base = docx_bytes("bomb")
    xml = zipfile.ZipFile(io.BytesIO(base)).read("word/document.xml")
    padded = xml.replace(b"<w:body>", b"<w:body>" + b" " * inflated, 1)
    return _rezip(base, {"word/document.xml": padded})


def docx_size_bomb(total: int = 210 * MIB) -> bytes:
    """A DOCX whose entries declare more than 200 MiB in all (streamed, never held in memory)."""
    base = docx_bytes("bomb")
    out = io.BytesIO(base)
    with (
        zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as archive,
        archive.open("word/media/padding.bin", "w", force_zip64=True) as entry,
    ):
        piece = bytes(MIB)
        for _ in range(total // MIB):
            entry.write(piece)
    return out.getvalue()


def docx_entry_bomb(entries: int = 10_050) -> bytes:
    """A DOCX with more than 10,000 ZIP entries."""
    return _rezip(
        docx_bytes("many entries"), {}, {f"customXml/bomb{i}.xml": b"<a/>" for i in range(entries)}
    )


def docx_lying_sizes(real: int = 2 * MIB) -> bytes:
    """A DOCX whose document.xml inflates to ``real`` bytes but declares 1,000 in both ZIP headers:
    a bomb that hides from a check of the central directory alone."""
    base = docx_bytes("liar")
    xml = zipfile.ZipFile(io.BytesIO(base)).read("word/document.xml")
    padded = xml.replace(b"<w:body>", b"<w:body>" + b" " * real, 1)
    data = bytearray(_rezip(base, {"word/document.xml": padded}))
    name = b"word/document.xml"
    declared = struct.pack("<I", 1000)
    # Local file header: uncompressed size at offset 22; central directory entry: at offset 24.
    pos = 0
    while (pos := data.find(b"PK\x03\x04", pos)) != -1:
        name_len = struct.unpack_from("<H", data, pos + 26)[0]
        if data[pos + 30 : pos + 30 + name_len] == name:
            data[pos + 22 : pos + 26] = declared
        pos += 4
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) != -1:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + name_len] == name:
            data[pos + 24 : pos + 28] = declared
        pos += 4
    return bytes(data)


def docx_memory_hog(paragraphs: int = 2_000_000) -> bytes:
    """A DOCX of about 10 MB whose two million paragraphs take libxml2 over 1 GiB to parse.

    Random words keep the compression ratio ordinary (about 8:1), so no zip-bomb check catches it:
    only the memory budget does.
    """
    words = random.Random(5).randbytes(3 * paragraphs).hex()
    body = "".join(
        f"<w:p><w:r><w:t>{words[i : i + 6]}</w:t></w:r></w:p>" for i in range(0, 6 * paragraphs, 6)
    ).encode()
    base = docx_bytes("hog")
    xml = zipfile.ZipFile(io.BytesIO(base)).read("word/document.xml")
    return _rezip(base, {"word/document.xml": xml.replace(b"<w:body>", b"<w:body>" + body, 1)})


def encrypted_office_file() -> bytes:
    """The shape of a password-protected DOCX: an OLE2 container with an ``EncryptionInfo``
    stream (MS-OFFCRYPTO), not a ZIP."""
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    return header + "EncryptionInfo".encode("utf-16-le") + bytes(1024)


def plain_zip() -> bytes:
    """A ZIP archive that is no Word document."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.csv", "a,b\n1,2\n" * 100)
    return out.getvalue()


# ---- PDF -----------------------------------------------------------------------------------------


def pdf_bytes(
    pages: list[bytes | None],
    *,
    user_password: str | None = None,
    algorithm: str = "RC4-128",
    compress: bool = True,
) -> bytes:
    """A PDF written by pypdf: one page per entry, whose content stream is that entry (None:
    a page without content). Identical streams are written once and shared."""
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    font_ref = writer._add_object(font)
    streams: dict[bytes, object] = {}
    for content in pages:
        page = writer.add_blank_page(612, 792)
        if content is None:
            continue
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font_ref})}
        )
        if content not in streams:
            stream: StreamObject = DecodedStreamObject()
            stream.set_data(content)
            if compress:
                stream = stream.flate_encode()
            streams[content] = writer._add_object(stream)
        page[NameObject("/Contents")] = streams[content]
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password="owner", algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def text_op(text: str) -> bytes:
    """A content stream that shows ``text`` (Latin-1) in Helvetica."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1")


def pdf_many_pages(pages: int) -> bytes:
    """A PDF with ``pages`` pages sharing one content stream."""
    return pdf_bytes([text_op("the same page again")] * pages)


def pdf_inflating_stream(inflated: int = 80 * MIB) -> bytes:
    """One page whose content stream inflates to ``inflated`` bytes (pypdf stops at 75 MB)."""
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    # Without fonts pypdf would not even read the stream: a page with no font shows no text.
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    stream = StreamObject()
    stream._data = zlib.compress(b" " * inflated, 9)
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    page[NameObject("/Contents")] = writer._add_object(stream)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def pdf_slow(pages: int = 30, operations: int = 150_000) -> bytes:
    """``pages`` pages sharing one content stream of ``operations`` text-showing operators: about
    10 kB on disk, under every pypdf limit (750,000 tokens per page), and minutes of pure-Python
    work to extract (seconds per page)."""
    content = b"BT /F1 12 Tf 72 720 Td " + b"(word) Tj 0 -1 Td " * operations + b"ET"
    return pdf_bytes([content] * pages)


# ---- text ----------------------------------------------------------------------------------------


def giant_line(size: int) -> bytes:
    """``size`` bytes of words and no line break at all."""
    words = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    return (words * (size // len(words) + 1))[:size]


def unbroken_token(size: int) -> bytes:
    """``size`` bytes without a single space or line break (the chunker must hard-cut it)."""
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def mixed_encodings() -> bytes:
    """UTF-8 lines, Latin-1 lines and a lone surrogate (CESU) sequence in one file."""
    return (
        "Überschrift in UTF-8 — ein Absatz mit Umlauten: äöü.\n".encode()
        + "Zweite Zeile in Latin-1: Größe, Maß, Straße.\n".encode("latin-1")
        + b"Lone surrogate: \xed\xa0\x80 end.\n"
        + "Dritte Zeile wieder UTF-8: naïve café.\n".encode() * 20
    )


def nul_sprinkled() -> bytes:
    """Ordinary text with NUL bytes here and there."""
    return b"Plain\x00 text with\x00 NUL bytes\x00 in it. " * 40


def mostly_nul() -> bytes:
    """A "text" file that is almost all NUL bytes."""
    return b"\x00" * 3000 + b"hi" + b"\x00" * 3000
