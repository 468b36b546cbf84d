"""Documents: upload, list, read, chunks, a new version of the file, re-vectorize, delete."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Query, Response, UploadFile, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import services
from app.api.deps import DispatchDep, Dispatcher, RuntimeDep, SessionDep
from app.api.schemas import (
    BROKER_DOWN_MESSAGE,
    Accepted,
    ChunkOut,
    DocumentDetail,
    DocumentOut,
    Page,
    ReplacedDocument,
    UploadedDocument,
    UploadResponse,
    accepted,
)
from app.api.strict_json import StrictJSONRoute
from app.config import OcrSettings
from app.db.models import Document, DocumentChunk, DocumentStatus
from app.errors import DocumentTooLarge, UnsupportedFormat
from app.pipeline.extract import IMAGE_TYPES, SUPPORTED_TYPES, check_image_upload, detect_type
from app.runtime import Runtime
from app.storage import CHUNK_BYTES

router = APIRouter(tags=["documents"], route_class=StrictJSONRoute)

LimitQ = Annotated[int, Query(ge=1, le=500)]
# Bounded so that the database never sees an OFFSET past its integer range (a 500).
OffsetQ = Annotated[int, Query(ge=0, le=2**31 - 1)]


#: Longest ``Content-Type`` of a part that is recorded (``documents.content_type`` is 100 long).
MAX_CONTENT_TYPE = 100


def _bad_content_type(value: str | None) -> str | None:
    """Why a part's ``Content-Type`` cannot be recorded, or None. PostgreSQL refuses NUL and the
    column's length, and no media type holds a control character but a tab (RFC 9110 §8.3)."""
    if value is None:
        return None
    if len(value) > MAX_CONTENT_TYPE:
        return f"the part's Content-Type is longer than {MAX_CONTENT_TYPE} characters"
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
        return "the part's Content-Type holds a control character"
    return None


def _supported_types(ocr_mode: str) -> list[str]:
    """The MIME types an upload may have: images only while OCR is on."""
    kinds = [k for k in SUPPORTED_TYPES if ocr_mode != "off" or k not in IMAGE_TYPES]
    return sorted({SUPPORTED_TYPES[k] for k in kinds})


def _check_image(upload: UploadFile, kind: str, ocr: OcrSettings) -> None:
    """An image's guards at upload: OCR on (else 415), pixels of its first page within
    ``ocr.max_image_pixels`` by its header (else 413). Its pages and its data are checked by the
    extraction, which fails a bad one with the reason."""
    if ocr.mode == "off":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            {
                "message": f"{upload.filename}: images are read by OCR, which is off here "
                "(DOCVEC_OCR__MODE=off)",
                "supported_types": _supported_types(ocr.mode),
            },
        )
    try:
        check_image_upload(upload.file, kind, max_pixels=ocr.max_image_pixels)
    except DocumentTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"{upload.filename}: {exc}") from exc


def check_upload(upload: UploadFile, ocr: OcrSettings) -> None:
    """Refuse a file part that cannot become a document, before anything is stored: the checks
    of every upload (``POST /projects/{id}/documents``, ``PUT /documents/{id}/file``, the web
    console). Its size is checked while it is stored (``max_upload_bytes``).

    Raises:
        HTTPException: 422 for an empty file or an unrecordable part ``Content-Type``; 415 for a
            type sniffed as unsupported (``detail`` holds ``message`` and ``supported_types``);
            413 for an image whose first page has more pixels than ``ocr.max_image_pixels``.
    """
    head = upload.file.read(8192)
    upload.file.seek(0)
    if not head:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{upload.filename}: the file is empty"
        )
    if problem := _bad_content_type(upload.content_type):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{upload.filename}: {problem}")
    try:
        kind = detect_type(head, upload.filename or "")
    except UnsupportedFormat as exc:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            {
                "message": f"{upload.filename}: {exc}",
                "supported_types": _supported_types(ocr.mode),
            },
        ) from exc
    if kind in IMAGE_TYPES:
        _check_image(upload, kind, ocr)


