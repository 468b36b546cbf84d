"""The ``cohere`` image provider: Cohere Embed v4 (``embed-v4.0``), text and images in one space,
through Cohere's own SDK (``cohere.ClientV2``).

``client.embed(model, input_type="image", images=[data URI, ...], embedding_types=["float"],
output_dimension=...)`` posts ``POST /v2/embed`` with ``{"model", "input_type": "image",
"images": ["data:image/png;base64,..."], "embedding_types": ["float"], "output_dimension"}`` and
gets ``{"id", "embeddings": {"float": [[...], ...]}, "images": [...], "meta": {...}}`` back, in
order. Queries are ``"texts"`` with ``input_type="search_query"``.

Limits (sources: the SDK's documentation of ``embed``, and Cohere's "Embed models" page): at most
96 inputs per call; Embed v4 takes any number of images per call up to 20 MB in all — docvec's
pictures are PNGs of at most ``max_side`` pixels a side, so 16 (the default batch) stay far
below; output sizes 256, 512, 1024 or 1536 (the default). The SDK's own retries are off
(``max_retries=0``); its HTTP client is docvec's, so it can be closed.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import override

from app.config import ImageEmbeddingSettings
from app.embeddings.http_helpers import parse_retry_after
from app.embeddings.images.base import RemoteImageProvider
from app.errors import DocvecError, ProviderRejected

if TYPE_CHECKING:
    from cohere import ClientV2

#: Output sizes Embed v4 accepts, and its default (Cohere, "Embed models").
V4_DIMENSIONS = (256, 512, 1024, 1536)
V4_DEFAULT = 1536


class CohereImageProvider(RemoteImageProvider["ClientV2"]):
    """Pictures and queries in one space with Cohere Embed v4, through ``cohere``.

    Errors (``cohere.core.api_error.ApiError`` and its subclasses): 429 (``Retry-After``), 408 and
    5xx -> :class:`~app.errors.ProviderUnavailable`; 400, 401, 403, 404, 422 ->
    :class:`~app.errors.ProviderRejected`; timeouts and refused connections ->
    :class:`~app.errors.ProviderUnavailable`.
    """

    name: ClassVar[str] = "cohere"
    label: ClassVar[str] = "Cohere"
    default_model: ClassVar[str] = "embed-v4.0"
    sdk_modules: ClassVar[tuple[str, ...]] = ("cohere",)
    sdk_package: ClassVar[str] = "cohere"
    client_module: ClassVar[str] = "cohere"
    #: COHERE_API_KEY is what most deployments set; CO_API_KEY is the SDK's own variable.
    api_key_envs: ClassVar[tuple[str, ...]] = ("COHERE_API_KEY", "CO_API_KEY")
    requires_api_key: ClassVar[bool] = True
    default_base_url: ClassVar[str | None] = "https://api.cohere.com"
    #: "Maximum number of inputs per call is 96".
    max_images_per_request: ClassVar[int] = 96
    max_texts_per_request: ClassVar[int] = 96

    def __init__(self, settings: ImageEmbeddingSettings) -> None:
        super().__init__(settings)
        dims = settings.dimensions
        if dims is not None and self.model.startswith("embed-v4") and dims not in V4_DIMENSIONS:
            raise ProviderRejected(
                f"DOCVEC_IMAGE_EMBEDDING__DIMENSIONS={dims} is not one of {self.model}'s sizes "
                f"{', '.join(map(str, V4_DIMENSIONS))}"
            )
        self._http: Any = None

    @override
    def known_dimension(self) -> int | None:
        found = super().known_dimension()
        if found is None and self.model.startswith("embed-v4"):
            return V4_DEFAULT
        return found

    @override
    def _load_dimension(self) -> int:
        return self.known_dimension() or self.probe()

    @override
    def _build_client(self, key: str | None) -> ClientV2:
        import cohere
        import httpx

        self._http = httpx.Client(timeout=self.settings.request_timeout_s)
        return cohere.ClientV2(
            api_key=key or "",
            base_url=self.base_url,
            timeout=self.settings.request_timeout_s,
            max_retries=0,
            httpx_client=self._http,
            log_warning_experimental_features=False,
        )

    @override
    def _close_client(self, client: ClientV2) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _embed(self, **kwargs: Any) -> list[list[float]]:
        client = self._client()
        if self.settings.dimensions is not None:
            kwargs["output_dimension"] = self.settings.dimensions
        with self._mapped_errors():
            response = client.embed(model=self.model, embedding_types=["float"], **kwargs)
        floats = response.embeddings.float_ if response.embeddings is not None else None
        return [list(v) for v in floats or []]

    @override
    def _embed_images(self, pictures: list[bytes]) -> list[list[float]]:
        uris = ["data:image/png;base64," + base64.b64encode(p).decode("ascii") for p in pictures]
        return self._embed(input_type="image", images=uris)

    @override
    def _embed_texts(self, texts: list[str]) -> list[list[float]]:
        return self._embed(input_type="search_query", texts=texts)

    @override
    def _map_error(self, exc: Exception) -> DocvecError | None:
        from cohere.core.api_error import ApiError

        if isinstance(exc, ApiError):
            body = exc.body
            message = body.get("message", body) if isinstance(body, dict) else body
            headers = exc.headers

            def retry_after() -> float | None:
                return parse_retry_after(dict(headers) if headers else None)

            status = int(exc.status_code or 0)
            what = self._status_line(status, message)
            return self._http_error(status, what, retry_after_s=retry_after)
        return super()._map_error(exc)
