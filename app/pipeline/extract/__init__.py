"""Extract stage: document bytes in, normalised plain text out.

Supported types are PDF (pypdf), DOCX (python-docx), Markdown and plain text, and PNG, JPEG, TIFF
and WebP images (Pillow), whose text, like that of PDF pages without a text layer, is read by OCR
(Tesseract). The type is decided from the content first and the file name second, so a
mislabelled upload is either read correctly or refused with a message that says what it is.

Every failure is raised as a :class:`~app.errors.PermanentError` subclass with ``stage="extract"``;
retrying never helps an unreadable file.

::

    extract(data, file_name)        dispatch.py
    ├── detect_type()               detect.py     content sniffing, then extension, then "does it
    │                                             look like text"; encrypted Office refused first
    ├── extract_pdf()               pdf.py        page by page; page offsets kept for
    │                                             ``ExtractedText.page_at``; pages without
    │                                             text rendered (pypdfium2) and OCR'd
    ├── extract_image()             images.py     pixel, page and decoding guards, then OCR
    │                                             page by page
    │   both: Tesseract             ocr.py        a bounded subprocess per page; ocr_status()
    │   and, for an image model:    pictures.py   one small PNG per page of an image upload
    ├── extract_docx()              docx.py       zip-bomb guards, then body paragraphs and tables
    │                                             in document order
    └── extract_plain()             text.py       BOM / UTF-8 / charset detection, then as-is
                                                  (Markdown is not rendered)
    every reader: normalize_text()  normalize.py  and ExtractedText, error wording in base.py

The public names are re-exported here; import them from ``app.pipeline.extract``. The modules
import one another in one direction (normalize ← base ← detect ← ocr ← readers ← dispatch), so a
reader can be read, and changed, without the others.
"""

from app.pipeline.extract.base import ExtractedText
from app.pipeline.extract.detect import IMAGE_TYPES, SUPPORTED_TYPES, detect_type
from app.pipeline.extract.dispatch import DEFAULT_MAX_CHARS, DEFAULT_MAX_PAGES, extract
from app.pipeline.extract.docx import (
    DOCX_MAX_ENTRIES,
    DOCX_MAX_RATIO,
    DOCX_MAX_UNCOMPRESSED_BYTES,
)
from app.pipeline.extract.images import check_upload as check_image_upload
from app.pipeline.extract.normalize import normalize_text
from app.pipeline.extract.ocr import OcrOptions, OcrStatus, ocr_status
from app.pipeline.extract.pictures import pictures_of_file

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_PAGES",
    "DOCX_MAX_ENTRIES",
    "DOCX_MAX_RATIO",
    "DOCX_MAX_UNCOMPRESSED_BYTES",
    "IMAGE_TYPES",
    "SUPPORTED_TYPES",
    "ExtractedText",
    "OcrOptions",
    "OcrStatus",
    "check_image_upload",
    "detect_type",
    "extract",
    "normalize_text",
    "ocr_status",
    "pictures_of_file",
]
