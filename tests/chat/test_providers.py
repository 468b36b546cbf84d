"""The ``openai``, ``ollama`` and ``gemini`` chat providers through their real SDKs against loopback
servers speaking each wire format (tests/chat/fakes.py), whole and streamed: request shapes,
usage, retries of 429 with Retry-After, 401, streams that break, stall or end unfinished, and
citation markers cut across stream pieces on their way through the answer service."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from app.answers import CitationEvent, DeltaEvent, DoneEvent, SourcesEvent, answer_events
from app.chat import ChatPrompt, ChatUsage
from app.chat.status import chat_provider_statuses
from app.errors import ProviderRejected, ProviderUnavailable
from app.services import SearchResult
from tests.chat.conftest import Flavour
from tests.chat.fakes import DEFAULT_PIECES, ChatReply, FakeChatServer
from tests.embeddings.fakes import Seen

PROMPT = ChatPrompt(
    system="You answer from the sources.",
    user='Sources:\n\n<source n="1" file="a.md" chunk="0">\nAlpha.\n</source>\n\nQuestion: what?',
    question="what?",
    tokens=40,
)


def _check_request(flavour: Flavour, seen: Seen, *, stream: bool) -> None:
    """The request as each API documents it; the key only in its header."""
    body = seen.body
    assert flavour.key.encode() not in seen.raw and flavour.key not in seen.path
    if flavour.name == "openai":
        assert seen.path == "/v1/chat/completions"
        assert body["model"] == "gpt-4o-mini"
        assert body["messages"] == PROMPT.messages()
        assert body["max_tokens"] == 200 and body["temperature"] == 0.2
        assert bool(body.get("stream")) is stream
        if stream:
            assert body["stream_options"] == {"include_usage": True}
        assert seen.headers["authorization"] == f"Bearer {flavour.key}"
    elif flavour.name == "ollama":
        assert seen.path == "/api/chat"
        assert body["model"] == "llama3.2" and body["messages"] == PROMPT.messages()
        assert body["stream"] is stream
        assert body["options"] == {"temperature": 0.2, "num_predict": 200, "num_ctx": 8192}
        assert seen.headers["authorization"] == f"Bearer {flavour.key}"
    else:
        verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
        assert seen.path == f"/v1beta/models/gemini-2.5-flash:{verb}"
        assert body["systemInstruction"]["parts"] == [{"text": PROMPT.system}]
        assert body["contents"] == [{"parts": [{"text": PROMPT.user}], "role": "user"}]
        assert body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 200}
        assert seen.headers["x-goog-api-key"] == flavour.key


def test_whole_and_streamed_answers(flavour: Flavour, server: FakeChatServer) -> None:
    provider = flavour.make(server, max_answer_tokens=200, temperature=0.2)
    try:
        whole = ChatUsage()
        assert provider.complete(PROMPT, usage=whole) == "".join(DEFAULT_PIECES)
        streamed = ChatUsage()
        assert list(provider.stream(PROMPT, usage=streamed)) == DEFAULT_PIECES
    finally:
        provider.close()
    first, second = server.chat_requests
    for usage, seen in ((whole, first), (streamed, second)):
        assert usage.finish_reason == "stop" and usage.requests == 1 and usage.retries == 0
        # As the server reported them.
        assert usage.prompt_tokens == server.prompt_tokens(seen)
        assert usage.completion_tokens and usage.completion_tokens > 0
    _check_request(flavour, first, stream=False)
    _check_request(flavour, second, stream=True)


def _result(i: int, text: str) -> SearchResult:
    return SearchResult(
        score=0.9 - i / 10,
        document_id=uuid.uuid5(uuid.NAMESPACE_URL, f"doc{i}"),
        file_name=f"doc{i}.md",
        chunk_index=i,
        page=None,
        text=text,
        start_char=100 * i,
        end_char=100 * i + len(text),
        chunk_id=uuid.uuid5(uuid.NAMESPACE_URL, f"chunk{i}"),
    )


RESULTS = [
    _result(0, "The opening handshake is an HTTP Upgrade request."),
    _result(1, "The server answers with status 101 Switching Protocols."),
]
#: Markers cut across pieces ("[", "1", "]"), a marker naming no source, one in code.
PIECES = [
    "The opening handshake",
    " is an HTTP Upgrade request ",
    "[",
    "1",
    "]",
    ", answered with 101 [",
    "2",
    "]. See",
    " [7]",
    " and `[1]`",
    " in code.",
]
EXPECTED = (
    "The opening handshake is an HTTP Upgrade request [1], answered with 101 [2]. See and "
    "`[1]` in code."
)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_markers_through_the_answer_service(
    flavour: Flavour, server: FakeChatServer, stream: bool
) -> None:
    server.push(ChatReply(pieces=PIECES))
    provider = flavour.make(server)
    events = list(
        answer_events(
            "how does the handshake work?",
            retrieve=lambda q, k, mode, threshold: RESULTS,
            chat=provider,
            settings=provider.settings,
            stream=stream,
        )
    )
    provider.close()
    assert isinstance(events[0], SourcesEvent) and isinstance(events[-1], DoneEvent)
    deltas = [e.text for e in events if isinstance(e, DeltaEvent)]
    # Never half a marker: no piece ends inside one or starts with the rest of one.
    for delta in deltas:
        assert not re.search(r"\[[\d ,]*$", delta), deltas
        assert not re.match(r"^[\d ,]*\]", delta), deltas
    assert "".join(deltas) == EXPECTED
    cited = [e.source for e in events if isinstance(e, CitationEvent)]
    assert [s.n for s in cited] == [1, 2]
    # Citations carry the chunks' own ids, not positions.
    assert [s.chunk_id for s in cited] == [r.chunk_id for r in RESULTS]
    done = events[-1].answer
    assert done.answer == EXPECTED and done.invalid_citations == [7]
    assert [c.chunk_id for c in done.citations] == [r.chunk_id for r in RESULTS]
    if stream:  # the text arrived in several deltas, the first before the model finished
        assert len(deltas) > 3


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_429_with_retry_after_is_waited_for(
    flavour: Flavour, server: FakeChatServer, stream: bool
) -> None:
    server.push(flavour.rate_limited(1))
    provider = flavour.make(server)
    slept: list[float] = []
    provider.sleep = slept.append  # the waiting itself, recorded instead of slept
    usage = ChatUsage()
    if stream:
        text = "".join(provider.stream(PROMPT, usage=usage))
    else:
        text = provider.complete(PROMPT, usage=usage)
    provider.close()
    assert text == "".join(DEFAULT_PIECES)
    assert usage.requests == 2 and usage.retries == 1
    assert len(slept) == 1 and slept[0] >= 1  # never earlier than the server asked
    assert len(server.chat_requests) == 2


def test_429_asking_more_than_the_budget_fails_at_once(
    flavour: Flavour, server: FakeChatServer
) -> None:
    server.push(flavour.rate_limited(120))
    provider = flavour.make(server, retry_budget_s=30)
    slept: list[float] = []
    provider.sleep = slept.append
    with pytest.raises(ProviderUnavailable) as info:
        list(provider.stream(PROMPT))
    provider.close()
    assert info.value.retry_after_s == 120
    assert "HTTP 429" in str(info.value) and "gave up after 1 tries" in str(info.value)
    assert slept == [] and len(server.chat_requests) == 1


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_401_is_permanent_and_redacted(
    flavour: Flavour, server: FakeChatServer, stream: bool
) -> None:
    server.push(flavour.unauthorized())
    provider = flavour.make(server)
    with pytest.raises(ProviderRejected) as info:
        if stream:
            list(provider.stream(PROMPT))
        else:
            provider.complete(PROMPT)
    provider.close()
    message = str(info.value)
    assert "HTTP 401" in message
    assert flavour.key not in message and flavour.key[-4:] not in message.split("check")[0]
    # The SDK's exception (which may hold the key or the request) is not chained.
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert len(server.chat_requests) == 1  # never retried


def test_a_stream_that_breaks_midway_raises_after_its_text(
    flavour: Flavour, server: FakeChatServer
) -> None:
    server.push(ChatReply(cut_after=2))
    provider = flavour.make(server)
    got: list[str] = []
    chars = len("".join(DEFAULT_PIECES[:2]))
    with pytest.raises(ProviderUnavailable, match=f"stream broke after {chars} characters"):
        for delta in provider.stream(PROMPT):
            got.append(delta)
    provider.close()
    assert got == DEFAULT_PIECES[:2]
    assert len(server.chat_requests) == 1  # text was out: no second generation


def test_a_stream_that_breaks_before_any_text_is_retried(
    flavour: Flavour, server: FakeChatServer
) -> None:
    server.push(ChatReply(cut_after=0))
    provider = flavour.make(server)
    usage = ChatUsage()
    assert list(provider.stream(PROMPT, usage=usage)) == DEFAULT_PIECES
    provider.close()
    assert usage.retries == 1 and len(server.chat_requests) == 2


def test_a_stream_that_breaks_before_its_first_text_is_retried(
    flavour: Flavour, server: FakeChatServer
) -> None:
    # A first piece without text (a role, an empty part) hands nothing out: still retried.
    server.push(ChatReply(pieces=["", *DEFAULT_PIECES], cut_after=1))
    provider = flavour.make(server)
    usage = ChatUsage()
    assert list(provider.stream(PROMPT, usage=usage)) == DEFAULT_PIECES
    provider.close()
    assert usage.retries == 1 and len(server.chat_requests) == 2


def test_a_stream_that_breaks_after_the_model_finished_is_whole(
    flavour: Flavour, server: FakeChatServer
) -> None:
    # The connection drops right after the finishing event (OpenAI's usage chunk and [DONE],
    # the end of the chunked body are lost): the answer is complete.
    server.push(ChatReply(cut_after=len(DEFAULT_PIECES) + 1))
    provider = flavour.make(server)
    usage = ChatUsage()
    assert list(provider.stream(PROMPT, usage=usage)) == DEFAULT_PIECES
    provider.close()
    assert usage.finish_reason == "stop" and usage.retries == 0


def test_a_stream_that_ends_unfinished_is_an_error(
    flavour: Flavour, server: FakeChatServer
) -> None:
    server.push(ChatReply(unfinished=True))
    provider = flavour.make(server)
    got: list[str] = []
    with pytest.raises(ProviderUnavailable, match="ended before the model finished"):
        for delta in provider.stream(PROMPT):
            got.append(delta)
    provider.close()
    assert got == DEFAULT_PIECES


def test_a_stalled_stream_ends_at_the_timeout(flavour: Flavour, server: FakeChatServer) -> None:
    server.push(ChatReply(cut_after=1, stall_s=5))
    provider = flavour.make(server, request_timeout_s=0.5)
    got: list[str] = []
    with pytest.raises(ProviderUnavailable, match="stream broke after"):
        for delta in provider.stream(PROMPT):
            got.append(delta)
    provider.close()
    assert got == DEFAULT_PIECES[:1]


def test_status_probes_the_configured_provider(flavour: Flavour, server: FakeChatServer) -> None:
    settings = flavour.settings(server)
    report = {r.provider: r for r in chat_provider_statuses(settings, probe="configured")}
    mine = report[flavour.name]
    assert mine.configured and mine.available, mine
    assert mine.checks["server"].startswith("answered in")
    assert mine.model and mine.base_url == flavour.base_url(server)
    assert report["extractive"].available and not report["extractive"].generative
    probe: Any = server.chat_requests[0].body
    assert probe is not None  # one real request reached the server
    # A refused key: unavailable, with the reason (and never the key).
    from app.chat.status import clear_chat_probe_cache

    clear_chat_probe_cache()
    server.push(flavour.unauthorized())
    mine = {r.provider: r for r in chat_provider_statuses(settings)}[flavour.name]
    assert not mine.available and mine.reason and "HTTP 401" in mine.reason
    assert flavour.key not in mine.reason
