"""``docvec providers``: which embedding, chat and image providers are available, and their
limits; and OCR."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from app.cli._utilities import JsonOpt, app, fail, out, print_json
from app.config import get_settings

if TYPE_CHECKING:
    from app.chat.status import ChatProviderStatus
    from app.embeddings.images.status import ImageProviderStatus
    from app.pipeline.extract import OcrStatus


@app.command()
def providers(
    probe: Annotated[
        str,
        typer.Option(
            help="Which remote providers get one live test request: configured, all or none."
        ),
    ] = "configured",
    timeout: Annotated[float, typer.Option(help="Seconds per probe request.", min=0.1)] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Embedding, chat and image providers: available or not (SDK, API key, server, model
    folder), model, dimension, limits.

    Exits with 1 when the configured embedding, chat or image provider is unavailable.
    """
    from app.embeddings.status import ProbeMode, provider_statuses

    modes: dict[str, ProbeMode] = {"configured": "configured", "all": "all", "none": "none"}
    if probe not in modes:
        raise fail("--probe must be configured, all or none")
    from app.chat.status import chat_provider_statuses
    from app.embeddings.images.status import image_provider_statuses

    report = provider_statuses(get_settings().embedding, probe=modes[probe], timeout_s=timeout)
    chat = chat_provider_statuses(get_settings().chat, probe=modes[probe], timeout_s=timeout)
    images = image_provider_statuses(
        get_settings().image_embedding, probe=modes[probe], timeout_s=timeout
    )
    configured_ok = (
        all(r.available for r in report if r.configured)
        and all(r.available for r in chat if r.configured)
        and all(r.available for r in images if r.configured)
    )
    ocr = _ocr_status()
    if as_json:
        print_json(
            {
                "providers": [r.as_dict() for r in report],
                "chat_providers": [r.as_dict() for r in chat],
                "image_providers": [r.as_dict() for r in images],
                "ocr": ocr.as_dict(),
            }
        )
        raise typer.Exit(0 if configured_ok else 1)
    for r in report:
        name = f"[bold]{r.provider}[/bold]" + (" (configured)" if r.configured else "")
        state = "[green]available[/green]" if r.available else f"[red]unavailable[/red]: {r.reason}"
        dim = f"{r.dimension} dims" if r.dimension else "dimension unknown"
        out.print(f"{name}  {state}")
        out.print(f"  model {r.model} · {dim}" + (f" · {r.base_url}" if r.base_url else ""))
        out.print("  checks: " + " · ".join(f"{k} {v}" for k, v in r.checks.items()))
        out.print(f"  limits: {r.limits_text()}", highlight=False)
    _print_chat(chat)
    _print_images(images, get_settings().image_embedding.provider)
    _print_ocr(ocr)
    if not configured_ok:
        raise typer.Exit(1)


def _print_chat(report: list[ChatProviderStatus]) -> None:
    """Chat providers (``docvec ask``): available or why not, model, server, limits."""
    out.print("[bold]Chat providers[/bold] (answers: docvec ask, POST /projects/{id}/answer)")
    for r in report:
        name = f"[bold]{r.provider}[/bold]" + (" (configured)" if r.configured else "")
        state = "[green]available[/green]" if r.available else f"[red]unavailable[/red]: {r.reason}"
        out.print(f"{name}  {state}")
        model = r.model if r.generative else "none (quotes the sources)"
        out.print(f"  model {model}" + (f" · {r.base_url}" if r.base_url else ""))
        out.print("  checks: " + " · ".join(f"{k} {v}" for k, v in r.checks.items()))
        out.print(f"  limits: {r.limits_text()}", highlight=False)


def _print_images(report: list[ImageProviderStatus], configured: str) -> None:
    """Image embedding providers (images found by what they show): available or why not."""
    note = " — none configured: images are found by their OCR text" if configured == "none" else ""
    out.print(f"[bold]Image providers[/bold] (images found by what they show){note}")
    for r in report:
        name = f"[bold]{r.provider}[/bold]" + (" (configured)" if r.configured else "")
        state = "[green]available[/green]" if r.available else f"[red]unavailable[/red]: {r.reason}"
        dim = f"{r.dimension} dims" if r.dimension else "dimension unknown"
        where = r.base_url or r.model_path
        out.print(f"{name}  {state}", highlight=False)
        out.print(f"  model {r.model or '-'} · {dim}" + (f" · {where}" if where else ""))
        out.print("  checks: " + " · ".join(f"{k} {v}" for k, v in r.checks.items()))


def _ocr_status() -> OcrStatus:
    from app.pipeline.extract import OcrOptions, ocr_status

    return ocr_status(OcrOptions.from_settings(get_settings()))


def _print_ocr(status: OcrStatus) -> None:
    """OCR of scans and images: engine, version, languages, available or why not."""
    state = (
        "[green]available[/green]"
        if status.available
        else f"[red]unavailable[/red]: {status.reason}"
    )
    out.print(f"[bold]OCR[/bold] ({status.engine}, mode {status.mode})  {state}")
    version = status.version or "version unknown"
    installed = ", ".join(status.installed_languages) or "none"
    out.print(
        f"  {version} · languages {'+'.join(status.languages)} (installed: {installed}) · "
        f"{status.dpi} dpi for PDF pages",
        highlight=False,
    )
