"""The one error tree of docvec. Tasks decide retry or fail from the class, never from message text.

::

    DocvecError
    ├── TransientError            retry with backoff (network, timeouts, 429/5xx, services down)
    │   ├── ProviderUnavailable   provider unreachable, 429 or 5xx; carries ``retry_after_s``
    │   ├── VectorStoreUnavailable
    │   │   └── VectorStoreLocked embedded Qdrant folder (Edge or local mode) opened elsewhere
    │   └── DatabaseUnavailable
    └── PermanentError            fail the document at once, with a human-readable reason
        ├── UnsupportedFormat     not PDF, DOCX, Markdown, text or a PNG/JPEG/TIFF/WebP image
        ├── CorruptDocument       the file cannot be parsed (truncated, bad xref, not a zip, ...)
        ├── EncryptedDocument     a PDF that the empty password does not open
        ├── EmptyDocument         no text, even after OCR (empty, whitespace only, blank scan)
        ├── OcrUnavailable        the document needs OCR and none is usable here (no Tesseract,
        │                         missing language data, DOCVEC_OCR__MODE=off for an image)
        ├── DocumentTooLarge      over a configured size / page / time budget
        ├── StorageError          the stored file is missing or unreadable
        ├── ProviderRejected      HTTP 400/401/403/404 from a provider (bad key, unknown model, ...)
        ├── DimensionMismatch     the collection's vector size differs from the provider's
        ├── IndexMismatch         the settings describe another model or chunking than the
        │                         project's active index version (app/indexes.py)
        └── DuplicateContent      a new version of a document has the bytes of another
                                  document of its project (the API answers 409)

Each error may carry the pipeline ``stage`` in which it happened (``extract``, ``chunk``, ``embed``,
``upsert``, ``commit``); the pipeline fills it in when the raiser did not.
"""

from __future__ import annotations

from typing_extensions import override


class DocvecError(Exception):
    """Base class of every error docvec raises on purpose.

    Args:
        message: human-readable reason, safe to show users (never contains secrets).
        stage: pipeline stage that failed, if known.
    """

    transient: bool = False

    def __init__(self, message: str, *, stage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage

    @override
    def __str__(self) -> str:
        return self.message


class TransientError(DocvecError):
    """A failure that may succeed if retried later (the task retries it with backoff)."""

    transient = True

    def __init__(
        self, message: str, *, stage: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, stage=stage)
        #: Seconds the remote side asked us to wait (HTTP ``Retry-After``), if it said.
        self.retry_after_s = retry_after_s


class ProviderUnavailable(TransientError):
    """The embedding provider is unreachable, rate-limited (429) or failing (5xx)."""


class VectorStoreUnavailable(TransientError):
    """The vector store cannot be reached right now."""


class DatabaseUnavailable(TransientError):
    """The SQL database cannot be reached right now."""


class PermanentError(DocvecError):
    """A failure that will recur on every retry: the document fails at once with this reason."""


class UnsupportedFormat(PermanentError):
    """The file is not one of the supported types (PDF, DOCX, Markdown, plain text, PNG, JPEG,
    TIFF, WebP)."""


class CorruptDocument(PermanentError):
    """The file claims a supported type but cannot be parsed."""


class EncryptedDocument(PermanentError):
    """The PDF is encrypted and the empty user password does not open it."""


class EmptyDocument(PermanentError):
    """The document has no extractable text."""


class OcrUnavailable(PermanentError):
    """The document has text only in images (an image upload, a PDF of scans) and OCR cannot
    run here: the Tesseract binary or a configured language's data is missing, or OCR is off.
    Permanent for this run; ``retry-failed`` once OCR is installed (app/pipeline/extract/ocr.py)."""


class DocumentTooLarge(PermanentError):
    """The document exceeds a configured limit (bytes, pages, characters or time)."""


class StorageError(PermanentError):
    """The stored original file is missing or unreadable."""


class ProviderRejected(PermanentError):
    """The provider refused the request for a reason retrying cannot fix (400/401/403/404)."""


class DimensionMismatch(PermanentError):
    """The vector store collection was created for another vector size than the provider's."""


class IndexMismatch(PermanentError):
    """The process's embedding or chunking settings differ from the active index version of the
    project it would write to or search (same vector size included): writing would mix two
    models in one index. The message names both and the remedy (``docvec index create``)."""


class DuplicateContent(PermanentError):
    """A new version of a document holds exactly the bytes of *another* document of the same
    project (documents are unique per project by SHA-256): replacing would make two documents of
    one file. Nothing is changed; the message names the other document, and ``document_id``
    carries its id (app/services.py, ``replace_document``)."""

    def __init__(self, message: str, *, document_id: str, stage: str | None = None) -> None:
        super().__init__(message, stage=stage)
        #: The id of the document that already holds these bytes.
        self.document_id = document_id


class VectorStoreLocked(VectorStoreUnavailable):
    """The embedded Qdrant folder (Qdrant Edge or qdrant-client's local mode) is held by another
    process or store. Transient for a document (the holder may let go: a CLI run that ends, a
    worker restarted with one process); at start-up it is a configuration error the entry points
    report with the remedy."""


__all__ = [
    "CorruptDocument",
    "DatabaseUnavailable",
    "DimensionMismatch",
    "DocumentTooLarge",
    "DocvecError",
    "DuplicateContent",
    "EmptyDocument",
    "EncryptedDocument",
    "IndexMismatch",
    "OcrUnavailable",
    "PermanentError",
    "ProviderRejected",
    "ProviderUnavailable",
    "StorageError",
    "TransientError",
    "UnsupportedFormat",
    "VectorStoreLocked",
    "VectorStoreUnavailable",
]
