"""Cutting a call's inputs into requests: a pure function of the inputs' token counts.

Every provider sends at most ``batch_size`` inputs per request and, where the API documents one
(OpenAI: 300,000), at most so many tokens summed over a request. The cut keeps input order and
never drops or splits an input, so the batches' vectors concatenate back into the call's.
Modelled on pgai's ``batch_indices`` (timescale/pgai, ``vectorizer/embeddings.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def batch_indices(
    token_counts: Sequence[int], *, batch_size: int, max_tokens: int | None = None
) -> Iterator[tuple[int, int]]:
    """Cut inputs with these token counts into consecutive ``[start, end)`` index ranges.

    Each range holds at most ``batch_size`` inputs (``>= 1``) and, if ``max_tokens`` is given, at
    most ``max_tokens`` tokens. A single input over ``max_tokens`` still forms its own range (the
    provider fits inputs to the model's input limit first, which is below the request limit).
    The ranges cover ``0 .. len(token_counts)`` exactly, in order; none for no inputs.
    """
    start, total = 0, len(token_counts)
    while start < total:
        end, tokens = start, 0
        while end < total and end - start < batch_size:
            count = token_counts[end]
            if max_tokens is not None and end > start and tokens + count > max_tokens:
                break
            tokens += count
            end += 1
        yield start, end
        start = end
