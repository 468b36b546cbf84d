"""What ``docvec providers`` and ``GET /status`` say about each chat provider: available or not and
why, model, server, key (present or not — never its value) and the limits in force.

Checks, each recorded under ``checks``, as for the embedding providers (app/embeddings/status.py):
``sdk`` (the modules can be found, not imported), ``api_key`` (present in the variable(s) it is
read from), and ``server`` for remote providers when probed: one answer of at most 16 tokens, one
try, a short timeout — it proves the server answers, the key works and the model exists. Results
are cached for :data:`PROBE_TTL_S` per process, so a monitor polling ``/status`` does not become a
stream of paid requests. The configured provider is reported with the configured settings, the
others with their defaults.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from app.chat import CHAT_PROVIDERS, chat_provider_class
from app.chat.base import ChatProvider
from app.config import ChatSettings
from app.embeddings.http_helpers import redact
from app.embeddings.status import PROBE_TTL_S, ProbeMode
from app.errors import DocvecError

_probe_cache: dict[tuple[Any, ...], tuple[float, str | None, float]] = {}
_probe_lock = threading.Lock()


@dataclass
class ChatProviderStatus:
    """One chat provider's line of the report."""

    provider: str
    configured: bool
    available: bool
    reason: str | None = None
    model: str | None = None
    #: False for ``extractive``: no language model writes the answer.
    generative: bool = True
    base_url: str | None = None
    #: ``{"env": [variable names tried], "present": bool, "found_in": name | None}``.
    api_key: dict[str, Any] | None = None
    checks: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def limits_text(self) -> str:
        """The limits in one line, for a terminal."""
        lim = self.limits
        text = (
            f"context {lim['context_window_tokens']} tokens · answer ≤ "
            f"{lim['max_answer_tokens']} tokens"
        )
        if lim.get("temperature") is not None:
            text += f" · temperature {lim['temperature']:g}"
        if lim.get("max_attempts") is not None:
            text += (
                f" · rpm {lim['requests_per_minute'] or 'unlimited'} · "
                f"tpm {lim['tokens_per_minute'] or 'unlimited'} · "
                f"{lim['max_attempts']} tries within {lim['retry_budget_s']:g} s · "
                f"timeout {lim['request_timeout_s']:g} s"
            )
        return text


def settings_for(name: str, settings: ChatSettings) -> ChatSettings:
    """The configured settings for the configured provider; another one's defaults (model,
    server, key variable) with the shared limits kept."""
    if name == settings.provider:
        return settings
    return settings.model_copy(
        update={"provider": name, "model": None, "base_url": None, "api_key_env": None}
    )


def chat_provider_statuses(
    settings: ChatSettings, *, probe: ProbeMode = "configured", timeout_s: float = 5.0
) -> list[ChatProviderStatus]:
    """The report for every registered chat provider, the configured one first.

    Args:
        settings: the chat settings in force.
        probe: which remote providers get a live request: the configured one, all, or none.
        timeout_s: request timeout of a probe, seconds.
    """
    names = sorted(CHAT_PROVIDERS, key=lambda n: (n != settings.provider, n))
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
    name: str, settings: ChatSettings, *, configured: bool, probe: bool, timeout_s: float
) -> ChatProviderStatus:
    status = ChatProviderStatus(provider=name, configured=configured, available=False)
    limited = settings.model_copy(
        update={"request_timeout_s": min(settings.request_timeout_s, timeout_s), "max_attempts": 1}
    )
    try:
        provider = chat_provider_class(name)(limited)
    except DocvecError as exc:
        status.reason = str(exc)
        return status
    try:
        return _describe(status, provider, settings, probe=probe)
    finally:
        provider.close()


def _describe(
    status: ChatProviderStatus, provider: ChatProvider, settings: ChatSettings, *, probe: bool
) -> ChatProviderStatus:
    status.model = provider.model
    status.generative = provider.generative
    status.base_url = provider.base_url
    status.limits = provider.limits()
    status.limits["request_timeout_s"] = settings.request_timeout_s if provider.remote else None
    status.limits["max_attempts"] = settings.max_attempts if provider.remote else None
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
        return status
    if not provider.remote:
        status.checks["model"] = "none needed (answers quote the sources)"
        status.available = True
        return status
    if not probe:
        status.checks["server"] = "not checked"
        status.available = True
        return status
    error, ms = _probe(provider, key_name)
    if error is not None:
        status.reason = error
        status.checks["server"] = f"failed: {error}"
        return status
    status.checks["server"] = f"answered in {ms:.0f} ms"
    status.available = True
    return status


def _probe(provider: ChatProvider, key_name: str | None) -> tuple[str | None, float]:
    key = (provider.name, provider.model, provider.base_url, key_name)
    now = time.monotonic()
    with _probe_lock:
        hit = _probe_cache.get(key)
        if hit is not None and now - hit[0] < PROBE_TTL_S:
            return hit[1], hit[2]
    t0 = time.perf_counter()
    error: str | None = None
    try:
        provider.probe()
    except DocvecError as exc:
        error = str(exc)
    except Exception as exc:  # an SDK surprise is reported, not raised
        error = redact(f"{type(exc).__name__}: {exc}")[:500]
    ms = (time.perf_counter() - t0) * 1000
    with _probe_lock:
        _probe_cache[key] = (time.monotonic(), error, ms)
    return error, ms


def clear_chat_probe_cache() -> None:
    """Forget cached probe results (tests, or after fixing a server)."""
    with _probe_lock:
        _probe_cache.clear()
