"""Answering a question from a project's chunks: retrieve, pack, generate, check the citations.

One generator, :func:`answer_events`, serves every entry point — the streamed API (as Server-Sent
Events), the whole-answer API and ``docvec ask`` — so they cannot drift apart::

    retrieve(question, top_k, mode, score_threshold)   the caller's search (one helper per entry
        |                                              point: app/api/routes/answers.py, cli/ask.py)
    build_prompt: number the chunks, pack them by tokens      -> Sources(sources)
        |  no source (and no answer_without_sources): no model call, no_answer
    chat.stream / chat.complete                               -> Delta(text) ...
        |  CitationFilter: markers held back, invalid ones removed, code skipped
        |                                                     -> Cited(source) when first cited
    the whole response                                        -> Done(answer)

Errors (retrieval's, the provider's) are raised from the generator; a streamed caller turns them
into its ``error`` event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.answers.citations import CitationFilter, Cited
from app.answers.prompt import Source, build_prompt
from app.chat.base import ChatProvider, ChatUsage
from app.config import ChatSettings
from app.services import SearchResult
from app.vectorstore import DEFAULT_SEARCH_MODE, SearchMode

#: ``retrieve(question, top_k, mode, score_threshold)`` -> the best chunks, best first.
Retrieve = Callable[[str, int, SearchMode, float | None], list[SearchResult]]

#: The answer when no chunk passed the threshold (and the model was not asked).
NO_ANSWER = (
    "The documents of this project do not answer this question: no passage matched it closely "
    "enough."
)


@dataclass(frozen=True, slots=True)
class SourcesEvent:
    """The numbered sources of the prompt, before any text."""

    sources: list[Source]


@dataclass(frozen=True, slots=True)
class DeltaEvent:
    """A piece of the answer's text, safe to show (never half a citation marker)."""

    text: str


@dataclass(frozen=True, slots=True)
class CitationEvent:
    """``source`` was cited for the first time, in the text just sent."""

    source: Source


@dataclass
class Answer:
    """The whole answer: what ``done`` carries and what a non-streamed request returns."""

    question: str
    answer: str
    no_answer: bool
    extractive: bool
    sources: list[Source]
    cited: list[int]
    invalid_citations: list[int]
    provider: str
    model: str | None
    mode: SearchMode
    top_k: int
    score_threshold: float | None
    usage: dict[str, Any] = field(default_factory=dict)
    retrieval_ms: float = 0.0
    generation_ms: float = 0.0

    @property
    def latency_ms(self) -> float:
        """Retrieval plus generation, milliseconds."""
        return self.retrieval_ms + self.generation_ms

    @property
    def citations(self) -> list[Source]:
        """The cited sources, in the order of their first citation."""
        by_n = {s.n: s for s in self.sources}
        return [by_n[n] for n in self.cited]

    def as_dict(self) -> dict[str, Any]:
        """``{question, answer, citations, sources (each with cited), no_answer, extractive,
        invalid_citations, provider, model, mode, top_k, score_threshold, usage, latency_ms,
        retrieval_ms, generation_ms}``, JSON-ready."""
        cited = set(self.cited)
        return {
            "question": self.question,
            "answer": self.answer,
            "citations": [s.as_dict() for s in self.citations],
            "sources": [{**s.as_dict(), "cited": s.n in cited} for s in self.sources],
            "no_answer": self.no_answer,
            "extractive": self.extractive,
            "invalid_citations": list(self.invalid_citations),
            "provider": self.provider,
            "model": self.model,
            "mode": self.mode,
            "top_k": self.top_k,
            "score_threshold": self.score_threshold,
            "usage": dict(self.usage),
            "latency_ms": round(self.latency_ms, 1),
            "retrieval_ms": round(self.retrieval_ms, 1),
            "generation_ms": round(self.generation_ms, 1),
        }


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """The end: the whole answer."""

    answer: Answer


