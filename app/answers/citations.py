"""Citation markers in an answer as it streams: ``[n]`` names the n-th source of the prompt.

:class:`CitationFilter` takes the model's text deltas and gives back text that is safe to show at
once, plus a :class:`Cited` event the first time each source is cited (after Onyx's
``backend/onyx/chat/citation_processor.py``, which holds back partial markers while streaming):

- **markers**: ``[`` optional spaces, 1 to 3 digits, more numbers after commas, ``]`` — ``[1]``,
  ``[2, 3]``, ``[ 4 ]``. Four or more digits (``[2024]``) are not a marker: a source number is at
  most 100 (the largest ``top_k``).
- **never half a marker**: text that may still become a marker (``[``, ``[1``, ``[1,``) is held
  back until it is complete or cannot be one; a marker always leaves in one piece. The spaces
  before a marker are held with it, because a marker naming no source is removed together with
  them (``"was [9]."`` -> ``"was."``).
- **invalid markers**: numbers naming no source are removed and reported
  (:attr:`CitationFilter.invalid`, first appearance order); ``[1, 9]`` keeps ``[1]``.
- **code is not cited**: inside a fenced block (a run of three or more backticks, closed by a run
  at least as long) or an inline code span (one or two backticks, closed by the same run) brackets
  are plain text. Backticks at the end of a delta are held (the run may go on).

The output does not depend on how the text was cut into deltas: ``feed`` of any split followed by
``finish`` gives the same text and events as one ``feed`` of the whole (a property test checks
it). At the end (:meth:`CitationFilter.finish`) whatever is held is let out as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Digits of a source number in a marker (sources are numbered 1..100).
MAX_DIGITS = 3
#: Longest text held as a possible marker, characters; past it, it is plain text.
MAX_MARKER_CHARS = 64

_SPACE = " \t"
_SPECIAL = frozenset("`[ \t")


@dataclass(frozen=True, slots=True)
class Cited:
    """Source ``n`` was cited for the first time, in the text just before this event."""

    n: int


Event = str | Cited


def _scan_marker(text: str, i: int) -> tuple[str, int, list[int]]:
    """Read a marker starting at ``text[i] == "["``.

    Returns ``("complete", end, numbers)``, ``("partial", len(text), [])`` when the text ends
    inside what may still become a marker, or ``("none", i + 1, [])``.
    """
    n = len(text)
    j = i + 1
    numbers: list[int] = []
    while True:
        while j < n and text[j] in _SPACE:
            j += 1
        start = j
        while j < n and text[j].isascii() and text[j].isdigit():
            j += 1
        digits = j - start
        if j - i > MAX_MARKER_CHARS or digits > MAX_DIGITS:
            return "none", i + 1, []
        if j == n:
            return "partial", n, []
        if digits == 0:
            return "none", i + 1, []
        numbers.append(int(text[start:j]))
        while j < n and text[j] in _SPACE:
            j += 1
        if j == n:
            return ("partial", n, []) if j - i <= MAX_MARKER_CHARS else ("none", i + 1, [])
        if text[j] == "]":
            return "complete", j + 1, numbers
        if text[j] != ",":
            return "none", i + 1, []
        j += 1


class CitationFilter:
    """Streams an answer's text with its citation markers checked (see the module docstring).

    Args:
        sources: how many sources the prompt numbered (``[1]`` .. ``[sources]`` are valid).
    """

    def __init__(self, sources: int) -> None:
        self.sources = sources
        #: Sources cited, in the order of their first citation.
        self.cited: list[int] = []
        #: Numbers of markers that named no source, in the order of their first appearance.
        self.invalid: list[int] = []
        self._held = ""
        self._fence = 0  # length of the backtick run that opened a fenced block; 0: none
        self._inline = 0  # length of the run that opened an inline code span; 0: none
        self._text: list[str] = []

    @property
    def text(self) -> str:
        """Everything let out so far."""
        return "".join(self._text)

    def feed(self, delta: str) -> list[Event]:
        """Take one delta; return what can be shown now: text pieces and :class:`Cited`."""
        self._held += delta
        return self._drain(final=False)

    def finish(self) -> list[Event]:
        """The end of the answer: let out what was held."""
        return self._drain(final=True)

    # ---- the state machine -------------------------------------------------------------------
    def _drain(self, *, final: bool) -> list[Event]:
        buf = self._held
        n = len(buf)
        events: list[Event] = []
        out: list[str] = []

        def emit(text: str) -> None:
            out.append(text)

        def flush() -> None:
            if out:
                piece = "".join(out)
                out.clear()
                if piece:
                    events.append(piece)
                    self._text.append(piece)

        i = 0
        while i < n:
            c = buf[i]
            if c == "`":
                j = i
                while j < n and buf[j] == "`":
                    j += 1
                if j == n and not final:
                    break  # the run may go on in the next delta
                self._backticks(j - i)
                emit(buf[i:j])
                i = j
            elif self._fence or self._inline:
                j = buf.find("`", i)
                j = n if j < 0 else j
                emit(buf[i:j])
                i = j
            elif c in _SPACE or c == "[":
                j = i
                while j < n and buf[j] in _SPACE:
                    j += 1
                if j == n:
                    if not final:
                        break  # spaces before what may be a marker
                    emit(buf[i:j])
                    i = j
                    continue
                if buf[j] != "[":
                    emit(buf[i:j])
                    i = j
                    continue
                status, end, numbers = _scan_marker(buf, j)
                if status == "partial" and not final:
                    break
                if status == "complete":
                    kept = self._marker(numbers)
                    if kept is not None:
                        emit(buf[i:j] + (buf[j:end] if kept == numbers else _render(kept)))
                        new = [m for m in dict.fromkeys(kept) if m not in self.cited]
                        if new:
                            flush()
                            for m in new:
                                self.cited.append(m)
                                events.append(Cited(m))
                    i = end
                else:
                    emit(buf[i : j + 1])
                    i = j + 1
            else:
                j = i
                while j < n and buf[j] not in _SPECIAL:
                    j += 1
                emit(buf[i:j])
                i = j
        flush()
        self._held = buf[i:]
        return events

    def _backticks(self, run: int) -> None:
        """Open or close code on a run of ``run`` backticks."""
        if self._fence:
            if run >= self._fence:
                self._fence = 0
        elif self._inline:
            if run == self._inline:
                self._inline = 0
        elif run >= 3:
            self._fence = run
        else:
            self._inline = run

    def _marker(self, numbers: list[int]) -> list[int] | None:
        """The numbers of a complete marker that name sources (None: none does); records the
        others as invalid."""
        kept = [m for m in numbers if 1 <= m <= self.sources]
        for m in numbers:
            if not 1 <= m <= self.sources and m not in self.invalid:
                self.invalid.append(m)
        return kept or None


def _render(numbers: list[int]) -> str:
    return "[" + ", ".join(str(m) for m in numbers) + "]"


def process(text: str, sources: int) -> tuple[str, list[int], list[int]]:
    """A whole answer at once: ``(text, cited, invalid)`` — the reference the streaming filter
    must agree with whatever the split."""
    f = CitationFilter(sources)
    f.feed(text)
    f.finish()
    return f.text, f.cited, f.invalid
