"""The extract stage's entry point: :func:`extract` chooses a reader for a file and calls it.

Detection (``detect.py``) and the readers (``pdf.py``, ``docx.py``, ``text.py``, ``images.py``;
the last and the PDF reader share ``ocr.py``) know nothing of
one another; this module is the one place that joins them, and the one that holds the limits'
defaults.
"""

from __future__ import annotations

from app.pipeline.extract.base import ExtractedText
from app.pipeline.extract.detect import IMAGE_TYPES, detect_type, refuse_encrypted_office
from app.pipeline.extract.docx import extract_docx
from app.pipeline.extract.images import extract_image
from app.pipeline.extract.ocr import OcrOptions
from app.pipeline.extract.pdf import extract_pdf
from app.pipeline.extract.pictures import extract_image_with_pictures
from app.pipeline.extract.text import extract_plain

__all__ = ["DEFAULT_MAX_CHARS", "DEFAULT_MAX_PAGES", "extract"]

#: Defaults of :func:`extract`'s limits; the pipeline passes the settings' values
#: (``max_pages``, ``max_document_chars``).
DEFAULT_MAX_PAGES = 5000
DEFAULT_MAX_CHARS = 20_000_000


def extract(
    data: bytes,
    file_name: str,
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_chars: int = DEFAULT_MAX_CHARS,
    ocr: OcrOptions | None = None,
    pictures: int | None = None,
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
        ocr: how PDF pages without text and images are OCR'd; None = :class:`OcrOptions`'s
            defaults (mode ``auto``, English).
        pictures: for an image upload, also make one picture per page at most this many
            pixels a side, for the image embedding model (``ExtractedText.page_pictures``); an
            image without text is then not empty. None: no pictures.

    Returns:
        An :class:`ExtractedText` with non-empty ``text``; PDFs and images also carry their page
        map and the pages read by OCR.

    Raises:
        UnsupportedFormat: not a PDF, DOCX, Markdown, text file or PNG/JPEG/TIFF/WebP image
            (also: text that is mostly control characters, i.e. binary data).
        EncryptedDocument: a PDF the empty password does not open, or a password-protected DOCX.
        CorruptDocument: the file claims a supported type but its parser fails on it (an image
            truncated or lying about its contents included).
        EmptyDocument: no text (empty or whitespace-only file, a PDF or image in which OCR found
            none, a scan of a PDF with OCR off).
        OcrUnavailable: an image, or a PDF without any text layer, and OCR cannot run (off for
            an image, Tesseract or a language's data missing).
        DocumentTooLarge: a PDF with more than ``max_pages`` pages, text longer than
            ``max_chars``, a PDF stream over one of pypdf's safety limits, a DOCX whose ZIP
            is a bomb (see :data:`DOCX_MAX_ENTRIES`, :data:`DOCX_MAX_UNCOMPRESSED_BYTES`,
            :data:`DOCX_MAX_RATIO`), more pages to OCR than ``ocr.max_pages``, an image page over
            ``ocr.max_image_pixels``, or a page's OCR over its time or memory limit.

    All raised errors carry ``stage="extract"``. ``MemoryError`` propagates unchanged (also when
    lxml reports a failed allocation as a parse error).
    """
    refuse_encrypted_office(data)
    content_type = detect_type(data[:4096], file_name)
    ocr = ocr or OcrOptions()
    if content_type == "pdf":
        return extract_pdf(data, max_pages=max_pages, max_chars=max_chars, ocr=ocr)
    if content_type in IMAGE_TYPES:
        if pictures is not None:
            return extract_image_with_pictures(
                data, content_type, max_chars=max_chars, ocr=ocr, max_side=pictures
            )
        return extract_image(data, content_type, max_chars=max_chars, ocr=ocr)
    if content_type == "docx":
        return extract_docx(data, file_name, max_chars=max_chars)
    return extract_plain(data, content_type, max_chars=max_chars)
