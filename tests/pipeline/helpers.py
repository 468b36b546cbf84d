"""Helpers of the pipeline tests."""

from __future__ import annotations

import uuid
from pathlib import Path

from app import services
from app.runtime import Runtime


def add_file(rt: Runtime, path: Path, project: str = "p") -> uuid.UUID:
    """Store ``path`` as a document of ``project`` (created if missing), as an upload would;
    its id."""
    with rt.sessions() as s:
        proj = services.get_or_create_project(s, name=project)
        r = services.add_document(
            s, project=proj, storage=rt.storage, file_name=path.name, path=path
        )
        s.commit()
        return r.document.id
