"""Content-addressed storage of uploaded files.

Files are stored under ``{storage_dir}/{sha[:2]}/{sha}`` and referenced by the URI
``local:{sha[:2]}/{sha}``, which every process resolves against its own ``DOCVEC_STORAGE_DIR`` — so
workers on other machines find uploads as long as they mount the same folder. Names given by users
never reach the file system.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app.errors import DocumentTooLarge, StorageError

_SCHEME = "local:"
#: Read/hash in 1 MiB pieces: large enough to be fast, small enough to bound memory per upload.
CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A stored upload: its SHA-256 (hex), size in bytes, and storage URI."""

    sha256: str
    size_bytes: int
    uri: str


class FileStorage:
    """Content-addressed file store rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, uri: str) -> Path:
        if not uri.startswith(_SCHEME):
            raise StorageError(f"unknown storage URI scheme: {uri!r}")
        key = uri[len(_SCHEME) :]
        if ".." in key or key.startswith("/"):
            raise StorageError(f"invalid storage URI: {uri!r}")
        return self.root / key

    def save_stream(self, pieces: Iterable[bytes], *, max_bytes: int | None = None) -> StoredFile:
        """Stream ``pieces`` to disk while hashing; dedupe by content.

        Raises:
            DocumentTooLarge: more than ``max_bytes`` bytes arrived (the partial file is removed
                before the whole body was read).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as out:
                for piece in pieces:
                    size += len(piece)
                    if max_bytes is not None and size > max_bytes:
                        raise DocumentTooLarge(
                            f"file is larger than the {max_bytes} byte limit", stage="upload"
                        )
                    digest.update(piece)
                    out.write(piece)
            sha = digest.hexdigest()
            uri = f"{_SCHEME}{sha[:2]}/{sha}"
            final = self._path(uri)
            final.parent.mkdir(parents=True, exist_ok=True)
            # Same name ⇔ same bytes, so replacing an existing copy is harmless and atomic.
            os.replace(tmp_name, final)
            return StoredFile(sha256=sha, size_bytes=size, uri=uri)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def save_path(self, path: Path, *, max_bytes: int | None = None) -> StoredFile:
        """Store a local file (the CLI's ingest)."""
        with open(path, "rb") as f:
            return self.save_stream(iter(lambda: f.read(CHUNK_BYTES), b""), max_bytes=max_bytes)

    def read(self, uri: str) -> bytes:
        """The stored bytes. Raises :class:`StorageError` if the file is gone or unreadable."""
        try:
            return self._path(uri).read_bytes()
        except OSError as exc:
            raise StorageError(
                f"stored file {uri} is missing or unreadable ({exc.strerror}); "
                "is DOCVEC_STORAGE_DIR the same folder the API wrote to?",
                stage="read",
            ) from exc

    def delete(self, uri: str) -> None:
        """Remove a stored file (callers check that no document still references it)."""
        # A leftover file costs disk, not correctness.
        with contextlib.suppress(OSError):
            self._path(uri).unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a local file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(piece)
    return digest.hexdigest()
