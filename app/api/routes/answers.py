"""Answers with references: ``POST /projects/{project_id}/answer``, whole or streamed (SSE)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, model_validator

from app import answers, services
from app.api import sse
from app.api.deps import RuntimeDep, SessionDep
from app.api.strict_json import StrictJSONRoute
from app.errors import DocvecError, PermanentError, ProviderRejected, TransientError
from app.runtime import Runtime
from app.vectorstore import DEFAULT_SEARCH_MODE, SearchMode

router = APIRouter(prefix="/projects", tags=["answers"], route_class=StrictJSONRoute)


class AnswerRequest(BaseModel):
    """A question for one project. The limits are the search query's."""

    question: str = Field(min_length=1, max_length=8_000)
    top_k: int | None = Field(
        None, ge=1, le=100, description="Chunks retrieved; null = DOCVEC_CHAT__TOP_K (8)."
    )
    mode: SearchMode = Field(
        DEFAULT_SEARCH_MODE, description="How the chunks are retrieved (as in search)."
    )
    score_threshold: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description=(
            "Lowest cosine similarity of a chunk (dense side, as in search); null = "
            "DOCVEC_CHAT__SCORE_THRESHOLD. No chunk passing it: no_answer, no model call. "
            "Not allowed with mode lexical."
        ),
    )
    stream: bool = Field(
        False,
        description=(
            "Answer with Server-Sent Events: sources, delta..., citation (a source's first "
            "citation), then done (the whole answer) or error; ': keep-alive' comments while "
            "the model is silent."
        ),
    )

    @model_validator(mode="after")
    def _threshold_is_dense(self) -> AnswerRequest:
        if self.mode == "lexical" and self.score_threshold is not None:
            raise ValueError(
                "score_threshold is a cosine similarity of the dense side: it has no meaning "
                "in lexical mode"
            )
        return self


class SourceOut(BaseModel):
    n: int = Field(description="The number [n] in the answer refers to.")
    chunk_id: uuid.UUID = Field(description="The chunk's stable id (= its point id).")
    document_id: uuid.UUID
    file_name: str
    page: int | None
    chunk_index: int
    start_char: int = Field(description="Offsets of the chunk in its document's text.")
    end_char: int
    score: float = Field(description="The search score of the mode used.")
    text: str


class UsedSourceOut(SourceOut):
    cited: bool = Field(description="Whether the answer cites it.")


class AnswerResponse(BaseModel):
    question: str
    answer: str = Field(description="The answer; [n] markers name sources.")
    citations: list[SourceOut] = Field(description="Cited sources, in order of first citation.")
    sources: list[UsedSourceOut] = Field(description="Every source the prompt held.")
    no_answer: bool = Field(description="No chunk passed the threshold: nothing to answer from.")
    extractive: bool = Field(description="The answer quotes the sources; no model wrote it.")
    invalid_citations: list[int] = Field(description="Markers that named no source (removed).")
    provider: str
    model: str | None
    mode: SearchMode
    top_k: int
    score_threshold: float | None
    usage: dict[str, Any] = Field(
        description="prompt_tokens, completion_tokens (as reported), requests, retries, "
        "finish_reason, context_tokens (docvec's count), sources_retrieved, sources_dropped"
    )
    latency_ms: float
    retrieval_ms: float
    generation_ms: float


def _retriever(runtime: Runtime, project_id: uuid.UUID) -> answers.Retrieve:
    """The one place this entry point reaches search (:meth:`Runtime.retriever`)."""
    return runtime.retriever(project_id)


def _failure(exc: DocvecError) -> JSONResponse:
    """A provider or store failure as an answer: 503 (transient, with Retry-After when known),
    502 (the chat provider refused: key, model), 409 (another permanent error)."""
    headers: dict[str, str] = {}
    if isinstance(exc, TransientError):
        code = status.HTTP_503_SERVICE_UNAVAILABLE
        if exc.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    elif isinstance(exc, ProviderRejected):
        code = status.HTTP_502_BAD_GATEWAY
    else:
        code = status.HTTP_409_CONFLICT
    return JSONResponse(
        {"detail": str(exc), "error_class": type(exc).__name__}, status_code=code, headers=headers
    )


@router.post(
    "/{project_id}/answer",
    response_model=AnswerResponse,
    responses={
        200: {
            "content": {
                sse.MEDIA_TYPE: {
                    "schema": {"type": "string"},
                    "example": 'event: delta\ndata: {"text": "The handshake [1]"}\n\n',
                }
            },
            "description": "The answer, or with stream=true its events (text/event-stream).",
        },
        502: {"description": "The chat provider refused the request (key, model)."},
        503: {"description": "The chat provider or a store is unavailable; Retry-After."},
    },
)
def answer(
    project_id: uuid.UUID, body: AnswerRequest, session: SessionDep, runtime: RuntimeDep
) -> Response | dict[str, Any]:
    """Answer a question from the project's chunks, citing them as [n]."""
    project = services.get_project(session, project_id)
    name = project.name
    retrieve = _retriever(runtime, project.id)
    chat_settings = runtime.settings.chat

    def events() -> Iterator[answers.AnswerEvent]:
        return answers.answer_events(
            body.question,
            retrieve=retrieve,
            chat=runtime.chat,
            settings=chat_settings,
            top_k=body.top_k,
            mode=body.mode,
            score_threshold=body.score_threshold,
            stream=True,
            project=name,
        )

    if body.stream:
        return StreamingResponse(
            sse.answer_stream(events, keepalive_s=chat_settings.keepalive_s),
            media_type=sse.MEDIA_TYPE,
            headers=sse.HEADERS,
        )
    try:
        result = answers.answer(
            body.question,
            retrieve=retrieve,
            chat=runtime.chat,
            settings=chat_settings,
            top_k=body.top_k,
            mode=body.mode,
            score_threshold=body.score_threshold,
            project=name,
        )
    except (TransientError, PermanentError) as exc:
        return _failure(exc)
    return result.as_dict()