def _pieces(upload: UploadFile) -> Iterator[bytes]:
    while piece := upload.file.read(CHUNK_BYTES):
        yield piece


@router.post(
    "/projects/{project_id}/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadResponse,
)
def upload_documents(
    project_id: uuid.UUID,
    files: Annotated[list[UploadFile], File(description="one or more documents")],
    session: SessionDep,
    runtime: RuntimeDep,
    dispatch: DispatchDep,
) -> dict[str, object]:
    """Upload documents; each is stored, recorded and queued. Same bytes return the existing one."""
    return accept_uploads(
        session, runtime=runtime, dispatch=dispatch, project_id=project_id, files=files
    )


def accept_uploads(
    session: Session,
    *,
    runtime: Runtime,
    dispatch: Dispatcher,
    project_id: uuid.UUID,
    files: Sequence[UploadFile],
) -> dict[str, object]:
    """The upload route's work, shared with the web console (app/api/ui/), which sends each file
    of a batch on its own so that each gets its own answer.

    Every file is checked before any is recorded, so a bad file in a batch records nothing; a
    request that fails after storing some files removes them again. Returns the body of
    :class:`~app.api.schemas.UploadResponse`.

    Raises:
        HTTPException: 422 for an empty file or an unrecordable part ``Content-Type``; 415 for a
            type sniffed as unsupported (``detail`` holds ``message`` and ``supported_types``);
            413 for a file over ``max_upload_bytes``.
        NotFound: no such project.
    """
    project = services.get_project(session, project_id)
    # Validate every file before recording any, so a bad file in a batch records nothing.
    for upload in files:
        check_upload(upload, runtime.settings.ocr)
    added: list[services.AddResult] = []
    try:
        for upload in files:
            try:
                added.append(
                    services.add_document(
                        session,
                        project=project,
                        storage=runtime.storage,
                        file_name=upload.filename,
                        pieces=_pieces(upload),
                        content_type=upload.content_type,
                        max_bytes=runtime.settings.max_upload_bytes,
                    )
                )
            except DocumentTooLarge as exc:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE, f"{upload.filename}: {exc}"
                ) from exc
        published = dispatch(
            session, [(r.document.id, r.document.generation) for r in added if r.created]
        )
    except BaseException:
        # Nothing of a refused or failed request stays: the files it stored for its earlier
        # parts go too — unless a committed document has the same bytes (files are shared).
        uris = [r.document.storage_uri for r in added if r.created]
        services.discard_uploads(session, runtime.storage, uris)
        raise
    return {
        "published": published,
        "message": None if published else BROKER_DOWN_MESSAGE,
        "documents": [
            UploadedDocument(
                id=r.document.id,
                file_name=r.document.file_name,
                status=r.document.status,
                created=r.created,
                status_url=f"/documents/{r.document.id}",
            )
            for r in added
        ],
    }


