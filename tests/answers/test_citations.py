"""The streaming citation filter: partial markers held back, invalid ones removed, code skipped —
and the same output whatever the split of the text into deltas (hypothesis)."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.answers.citations import CitationFilter, Cited, process


def run(pieces: list[str], sources: int = 3) -> tuple[list[list[str | Cited]], CitationFilter]:
    f = CitationFilter(sources)
    out = [f.feed(p) for p in pieces]
    out.append(f.finish())
    return out, f


def merged(batches: list[list[str | Cited]]) -> list[str | Cited]:
    """The events of all batches with adjacent text pieces joined."""
    events: list[str | Cited] = []
    for event in (e for batch in batches for e in batch):
        if isinstance(event, str) and events and isinstance(events[-1], str):
            events[-1] += event
        else:
            events.append(event)
    return events


def test_a_marker_split_in_three_is_held_then_sent_whole() -> None:
    batches, f = run(["The handshake ", "[", "1", "]", " is done."])
    # Nothing of "[1]" (nor the space before it) leaves before the marker is complete.
    assert batches[:4] == [["The handshake"], [], [], [" [1]", Cited(1)]]
    assert f.text == "The handshake [1] is done." and f.cited == [1] and f.invalid == []


@pytest.mark.parametrize(
    ("text", "expected", "cited", "invalid"),
    [
        ("A [1] and B [2].", "A [1] and B [2].", [1, 2], []),
        ("Both [1, 2] and [2][3].", "Both [1, 2] and [2][3].", [1, 2, 3], []),
        ("Spaced [ 2 ] ok", "Spaced [ 2 ] ok", [2], []),
        # A marker naming no source goes, with the spaces before it.
        ("Stated [9]. Again [9] and [0].", "Stated. Again and.", [], [9, 0]),
        ("Mixed [1, 9, 2].", "Mixed [1, 2].", [1, 2], [9]),
        # Code is not cited: inline spans of one or two backticks, fenced blocks.
        ("Use `a[1]` or ``b[2]`` here [3].", "Use `a[1]` or ``b[2]`` here [3].", [3], []),
        ("```py\nx = y[1]\n```\nSee [2].", "```py\nx = y[1]\n```\nSee [2].", [2], []),
        ("````\n```\n[1]\n````\n[1]", "````\n```\n[1]\n````\n[1]", [1], []),
        # Not markers: four digits, words, an unclosed bracket at the end.
        ("In [2024] and [a] and [1", "In [2024] and [a] and [1", [], []),
        ("Trailing spaces stay   ", "Trailing spaces stay   ", [], []),
        ("List [1,]", "List [1,]", [], []),
    ],
)
def test_whole_answers(text: str, expected: str, cited: list[int], invalid: list[int]) -> None:
    assert process(text, 3) == (expected, cited, invalid)


def test_a_source_is_announced_once_in_first_citation_order() -> None:
    batches, _ = run(["[2] then [1] then [2, 1] [3]"])
    assert [e for e in merged(batches) if isinstance(e, Cited)] == [Cited(2), Cited(1), Cited(3)]
    # Each announcement follows the text that holds its marker.
    events = merged(batches)
    assert events[0] == "[2]" and events[1] == Cited(2)


def test_nothing_is_cited_without_sources() -> None:
    assert process("No sources [1].", 0) == ("No sources.", [], [1])


#: Text made of the pieces that matter to the filter.
TOKENS = st.sampled_from(
    [
        "[1]",
        "[2, 3]",
        "[ 1 ]",
        "[9]",
        "[0]",
        "[1, 9]",
        "[12",
        "[1234]",
        "[",
        "]",
        ",",
        " ",
        "  ",
        "\t",
        "\n",
        "`",
        "``",
        "```",
        "x",
        "word",
        "7",
        "é",
        "[a]",
    ]
)
TEXTS = st.lists(TOKENS, max_size=40).map("".join)


@st.composite
def split_texts(draw: st.DrawFn, texts: st.SearchStrategy[str] = TEXTS) -> list[str]:
    text = draw(texts)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(pieces=split_texts())
def test_any_split_gives_the_same_output(pieces: list[str]) -> None:
    text = "".join(pieces)
    whole_batches, whole = run([text])
    split_batches, split = run(pieces)
    assert split.text == whole.text
    assert split.cited == whole.cited and split.invalid == whole.invalid
    assert merged(split_batches) == merged(whole_batches)


_MARKER = re.compile(r"\[[ \t]*\d{1,3}(?:[ \t]*,[ \t]*\d{1,3})*[ \t]*\]")


@settings(max_examples=300, deadline=None)
@given(pieces=split_texts(TEXTS.filter(lambda t: "`" not in t)))
def test_never_half_a_marker(pieces: list[str]) -> None:
    """Outside code, every marker of the output leaves in one piece: no piece boundary falls
    inside one, whatever the split."""
    batches, f = run(pieces)
    boundaries, at = set(), 0
    for event in (e for batch in batches for e in batch):
        if isinstance(event, str):
            at += len(event)
            boundaries.add(at)
    for m in _MARKER.finditer(f.text):
        assert not any(m.start() < b < m.end() for b in boundaries), (pieces, m.group())
