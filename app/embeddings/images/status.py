"""What ``docvec providers`` and ``GET /status`` say about each image provider
(``image_providers``): available or not and why — a missing package, no key, a model folder that
is not there or not a CLIP/SigLIP model — model, dimension, server, key (present or not, never
its value), limits.

Checks, each recorded under ``checks``:

1. ``sdk``: the provider's Python modules can be found (without importing them).
2. ``api_key``: a key is present in the variable(s) it is read from (hosted APIs).
3. ``model`` (local): the folder exists, holds a config.json of a CLIP or SigLIP model, and the
   tokenizer's package is installed.
4. ``probe`` (when probed: the configured provider by default): one query text embedded, one try
   — the local model is loaded, a hosted one answers with the key. Results are cached for
   :data:`~app.embeddings.status.PROBE_TTL_S` per process, so polling ``/status`` neither
   reloads a model nor pays for a request each time. Unprobed providers say ``"not checked"``.

The configured provider is reported with the configured settings; the others with their defaults
(default model, server and key variables).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from app.config import ImageEmbeddingSettings
from app.embeddings.http_helpers import redact
from app.embeddings.images import IMAGE_PROVIDERS, image_provider_class
from app.embeddings.images.base import ImageEmbeddingProvider
from app.embeddings.status import PROBE_TTL_S, ProbeMode
from app.errors import DocvecError

_cache: dict[tuple[Any, ...], tuple[float, int | None, str | None, float]] = {}
_cache_lock = threading.Lock()


@dataclass
class ImageProviderStatus:
    """One image provider's line of the report."""

    provider: str
    configured: bool
    available: bool
    reason: str | None = None
    model: str | None = None
    dimension: int | None = None
    base_url: str | None = None
    #: ``{"env": [variable names tried], "present": bool, "found_in": name | None}``.
    api_key: dict[str, Any] | None = None
    #: The local model's folder, if any.
    model_path: str | None = None
    checks: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings_for(name: str, settings: ImageEmbeddingSettings) -> ImageEmbeddingSettings:
    """The configured settings for the configured provider; for another one its defaults (the
    local model folder is kept: it is the only thing that names a local model)."""
    if name == settings.provider:
        return settings
    return settings.model_copy(
        update={
            "provider": name,
            "model": None,
            "base_url": None,
            "api_key_env": None,
            "dimensions": None,
        }
    )


def image_provider_statuses(
    settings: ImageEmbeddingSettings, *, probe: ProbeMode = "configured", timeout_s: float = 5.0
) -> list[ImageProviderStatus]:
    """The report for every registered image provider, the configured one first.

    Args:
        settings: the image embedding settings in force (provider ``none``: none configured).
        probe: which providers get a live query: the configured one, all, or none.
        timeout_s: request timeout of a hosted provider's probe, seconds.
    """
    names = sorted(IMAGE_PROVIDERS, key=lambda n: (n != settings.provider, n))
    return [
        _status(
            name,
            settings_for(name, settings),
            configured=name == settings.provider,
            probe=probe == "all" or (probe == "configured" and name == settings.provider),
            timeout_s=timeout_s,
        )
        for name in names
    ]


def _status(
    name: str,
    settings: ImageEmbeddingSettings,
    *,
    configured: bool,
    probe: bool,
    timeout_s: float,
) -> ImageProviderStatus:
    status = ImageProviderStatus(provider=name, configured=configured, available=False)
    status.model = settings.model
    try:
        provider = image_provider_class(name)(
            settings.model_copy(
                update={
                    "request_timeout_s": min(settings.request_timeout_s, timeout_s),
                    "max_attempts": 1,
                }
            )
        )
    except DocvecError as exc:
        status.reason = str(exc)
        return status
    try:
        return _describe(status, provider, settings, probe=probe)
    finally:
        provider.close()


def _describe(
    status: ImageProviderStatus,
    provider: ImageEmbeddingProvider,
    settings: ImageEmbeddingSettings,
    *,
    probe: bool,
) -> ImageProviderStatus:
    status.model = provider.model or None
    status.base_url = provider.base_url if provider.remote else None
    status.model_path = str(settings.model_path) if settings.model_path is not None else None
    status.limits = provider.limits()
    status.limits["request_timeout_s"] = settings.request_timeout_s if provider.remote else None
    key_name, _ = provider.api_key()
    names = list(provider.api_key_names())
    if names:
        status.api_key = {"env": names, "present": key_name is not None, "found_in": key_name}
    problems = provider.problems()
    sdk = [p for p in problems if p.startswith("SDK")]
    status.checks["sdk"] = "; ".join(sdk) if sdk else "ok"
    if key_name is not None:
        status.checks["api_key"] = f"present in {key_name}"
    elif provider.requires_api_key:
        status.checks["api_key"] = "missing: set " + " or ".join(names)
    else:
        status.checks["api_key"] = "not needed"
    if not provider.remote:
        folder = [p for p in problems if not p.startswith("SDK")]
        status.checks["model"] = "; ".join(folder) if folder else "ok"
    status.dimension = provider.known_dimension()
    if problems:
        status.reason = "; ".join(problems)
        return status
    if not probe:
        status.checks["probe"] = "not checked"
        status.available = True
        return status
    dimension, error, ms = _probe(provider, key_name)
    if error is not None:
        status.reason = error
        status.checks["probe"] = f"failed: {error}"
        return status
    status.dimension = dimension
    status.checks["probe"] = f"answered in {ms:.0f} ms"
    status.available = True
    return status


def _probe(
    provider: ImageEmbeddingProvider, key_name: str | None
) -> tuple[int | None, str | None, float]:
    s = provider.settings
    key = (provider.name, provider.model, provider.base_url, s.model_path, s.dimensions, key_name)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < PROBE_TTL_S:
            return hit[1], hit[2], hit[3]
    t0 = time.perf_counter()
    dimension: int | None = None
    error: str | None = None
    try:
        dimension = provider.probe()
    except DocvecError as exc:
        error = str(exc)
    except Exception as exc:  # an SDK or model surprise is reported, not raised
        error = redact(f"{type(exc).__name__}: {exc}")[:500]
    ms = (time.perf_counter() - t0) * 1000
    with _cache_lock:
        _cache[key] = (time.monotonic(), dimension, error, ms)
    return dimension, error, ms


def clear_probe_cache() -> None:
    """Forget cached probe results (tests, or after fixing a model or a server)."""
    with _cache_lock:
        _cache.clear()
