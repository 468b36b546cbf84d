"""What one ``embed_documents`` call cost: inputs, requests, retries, tokens, truncations.

The pipeline records these counters on each attempt row (:meth:`EmbeddingUsage.as_dict`); when
one call embeds the chunks of several documents, :meth:`EmbeddingUsage.portion` splits it so that
each document's attempt is charged its share and the shares add up to the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EmbeddingUsage:
    """Counters of one ``embed_documents`` call (recorded per attempt).

    ``requests`` counts every HTTP request / forward pass sent, failed ones included; ``retries``
    the ones sent again after a transient error; ``tokens`` what the provider reported (None if
    it reports nothing); ``truncated`` the inputs cut to the model's input limit.
    """

    inputs: int = 0
    requests: int = 0
    retries: int = 0
    tokens: int | None = None
    truncated: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    #: Positions (in the call's input list) of the inputs counted in ``truncated``.
    truncated_inputs: list[int] = field(default_factory=list)
    #: Chunks that needed no input: their vector was the stored one of the same text in the same
    #: index version (``reused``), or another chunk of the call had the same text (``shared``).
    reused: int = 0
    shared: int = 0

    def portion(self, start: int, end: int, total: int) -> EmbeddingUsage:
        """The share of a call over ``total`` inputs, shared by several documents, that falls on
        inputs ``[start, end)``.

        ``truncated`` is exact, and so is ``inputs`` when the call succeeded (every input then
        counts); ``requests``, ``retries`` and ``tokens`` belong to batches that may span
        documents, so they are split in proportion to the inputs, rounded so that the shares of
        consecutive ranges add up to the call's figures.
        """

        def share(value: int) -> int:
            return value * end // total - value * start // total if total else 0

        own = [i - start for i in self.truncated_inputs if start <= i < end]
        return EmbeddingUsage(
            inputs=share(self.inputs),
            requests=share(self.requests),
            retries=share(self.retries),
            tokens=None if self.tokens is None else share(self.tokens),
            truncated=len(own),
            truncated_inputs=own,
        )

    def as_dict(self) -> dict[str, int | None]:
        """The counters as stored on an attempt row."""
        return {
            "inputs": self.inputs,
            "requests": self.requests,
            "retries": self.retries,
            "tokens": self.tokens,
            "truncated": self.truncated,
            "reused": self.reused,
            "shared": self.shared,
        }
