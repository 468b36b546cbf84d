"""What ``docvec providers`` and ``GET /status`` say about each provider: available or not and
why, model, dimension, server, key (present or not — never its value) and the limits in force.

Checks, in order, each recorded under ``checks`` so the report says exactly what was verified:

1. ``sdk``: the provider's Python modules can be found (without importing them).
2. ``api_key``: a key is present in the variable(s) it is read from (hosted APIs need one).
3. ``server`` (remote providers, when probed): one embedding request of a few tokens, one try,
   a short timeout. It proves the server answers, the key works and the model exists, and gives
   the real dimension. Results are cached for :data:`PROBE_TTL_S` per process, so a monitoring
   system polling ``/status`` does not turn into a stream of paid requests. Unprobed providers
   say ``"not checked"``.
   ``local`` instead resolves its dimension (from its table, or by loading the model).

The configured provider is reported with the configured settings; the others with their defaults
(default model, default server, default key variables) and the shared limits.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from app.config import EmbeddingSettings
from app.embeddings import PROVIDERS, provider_class
from app.embeddings.base import EmbeddingProvider
from app.errors import DocvecError

ProbeMode = Literal["configured", "all", "none"]

#: Seconds a probe result is reused.
PROBE_TTL_S = 30.0

_probe_cache: dict[tuple[Any, ...], tuple[float, int | None, str | None, float]] = {}
_probe_lock = threading.Lock()


@dataclass
class ProviderStatus:
    """One provider's line of the report."""

    provider: str
    configured: bool
    available: bool
    reason: str | None = None
    model: str | None = None
    dimension: int | None = None
    base_url: str | None = None
    #: ``{"env": [variable names tried], "present": bool, "found_in": name | None}``.
    api_key: dict[str, Any] | None = None
    checks: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def limits_text(self) -> str:
        """The limits in one line, for a table cell."""
        limits = self.limits
        if not limits:
            return ""
        per_request = f"max {limits['max_inputs_per_request']}"
        if limits.get("max_tokens_per_request"):
            per_request += f", {limits['max_tokens_per_request']} tokens"
        text = (
            f"batch {limits['batch_size']} ({per_request}) · "
            f"{limits['max_concurrency']} in flight · "
            f"rpm {limits['requests_per_minute'] or 'unlimited'} · "
            f"tpm {limits['tokens_per_minute'] or 'unlimited'} · "
            f"{limits['max_attempts']} tries within {limits['retry_budget_s']:g} s"
        )
        if limits.get("request_timeout_s"):
            text += f" · timeout {limits['request_timeout_s']:g} s"
        limit = limits.get("max_input_tokens")
        text += f" · inputs over {limit} tokens: " if limit else " · over-long inputs: "
        return text + str(limits["overlong_inputs"])


def settings_for(name: str, settings: EmbeddingSettings) -> EmbeddingSettings:
    """The configured settings for the configured provider; for another one its defaults
    (model, server, key variables, dimensions, prefixes) with the shared limits kept."""
    if name == settings.provider:
        return settings
    return settings.model_copy(
        update={
            "provider": name,
            "model": None,
            "base_url": None,
            "api_key_env": None,
            "dimensions": None,
            "max_input_tokens": None,
            "document_prefix": None,
            "query_prefix": None,
        }
    )


def provider_statuses(
    settings: EmbeddingSettings, *, probe: ProbeMode = "configured", timeout_s: float = 5.0
) -> list[ProviderStatus]:
    """The report for every registered provider, the configured one first.

    Args:
        settings: the embedding settings in force.
        probe: which remote providers get a live request: the configured one, all, or none.
        timeout_s: request timeout of a probe, seconds.
    """
    names = sorted(PROVIDERS, key=lambda n: (n != settings.provider, n))
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
    name: str, settings: EmbeddingSettings, *, configured: bool, probe: bool, timeout_s: float
) -> ProviderStatus:
    status = ProviderStatus(provider=name, configured=configured, available=False)
    status.model = settings.model
    try:
        provider = provider_class(name)(
            settings.model_copy(
                update={"request_timeout_s": min(settings.request_timeout_s, timeout_s)}
            )
        )
    except DocvecError as exc:
        status.reason = str(exc)
        return status
    try:
        return _describe(status, provider, settings, probe=probe, timeout_s=timeout_s)
    finally:
        provider.close()  # the probe's HTTP connections


def _describe(
    status: ProviderStatus,
    provider: EmbeddingProvider,
    settings: EmbeddingSettings,
    *,
    probe: bool,
    timeout_s: float,
) -> ProviderStatus:
    status.model = provider.model
    status.base_url = provider.base_url if provider.remote else None
    status.limits = provider.limits()
    status.limits["request_timeout_s"] = settings.request_timeout_s if provider.remote else None
    key_name, _ = provider.api_key()
    names = list(provider.api_key_names())
    if names:
        status.api_key = {"env": names, "present": key_name is not None, "found_in": key_name}

    problems = provider.problems()
    sdk_missing = [p for p in problems if p.startswith("SDK")]
    status.checks["sdk"] = "; ".join(sdk_missing) if sdk_missing else "ok"
    if key_name is not None:
        status.checks["api_key"] = f"present in {key_name}"
    elif provider.requires_api_key:
        status.checks["api_key"] = "missing: set " + " or ".join(names)
    else:
        status.checks["api_key"] = "not needed" + (
            f" (optional: {' or '.join(names)})" if names else ""
        )
    if problems:
        status.reason = "; ".join(problems)
        status.dimension = provider.known_dimension()
        return status

    if not provider.remote:
        try:
            status.dimension = provider.dimension
        except DocvecError as exc:
            status.reason = str(exc)
            status.checks["model"] = f"failed: {exc}"
            return status
        status.checks["model"] = "ok"
        status.available = True
        return status

    if not probe:
        status.dimension = provider.known_dimension()
        status.checks["server"] = "not checked"
        status.available = True
        return status

    dimension, error, ms = _probe(provider, key_name)
    if error is not None:
        status.reason = error
        status.checks["server"] = f"failed: {error}"
        status.dimension = provider.known_dimension()
        return status
    status.dimension = dimension
    status.checks["server"] = f"answered in {ms:.0f} ms"
    status.available = True
    return status


def _probe(
    provider: EmbeddingProvider, key_name: str | None
) -> tuple[int | None, str | None, float]:
    settings = provider.settings
    key = (provider.name, provider.model, provider.base_url, settings.dimensions, key_name)
    now = time.monotonic()
    with _probe_lock:
        hit = _probe_cache.get(key)
        if hit is not None and now - hit[0] < PROBE_TTL_S:
            return hit[1], hit[2], hit[3]
    t0 = time.perf_counter()
    dimension: int | None = None
    error: str | None = None
    try:
        dimension = provider.probe()
    except DocvecError as exc:
        error = str(exc)
    except Exception as exc:  # an SDK surprise is reported, not raised
        from app.embeddings.http_helpers import redact

        error = redact(f"{type(exc).__name__}: {exc}")[:500]
    ms = (time.perf_counter() - t0) * 1000
    with _probe_lock:
        _probe_cache[key] = (time.monotonic(), dimension, error, ms)
    return dimension, error, ms


def clear_probe_cache() -> None:
    """Forget cached probe results (tests, or after fixing a server)."""
    with _probe_lock:
        _probe_cache.clear()