@router.get("/projects/{project_id}/documents", response_model=Page[DocumentOut])
def list_documents(
    project_id: uuid.UUID,
    session: SessionDep,
    status_: Annotated[DocumentStatus | None, Query(alias="status")] = None,
    limit: LimitQ = 50,
    offset: OffsetQ = 0,
) -> dict[str, object]:
    """List a project's documents, optionally by status."""
    services.get_project(session, project_id)
    cond = [Document.project_id == project_id]
    if status_ is not None:
        cond.append(Document.status == status_.value)
    total = session.scalar(select(func.count()).select_from(Document).where(*cond)) or 0
    items = session.scalars(
        select(Document)
        .where(*cond)
        .order_by(Document.created_at, Document.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/documents/{document_id}", response_model=DocumentDetail)
def get_document(document_id: uuid.UUID, session: SessionDep) -> Document:
    """A document's status, error, failed stage, counts, model and every attempt."""
    return services.get_document(session, document_id)


@router.get("/documents/{document_id}/chunks", response_model=Page[ChunkOut])
def list_chunks(
    document_id: uuid.UUID, session: SessionDep, limit: LimitQ = 100, offset: OffsetQ = 0
) -> dict[str, object]:
    """A document's chunks in order."""
    services.get_document(session, document_id)
    items, total = chunk_page(session, document_id=document_id, limit=limit, offset=offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def chunk_page(
    session: Session, *, document_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[DocumentChunk], int]:
    """``limit`` chunks of a document from ``offset``, by chunk index, and how many it has in
    all; shared with the web console's document page."""
    cond = DocumentChunk.document_id == document_id
    total = session.scalar(select(func.count()).select_from(DocumentChunk).where(cond)) or 0
    items = session.scalars(
        select(DocumentChunk)
        .where(cond)
        .order_by(DocumentChunk.chunk_index)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(items), total


@router.put(
    "/documents/{document_id}/file",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReplacedDocument,
    responses={
        404: {"description": "no such document"},
        409: {"description": "another document of the project has these bytes"},
        413: {"description": "the file is over the upload limit"},
        415: {"description": "the file's type (sniffed from its content) is not supported"},
        422: {"description": "the file is empty, or its part's Content-Type unrecordable"},
    },
)
def replace_document_file(
    document_id: uuid.UUID,
    file: Annotated[UploadFile, File(description="the document's new version")],
    session: SessionDep,
    runtime: RuntimeDep,
    dispatch: DispatchDep,
) -> dict[str, object]:
    """Give a document a new version of its file: same id, its old chunks replaced."""
    doc = services.get_document(session, document_id, for_update=True)
    check_upload(file, runtime.settings.ocr)
    # The part's name, unless it is the document's own base name: a document recorded by
    # `docvec ingest` under its path (guide/intro.md) keeps that path, by which the next
    # ingest finds it.
    name = services.sanitize_file_name(file.filename) if file.filename else None
    if name == services.sanitize_file_name(doc.file_name):
        name = None
    try:
        result = services.replace_document(
            session,
            document=doc,
            storage=runtime.storage,
            pieces=_pieces(file),
            file_name=name,
            content_type=file.content_type,
            max_bytes=runtime.settings.max_upload_bytes,
        )
    except DocumentTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"{file.filename}: {exc}") from exc
    try:
        published = dispatch(session, result.jobs)  # commits
    except BaseException:
        if result.changed:
            services.discard_uploads(session, runtime.storage, [result.new_uri])
        raise
    if result.old_uri is not None:
        # Only now that the new version is committed; unless another document shares it.
        services.delete_unreferenced_files(session, runtime.storage, [result.old_uri])
    doc = result.document
    return {
        "id": doc.id,
        "file_name": doc.file_name,
        "status": doc.status,
        "sha256": doc.sha256,
        "size_bytes": doc.size_bytes,
        "generation": doc.generation,
        "changed": result.changed,
        "queued": len(result.jobs),
        "status_url": f"/documents/{doc.id}",
        "published": published,
        "message": None if published else BROKER_DOWN_MESSAGE,
    }


@router.post(
    "/documents/{document_id}/revectorize",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
)
def revectorize_document(
    document_id: uuid.UUID, session: SessionDep, dispatch: DispatchDep
) -> dict[str, object]:
    """Re-vectorize one document (a newer request supersedes runs still in flight)."""
    doc = services.get_document(session, document_id, for_update=True)
    # Coalesced into a job still on its way (outbox or queue): a double click queues nothing more.
    jobs = services.revectorize_document(session, document=doc)
    if not jobs:
        return accepted([], published=True, document_ids=[doc.id])
    return accepted(jobs, published=dispatch(session, jobs))


@router.delete("/documents/{document_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_document(document_id: uuid.UUID, session: SessionDep, runtime: RuntimeDep) -> Response:
    """Delete a document with its chunks, points and (if unshared) its file."""
    doc = services.get_document(session, document_id)
    services.delete_document(
        session,
        document=doc,
        stores=runtime.project_stores(session, doc.project_id),
        storage=runtime.storage,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
