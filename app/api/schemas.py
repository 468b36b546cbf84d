"""Request and response models of the HTTP API (they become the OpenAPI schema)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.vectorstore.base import DEFAULT_SEARCH_MODE, HYBRID_CANDIDATES, RRF_K, SearchMode

#: No control characters in names; no NUL anywhere (PostgreSQL text cannot store it).
_NAME_PATTERN = r"^[^\x00-\x1f\x7f]*$"
_TEXT_PATTERN = r"^[^\x00]*$"


class ProjectCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=_NAME_PATTERN)
    description: str | None = Field(None, max_length=10_000, pattern=_TEXT_PATTERN)


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime


class ProjectDetail(ProjectOut):
    documents_by_status: dict[str, int]
    chunk_count: int


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID
    file_name: str
    content_type: str | None
    size_bytes: int
    sha256: str
    status: str
    error: str | None
    failed_stage: str | None
    page_count: int | None
    chunk_count: int
    embedding_model: str | None
    vectorized_at: datetime | None
    generation: int
    created_at: datetime
    updated_at: datetime


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    task_id: str | None
    worker: str | None
    generation: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    error: str | None
    failed_stage: str | None
    chunks: int | None
    timings_ms: dict[str, Any] | None
    usage: dict[str, Any] | None


class DocumentDetail(DocumentOut):
    attempts: list[AttemptOut]


class UploadedDocument(BaseModel):
    id: uuid.UUID
    file_name: str
    status: str
    #: False when the same bytes were already in the project: the existing document is returned.
    created: bool
    status_url: str


#: What a response says when the broker did not take the jobs (they wait in the outbox).
BROKER_DOWN_MESSAGE = (
    "the broker is unreachable: the documents are recorded and will be queued as soon as it is "
    "back (the API retries every few seconds); nothing needs to be sent again"
)


class UploadResponse(BaseModel):
    documents: list[UploadedDocument]
    #: True when the broker has the new documents' jobs; False when it was unreachable — the
    #: jobs are recorded (outbox) and published once it is back.
    published: bool = True
    message: str | None = None


class ReplacedDocument(BaseModel):
    """A new version of a document's file (``PUT /documents/{id}/file``)."""

    id: uuid.UUID
    file_name: str
    status: str
    sha256: str
    size_bytes: int
    generation: int
    #: False when the bytes were the document's own already: nothing was done or queued.
    changed: bool
    #: Jobs queued: 1, or 0 when unchanged or when a job already on its way reads the new file.
    queued: int
    status_url: str
    #: False when the broker was unreachable: the job is recorded and published once it is back.
    published: bool = True
    message: str | None = None


class ChunkOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    chunk_index: int
    content: str
    start_char: int
    end_char: int
    token_count: int
    page: int | None
    #: True when some of the chunk's text was read by OCR (a scanned page, an image).
    ocr: bool = False


class Accepted(BaseModel):
    """A re-vectorize request was recorded (``queued``: how many jobs; 0 when coalesced into a
    job already on its way)."""

    queued: int
    document_ids: list[uuid.UUID]
    #: False when the broker was unreachable: the jobs are recorded and published once it is back.
    published: bool = True
    message: str | None = None


def accepted(
    jobs: list[tuple[uuid.UUID, int]],
    *,
    published: bool,
    document_ids: list[uuid.UUID] | None = None,
) -> dict[str, object]:
    """The body of :class:`Accepted` for ``jobs`` just dispatched."""
    return {
        "queued": len(jobs),
        "document_ids": document_ids if document_ids is not None else [d for d, _ in jobs],
        "published": published,
        "message": None if published else BROKER_DOWN_MESSAGE,
    }


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=8_000)
    top_k: int = Field(5, ge=1, le=100)
    mode: SearchMode = Field(
        DEFAULT_SEARCH_MODE,
        description=(
            "dense: cosine similarity of the query's embedding to each chunk's. lexical: BM25 "
            "over the chunks' words (English stemmed; exact identifiers and rare terms). "
            f"hybrid: both rankings fused by Reciprocal Rank Fusion, 1 / ({RRF_K} + rank) per "
            f"ranking, from the best {HYBRID_CANDIDATES} chunks (or top_k, if more) of each. "
            f"Default {DEFAULT_SEARCH_MODE}: the best of the three on BEIR SciFact (README)."
        ),
    )
    score_threshold: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description=(
            "Minimum cosine similarity in [-1, 1] of the dense side. dense: hits below it are "
            "dropped. hybrid: chunks below it leave the dense ranking before the fusion (a "
            "lexical match still counts). lexical: not allowed (422)."
        ),
    )
    images: bool = Field(
        True,
        description=(
            "When the project's index has an image model (DOCVEC_IMAGE_EMBEDDING__PROVIDER), "
            "also rank the pages of image documents by what they show (the query embedded by "
            "the image model) and fuse that ranking with the text one by RRF; score is then the "
            "fused score. Ignored in lexical mode and without an image model."
        ),
    )

    @model_validator(mode="after")
    def _threshold_is_dense(self) -> SearchRequest:
        if self.mode == "lexical" and self.score_threshold is not None:
            raise ValueError(
                "score_threshold is a cosine similarity of the dense side: it has no meaning "
                "in lexical mode"
            )
        return self


class SearchHit(BaseModel):
    score: float = Field(
        description=(
            "What it is depends on the mode. dense: cosine similarity of the chunk to the query, "
            "in [-1, 1]. lexical: BM25 score (positive, unbounded; comparable only within one "
            f"query). hybrid: fused RRF score, the sum of 1 / ({RRF_K} + rank) over the rankings "
            f"that found the chunk (at most 2 / ({RRF_K} + 1)); also the fused score, over "
            "the dense, lexical and image rankings, whenever image vectors were ranked "
            "(images=true and an index with an image model)."
        )
    )
    document_id: uuid.UUID
    file_name: str
    chunk_index: int | None = Field(
        description="the chunk's index in its document; null for a page of an image document "
        "found by what it shows, in which OCR read no text"
    )
    page: int | None
    text: str = Field(
        description="the chunk's text; for an image page found by what it shows, the OCR text of "
        "a chunk of that page (empty when there is none)"
    )
    start_char: int | None
    end_char: int | None
    matched: list[Literal["dense", "lexical", "image"]] = Field(
        default_factory=list,
        description="the rankings that found the hit: dense (the chunk's embedding), lexical "
        "(its words, BM25), image (the picture of its page)",
    )
    dense_rank: int | None = Field(
        None,
        description="1-based place of the chunk in the dense ranking; null if not in it "
        "(lexical mode, or beyond the dense candidates of a hybrid search)",
    )
    lexical_rank: int | None = Field(
        None,
        description="1-based place of the chunk in the lexical (BM25) ranking; null if not in it "
        "(dense mode, no query word in the chunk, or beyond the lexical candidates)",
    )
    dense_score: float | None = Field(
        None, description="cosine similarity of the chunk to the query, when dense_rank is set"
    )
    lexical_score: float | None = Field(
        None, description="BM25 score of the chunk for the query, when lexical_rank is set"
    )
    image_rank: int | None = Field(
        None,
        description="1-based place of the page in the image ranking (the query embedded by the "
        "image model against the pages' image vectors); null if not in it",
    )
    image_score: float | None = Field(
        None,
        description="cosine similarity of the page's image vector to the query in the image "
        "model's space, when image_rank is set",
    )


class SearchResponse(BaseModel):
    query: str
    mode: SearchMode
    results: list[SearchHit]
