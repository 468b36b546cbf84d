"""Extract stage: document bytes in, normalised plain text out.

Supported types are PDF (pypdf), DOCX (python-docx), Markdown and plain text. The type is decided
from the content first and the file name second, so a mislabelled upload is either read correctly or
refused with a message that says what it is.

Every failure is raised as a :class:`~app.errors.PermanentError` subclass with ``stage="extract"``;
retrying never helps an unreadable file.

::

    extract(data, file_name)        dispatch.py
    ├── detect_type()               detect.py     content sniffing, then extension, then "does it
    │                                             look like text"; encrypted Office refused first
    ├── extract_pdf()               pdf.py        page by page; page offsets kept for
    │                                             ``ExtractedText.page_at``
    ├── extract_docx()              docx.py       zip-bomb guards, then body paragraphs and tables
    │                                             in document order
    └── extract_plain()             text.py       BOM / UTF-8 / charset detection, then as-is
                                                  (Markdown is not rendered)
    every reader: normalize_text()  normalize.py  and ExtractedText, error wording in base.py

The public names are re-exported here; import them from ``app.pipeline.extract``. The modules
import one another in one direction (normalize ← base ← detect ← readers ← dispatch), so a reader
can be read, and changed, without the others.
"""

from app.pipeline.extract.base import ExtractedText
from app.pipeline.extract.detect import SUPPORTED_TYPES, detect_type
from app.pipeline.extract.dispatch import DEFAULT_MAX_CHARS, DEFAULT_MAX_PAGES, extract
from app.pipeline.extract.docx import (
    DOCX_MAX_ENTRIES,
    DOCX_MAX_RATIO,
    DOCX_MAX_UNCOMPRESSED_BYTES,
)
from app.pipeline.extract.normalize import normalize_text

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_PAGES",
    "DOCX_MAX_ENTRIES",
    "DOCX_MAX_RATIO",
    "DOCX_MAX_UNCOMPRESSED_BYTES",
    "SUPPORTED_TYPES",
    "ExtractedText",
    "detect_type",
    "extract",
    "normalize_text",
]
