"""The ``gemini`` image provider: Gemini's multimodal embedding model (``gemini-embedding-2``,
Gemini API docs, "Embeddings" > multimodal) through Google's ``google-genai`` SDK, which also
serves the text provider.

``client.models.embed_content(model, contents=[Content(parts=[Part(inline_data=PNG)]), ...])``
posts to ``/v1beta/models/{model}:batchEmbedContents`` with one request per content (each its
own embedding; the parts of one content would be embedded together, as one interleaved input)
and gets ``{"embeddings": [{"values": [...]}]}`` back, in order. Queries go the same way as text
parts, with the query instruction the model card gives for search
(``task: search result | query: ...``): gemini-embedding-2 takes its task as text instead of
``task_type``.

Limits (sources): at most 6 images per request (model card, "Input"; PNG and JPEG — docvec sends
PNG); 100 requests per ``batchEmbedContents`` for texts, as for the text models; output size
128-3072, 3072 by default (model card, "Output dimension size"). The SDK's own retries are off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from typing_extensions import override

from app.config import ImageEmbeddingSettings
from app.embeddings.http_helpers import google_retry_delay, parse_retry_after
from app.embeddings.images.base import RemoteImageProvider
from app.errors import DocvecError, ProviderRejected

if TYPE_CHECKING:
    from google.genai import Client

#: Native size and the accepted range of ``output_dimensionality`` (model card).
DIMENSIONS: dict[str, tuple[int, int]] = {
    "gemini-embedding-2": (3072, 128),
    "gemini-embedding-2-preview": (3072, 128),
}
#: What a search query is prefixed with (the model card's instruction for search queries).
QUERY_INSTRUCTION = "task: search result | query: "


class GeminiImageProvider(RemoteImageProvider["Client"]):
    """Pictures and queries in one space with gemini-embedding-2, through ``google-genai``.

    Errors (``google.genai.errors.APIError``): 429 (``Retry-After`` or the ``RetryInfo`` detail),
    408 and 5xx -> :class:`~app.errors.ProviderUnavailable`; 400, 401, 403, 404 ->
    :class:`~app.errors.ProviderRejected`; timeouts and refused connections ->
    :class:`~app.errors.ProviderUnavailable`.
    """

    name: ClassVar[str] = "gemini"
    label: ClassVar[str] = "Gemini"
    default_model: ClassVar[str] = "gemini-embedding-2"
    sdk_modules: ClassVar[tuple[str, ...]] = ("google.genai",)
    sdk_package: ClassVar[str] = "google-genai"
    client_module: ClassVar[str] = "google.genai"
    #: The google-genai SDK's own order: GOOGLE_API_KEY wins when both are set.
    api_key_envs: ClassVar[tuple[str, ...]] = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    requires_api_key: ClassVar[bool] = True
    default_base_url: ClassVar[str | None] = "https://generativelanguage.googleapis.com"
    #: "up to six images per request" (model card).
    max_images_per_request: ClassVar[int] = 6
    #: batchEmbedContents: "at most 100 requests can be in one batch".
    max_texts_per_request: ClassVar[int] = 100
    api_version: ClassVar[str] = "v1beta"

    def __init__(self, settings: ImageEmbeddingSettings) -> None:
        super().__init__(settings)
        limits = DIMENSIONS.get(self.model.removeprefix("models/"))
        dims = settings.dimensions
        if dims is not None and limits is not None and not limits[1] <= dims <= limits[0]:
            raise ProviderRejected(
                f"DOCVEC_IMAGE_EMBEDDING__DIMENSIONS={dims} is outside {self.model}'s range "
                f"{limits[1]}-{limits[0]}"
            )

    @override
    def known_dimension(self) -> int | None:
        found = super().known_dimension()
        if found is not None:
            return found
        limits = DIMENSIONS.get(self.model.removeprefix("models/"))
        return limits[0] if limits else None

    @override
    def _load_dimension(self) -> int:
        return self.known_dimension() or self.probe()

    @override
    def _build_client(self, key: str | None) -> Client:
        from google import genai
        from google.genai import types

        options = types.HttpOptions(
            api_version=self.api_version,
            timeout=int(self.settings.request_timeout_s * 1000),  # milliseconds
        )
        if self.settings.base_url:
            options.base_url = self.settings.base_url
        return genai.Client(api_key=key, vertexai=False, http_options=options)

    def _embed(self, contents: list[Any]) -> list[list[float]]:
        from google.genai import types

        client = self._client()
        config = types.EmbedContentConfig(output_dimensionality=self.settings.dimensions)
        with self._mapped_errors():
            response = client.models.embed_content(
                model=self.model,
                contents=cast("types.ContentListUnion", contents),
                config=config,
            )
        return [list(e.values or []) for e in response.embeddings or []]

    @override
    def _embed_images(self, pictures: list[bytes]) -> list[list[float]]:
        from google.genai import types

        # One Content per picture: each gets its own embedding.
        return self._embed(
            [
                types.Content(parts=[types.Part.from_bytes(data=data, mime_type="image/png")])
                for data in pictures
            ]
        )

    @override
    def _embed_texts(self, texts: list[str]) -> list[list[float]]:
        from google.genai import types

        return self._embed(
            [types.Content(parts=[types.Part(text=QUERY_INSTRUCTION + t)]) for t in texts]
        )

    @override
    def _map_error(self, exc: Exception) -> DocvecError | None:
        from google.genai import errors

        if isinstance(exc, errors.APIError):
            response = getattr(exc, "response", None)

            def retry_after() -> float | None:
                headers = dict(response.headers) if response is not None else None
                seconds = parse_retry_after(headers)
                return seconds if seconds is not None else google_retry_delay(exc.details)

            message = f"{exc.status or ''} {exc.message or ''}".strip()
            status = int(exc.code or 0)
            return self._http_error(
                status, self._status_line(status, message), retry_after_s=retry_after
            )
        return super()._map_error(exc)
