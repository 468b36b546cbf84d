"""Type detection: which reader gets a file, decided from its content first and its name second.

Magic numbers (PDF, ZIP, OLE2, the images OCR reads and the formats people upload by mistake),
byte-order marks and the "does this look like text" test live here, so that the upload route
(which sees only a file's head) and :func:`~app.pipeline.extract.extract` (which sees all of it)
decide alike. The text reader reuses the BOM table and the UTF-16 guess, so that a file detected
as text is decoded by the same rules that detected it.
"""

from __future__ import annotations

from app.errors import EncryptedDocument, UnsupportedFormat
from app.pipeline.extract.base import STAGE

__all__ = [
    "BOMS",
    "IMAGE_TYPES",
    "MAX_BINARY_SHARE",
    "SUPPORTED_TYPES",
    "bomless_utf16",
    "detect_type",
    "refuse_encrypted_office",
    "sniff_image",
    "unsupported_message",
]

#: Content-type keys the pipeline understands, mapped to their MIME types.
SUPPORTED_TYPES: dict[str, str] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "markdown": "text/markdown",
    "text": "text/plain",
    # Read by OCR (images.py, ocr.py).
    "png": "image/png",
    "jpeg": "image/jpeg",
    "tiff": "image/tiff",
    "webp": "image/webp",
}

#: The keys of :data:`SUPPORTED_TYPES` that are images: their text is read by OCR only.
IMAGE_TYPES = frozenset({"png", "jpeg", "tiff", "webp"})

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
# A file with one of these names must hold an image of a type OCR reads: text named "x.png" is
# refused, not read as text.
_IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".webp", ".gif", ".bmp"}
)
# Signatures: PNG (ISO/IEC 15948 §5.2), JPEG's SOI plus the first marker's 0xFF, TIFF's byte
# order and 42 (TIFF 6.0 §2); WebP is a RIFF container whose form type is "WEBP".
_IMAGE_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
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
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II+\x00", "a BigTIFF image"),
    (b"MM\x00+", "a BigTIFF image"),
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

BOMS: tuple[tuple[bytes, str], ...] = (
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
MAX_BINARY_SHARE = 0.10

# Control bytes that real text does not contain; tab, the line breaks, form feed and ESC (ANSI
# colours in logs) are not counted.
_BINARY_BYTES = frozenset(range(0x20)) - frozenset(b"\t\n\v\f\r\x1b")


def unsupported_message(what: str) -> str:
    """The refusal message for ``what``, listing the types docvec reads."""
    kinds = ", ".join(f"{key} ({mime})" for key, mime in SUPPORTED_TYPES.items())
    return f"unsupported file type: {what}; docvec reads {kinds}"


def sniff_image(data_head: bytes) -> str | None:
    """The image type (a key of :data:`IMAGE_TYPES`) that ``data_head`` starts with, or None."""
    for magic, kind in _IMAGE_MAGICS:
        if data_head.startswith(magic):
            return kind
    if data_head[:4] == b"RIFF" and data_head[8:12] == b"WEBP":
        return "webp"
    return None


def _extension(file_name: str) -> str:
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    if "." not in base.lstrip("."):
        return ""
    return "." + base.rsplit(".", 1)[-1].lower()


def bomless_utf16(data: bytes) -> str | None:
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


def _looks_like_text(head: bytes) -> bool:
    if any(head.startswith(bom) for bom, _ in BOMS):
        return True
    if b"\x00" in head:
        return bomless_utf16(head) is not None
    # Bytes >= 0x80 are legal in some 8-bit code page, so only control bytes count against text.
    bad = sum(1 for byte in head if byte in _BINARY_BYTES)
    return not head or bad / len(head) <= MAX_BINARY_SHARE


def detect_type(data_head: bytes, file_name: str) -> str:
    """Decide which extractor reads a file, from its first bytes and its name.

    Content wins over the name: a PDF header within the first 1024 bytes means PDF (unless the
    name says Markdown/text and the header is not at offset 0 — a Markdown file may quote one); a
    ZIP whose name ends in ``.docx`` or whose first entries live under ``word/`` means DOCX; a
    PNG, JPEG, TIFF or WebP signature means that image; recognised formats docvec does not read
    (GIF, BigTIFF, RTF, legacy Office, archives) are refused whatever their name, and so is a
    file named like an image (``.png``, ``.jpg``, ...) that holds none of the four. Then the
    extension decides (``.pdf``, ``.docx``, ``.md``/``.markdown``, ``.txt``/``.text``;
    case-insensitive); a file that claims PDF or DOCX but is not one is left to the parser, which
    reports it corrupt. With no known extension, content that looks like text (a BOM, or no NUL
    bytes and few control bytes) is plain text.

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
            unsupported_message("a ZIP archive that is not a Word document (.docx)"), stage=STAGE
        )
    image = sniff_image(data_head)
    if image is not None:
        return image
    for magic, what in _KNOWN_BINARY:
        if data_head.startswith(magic):
            raise UnsupportedFormat(unsupported_message(what), stage=STAGE)
    if ext in _IMAGE_EXTENSIONS:
        raise UnsupportedFormat(
            unsupported_message(
                f"a file named '{ext}' whose content is not a PNG, JPEG, TIFF or WebP image"
            ),
            stage=STAGE,
        )
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if _looks_like_text(data_head):
        return "text"
    shown = f"'{ext}' file" if ext else "file without an extension"
    raise UnsupportedFormat(unsupported_message(f"binary {shown}"), stage=STAGE)


def refuse_encrypted_office(data: bytes) -> None:
    """Refuse a password-protected Office document, which from its head alone
    (:func:`detect_type`) is indistinguishable from a legacy Office file.

    Args:
        data: the whole file (the ``EncryptionInfo`` stream may sit anywhere in it).

    Raises:
        EncryptedDocument: an OLE2 container holding an ``EncryptionInfo`` stream.
    """
    if data.startswith(_OLE2_MAGIC) and _OLE2_ENCRYPTION_INFO in data:
        raise EncryptedDocument(
            "the Office document is encrypted with a password; docvec cannot open it "
            "(remove the password and upload again)",
            stage=STAGE,
        )