AnswerEvent = SourcesEvent | DeltaEvent | CitationEvent | DoneEvent


def answer_events(
    question: str,
    *,
    retrieve: Retrieve,
    chat: ChatProvider,
    settings: ChatSettings,
    top_k: int | None = None,
    mode: SearchMode = DEFAULT_SEARCH_MODE,
    score_threshold: float | None = None,
    stream: bool = True,
    project: str | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[AnswerEvent]:
    """Answer ``question``: ``SourcesEvent``, then ``DeltaEvent``/``CitationEvent``s, then
    ``DoneEvent``.

    Args:
        retrieve: the caller's search over one project (see :data:`Retrieve`).
        chat: the provider that writes the answer.
        settings: defaults (``top_k``, ``score_threshold``) and prompt limits.
        top_k / score_threshold: None = the settings' (no threshold in ``lexical`` mode, where a
            cosine similarity has no meaning).
        stream: ask the provider for a stream (deltas as they come) or one whole answer (one
            delta).
        project: the project's name, for the instructions.
        clock: seconds, for the timings.

    Raises (while iterating): whatever ``retrieve`` raises; the provider's
    :class:`~app.errors.ProviderUnavailable` / :class:`~app.errors.ProviderRejected`.
    """
    k = top_k or settings.top_k
    threshold = score_threshold
    if threshold is None and mode != "lexical":
        threshold = settings.score_threshold
    t0 = clock()
    results = retrieve(question, k, mode, threshold)
    t1 = clock()
    packed = build_prompt(question, results, settings=settings, project=project)
    sources = packed.sources
    yield SourcesEvent(sources)

    usage = ChatUsage()
    citations = CitationFilter(len(sources))
    by_n = {s.n: s for s in sources}
    no_answer = not sources

    def events(pieces: list[str | Cited]) -> Iterator[AnswerEvent]:
        for piece in pieces:
            if isinstance(piece, Cited):
                yield CitationEvent(by_n[piece.n])
            else:
                yield DeltaEvent(piece)

    if no_answer and not settings.answer_without_sources:
        yield from events(citations.feed(NO_ANSWER))
    elif stream:
        for delta in chat.stream(packed.prompt, usage=usage):
            yield from events(citations.feed(delta))
    else:
        yield from events(citations.feed(chat.complete(packed.prompt, usage=usage)))
    yield from events(citations.finish())
    t2 = clock()
    yield DoneEvent(
        Answer(
            question=question,
            answer=citations.text,
            no_answer=no_answer,
            extractive=not chat.generative,
            sources=sources,
            cited=list(citations.cited),
            invalid_citations=list(citations.invalid),
            provider=chat.name,
            model=chat.model,
            mode=mode,
            top_k=k,
            score_threshold=threshold,
            usage={
                **usage.as_dict(),
                "context_tokens": packed.prompt.tokens,
                "sources_retrieved": len(results),
                "sources_dropped": packed.dropped,
            },
            retrieval_ms=(t1 - t0) * 1000,
            generation_ms=(t2 - t1) * 1000,
        )
    )


def answer(
    question: str,
    *,
    retrieve: Retrieve,
    chat: ChatProvider,
    settings: ChatSettings,
    top_k: int | None = None,
    mode: SearchMode = DEFAULT_SEARCH_MODE,
    score_threshold: float | None = None,
    project: str | None = None,
) -> Answer:
    """The whole answer at once, from one non-streamed provider call: the last event of
    :func:`answer_events` (same arguments, same errors)."""
    done: Answer | None = None
    for event in answer_events(
        question,
        retrieve=retrieve,
        chat=chat,
        settings=settings,
        top_k=top_k,
        mode=mode,
        score_threshold=score_threshold,
        stream=False,
        project=project,
    ):
        if isinstance(event, DoneEvent):
            done = event.answer
    assert done is not None  # the generator ends with DoneEvent or raises
    return done
