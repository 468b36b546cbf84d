"""Answers with references: a question, the project's best chunks as numbered sources, an answer
whose ``[n]`` markers point at them (the chunk id, document, page and offsets of each).

- ``service.py``: :func:`answer_events` / :func:`answer`, the one flow every entry point runs
  (retrieval is a callable the caller supplies, so this package never opens a store itself);
- ``prompt.py``: the instructions, the delimited sources, packing by tokens;
- ``citations.py``: the streaming citation filter (partial markers held back, invalid ones
  removed, code skipped).

The chat providers that write the answer are ``app/chat/``.
"""

from __future__ import annotations

from app.answers.citations import CitationFilter, Cited
from app.answers.prompt import Packed, Source, build_prompt
from app.answers.service import (
    NO_ANSWER,
    Answer,
    AnswerEvent,
    CitationEvent,
    DeltaEvent,
    DoneEvent,
    Retrieve,
    SourcesEvent,
    answer,
    answer_events,
)

__all__ = [
    "NO_ANSWER",
    "Answer",
    "AnswerEvent",
    "CitationEvent",
    "CitationFilter",
    "Cited",
    "DeltaEvent",
    "DoneEvent",
    "Packed",
    "Retrieve",
    "Source",
    "SourcesEvent",
    "answer",
    "answer_events",
    "build_prompt",
]
