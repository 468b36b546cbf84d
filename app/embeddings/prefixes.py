"""Prefixes asymmetric embedding models expect before documents and before queries.

Models trained with an instruction or a role marker (nomic, e5, bge, mxbai) embed a query and a
passage of the same text differently; sent without their prefix they retrieve worse. The table
gives the documented defaults; ``DOCVEC_EMBEDDING__DOCUMENT_PREFIX`` / ``__QUERY_PREFIX`` override
them. Gemini uses task types instead (see ``gemini.py``); OpenAI models need none.
"""

from __future__ import annotations

#: ``(model name stem, document prefix, query prefix)``, matched on the model's base name
#: (organisation and ``:tag`` stripped), first match wins. Sources: the model cards —
#: nomic-ai/nomic-embed-text-v1.5 ("search_document: " / "search_query: "),
#: mixedbread-ai/mxbai-embed-large-v1 and BAAI/bge-*-en-v1.5 (query instruction "Represent this
#: sentence for searching relevant passages: "), intfloat/e5-* and multilingual-e5-* ("passage: " /
#: "query: ").
MODEL_PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("nomic-embed-text", "search_document: ", "search_query: "),
    ("mxbai-embed-large", "", "Represent this sentence for searching relevant passages: "),
    ("bge-small-en-v1.5", "", "Represent this sentence for searching relevant passages: "),
    ("bge-base-en-v1.5", "", "Represent this sentence for searching relevant passages: "),
    ("bge-large-en-v1.5", "", "Represent this sentence for searching relevant passages: "),
    ("multilingual-e5-", "passage: ", "query: "),
    ("e5-", "passage: ", "query: "),
)


def base_model_name(model: str) -> str:
    """Model name without organisation or tag: ``"nomic-ai/nomic-embed-text-v1.5"`` ->
    ``"nomic-embed-text-v1.5"``, ``"all-minilm:latest"`` -> ``"all-minilm"``."""
    name = model.strip().rsplit("/", 1)[-1].lower()
    return name.split(":", 1)[0]


def model_prefixes(model: str) -> tuple[str, str]:
    """The documented ``(document_prefix, query_prefix)`` of ``model``, ``("", "")`` if none."""
    name = base_model_name(model)
    for stem, document_prefix, query_prefix in MODEL_PREFIXES:
        if name.startswith(stem):
            return document_prefix, query_prefix
    return "", ""
