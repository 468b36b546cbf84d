"""Embedding provider status (the API face of ``docvec providers``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from app.api.deps import RuntimeDep
from app.api.strict_json import StrictJSONRoute
from app.chat.status import chat_provider_statuses
from app.embeddings.images.status import image_provider_statuses
from app.embeddings.status import ProbeMode, provider_statuses
from app.pipeline.extract import OcrOptions, ocr_status

router = APIRouter(tags=["status"], route_class=StrictJSONRoute)


@router.get("/status")
async def status(
    runtime: RuntimeDep,
    probe: ProbeMode = Query(
        "configured",
        description="Which remote providers (embedding and chat) get one live test request "
        "(results cached 30 s).",
    ),
    timeout_s: float = Query(5.0, gt=0, le=30, description="Seconds per probe request."),
) -> dict[str, Any]:
    """Each embedding and chat provider, and OCR: available or not and why, model, limits."""
    report = await run_in_threadpool(
        provider_statuses, runtime.settings.embedding, probe=probe, timeout_s=timeout_s
    )
    chat = await run_in_threadpool(
        chat_provider_statuses, runtime.settings.chat, probe=probe, timeout_s=timeout_s
    )
    # Image embedding providers (images found by what they show, README "Images").
    images = await run_in_threadpool(
        image_provider_statuses, runtime.settings.image_embedding, probe=probe, timeout_s=timeout_s
    )
    # OCR of scans and images (Tesseract): found, version, languages; this process's view.
    ocr = await run_in_threadpool(ocr_status, OcrOptions.from_settings(runtime.settings))
    return {
        "configured_provider": runtime.settings.embedding.provider,
        "providers": [r.as_dict() for r in report],
        "configured_chat_provider": runtime.settings.chat.provider,
        "chat_providers": [r.as_dict() for r in chat],
        "configured_image_provider": runtime.settings.image_embedding.provider,
        "image_providers": [r.as_dict() for r in images],
        "ocr": ocr.as_dict(),
    }
