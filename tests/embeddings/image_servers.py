"""Loopback servers speaking the hosted image providers' wire formats: Cohere's ``POST /v2/embed``
and the Gemini API's ``batchEmbedContents`` with inline images. Each decodes the pictures it is
sent and answers with their dominant colour (tests/embeddings/images.py), and queries with their
colour words, so what a provider returns can be checked against what it sent."""

from __future__ import annotations

import base64
import re
from typing import Any

from typing_extensions import override

from tests.embeddings.fakes import FakeServer, Reply, Seen, gemini_error
from tests.embeddings.images import picture_colour, text_colour


def _padded(vector: list[float], dim: int) -> list[float]:
    return (vector + [0.0] * dim)[:dim]


def cohere_error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    """An error as api.cohere.com sends it (``{"message": ...}``)."""
    return Reply(status, {"id": "err-1", "message": message}, headers or {})


class FakeCohere(FakeServer):
    """``POST /v2/embed`` of Embed v4: images as data URIs (``input_type="image"``) or texts,
    float embeddings, at most 96 inputs."""

    @override
    def is_embed(self, seen: Seen) -> bool:
        return seen.method == "POST" and seen.path.split("?")[0] == "/v2/embed"

    @override
    def success(self, seen: Seen) -> Reply:
        body = seen.body or {}
        dim = body.get("output_dimension") or 1536
        if not str(seen.headers.get("authorization", "")).startswith("Bearer "):
            return cohere_error(401, "no api key supplied")
        images = body.get("images") or []
        texts = body.get("texts") or []
        if len(images) + len(texts) > 96:
            return cohere_error(400, "too many inputs: at most 96")
        if images:
            if body.get("input_type") != "image":
                return cohere_error(400, "images need input_type image")
            vectors = []
            for uri in images:
                head, _, data = str(uri).partition(",")
                if head != "data:image/png;base64":
                    return cohere_error(400, f"invalid data uri {head!r}")
                vectors.append(_padded(picture_colour(base64.b64decode(data)), dim))
        else:
            vectors = [_padded(text_colour(t), dim) for t in texts]
        return Reply(
            200,
            {
                "id": "emb-1",
                "embeddings": {"float": vectors},
                "texts": texts,
                "images": [{"width": 1, "height": 1, "format": "png", "bit_depth": 8}]
                * len(images),
                "meta": {"api_version": {"version": "2"}, "billed_units": {"images": len(images)}},
                "response_type": "embeddings_by_type",
            },
        )


def _inline(part: dict[str, Any]) -> dict[str, Any] | None:
    found = part.get("inlineData") or part.get("inline_data")
    return found if isinstance(found, dict) else None


_GEMINI_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):batchEmbedContents$")


class FakeGeminiImages(FakeServer):
    """``/v1beta/models/{model}:batchEmbedContents`` of gemini-embedding-2: each request one
    content, a picture (``inlineData`` PNG, base64) or a text; at most 6 pictures per call.

    Field names are read in both spellings the API's JSON accepts (protobuf JSON: ``inlineData``
    or ``inline_data``): google-genai sends embedding contents in snake case."""

    @override
    def is_embed(self, seen: Seen) -> bool:
        return seen.method == "POST" and bool(_GEMINI_PATH.match(seen.path.split("?")[0]))

    @override
    def success(self, seen: Seen) -> Reply:
        reqs: list[dict[str, Any]] = (seen.body or {}).get("requests") or []
        pictures = sum(1 for r in reqs for p in r["content"]["parts"] if _inline(p) is not None)
        if pictures > 6:
            return gemini_error(400, "INVALID_ARGUMENT", "at most 6 images per request")
        out = []
        for r in reqs:
            dim = r.get("outputDimensionality") or 3072
            parts = r["content"]["parts"]
            if len(parts) != 1:
                return gemini_error(400, "INVALID_ARGUMENT", "one part per content expected here")
            inline = _inline(parts[0])
            if inline is not None:
                mime = inline.get("mimeType") or inline.get("mime_type")
                if mime != "image/png":
                    return gemini_error(400, "INVALID_ARGUMENT", f"unsupported mime type {mime}")
                # Protobuf JSON takes bytes in standard or URL-safe base64; google-genai sends
                # the URL-safe alphabet.
                data = str(inline["data"]).replace("-", "+").replace("_", "/")
                vector = picture_colour(base64.b64decode(data))
            else:
                part = parts[0]
                vector = text_colour(part["text"])
            out.append({"values": _padded(vector, dim)})
        return Reply(200, {"embeddings": out})
