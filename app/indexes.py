"""Index versions: every index knows its model, and a model change builds a new one beside it.

An :class:`~app.db.models.IndexVersion` records what shapes a project's vectors — provider,
model, dimensions, the numerics class of the local engine, the document and query prefixes, the
chunking — and where they live (a physical collection, and which ``document_chunks`` rows hold
its chunks). Each project has one ``active`` version at a time; search and the pipeline resolve it
once per query or run and use that version's provider and collection, so nothing ever mixes two
models in one index (DESIGN §2a).

This module is the SQL side: specs, resolution, the checks, the state changes (create, activate,
cancel, retire) and progress. Building (re-embedding into a version) is
:mod:`app.pipeline.build`; the stores and providers a version needs are the runtime's.

A version made from the process settings (the first version of a project, ``docvec index create``
without ``--provider``) *follows the settings*: a process whose ``DOCVEC_EMBEDDING__*`` or
``DOCVEC_CHUNKING__*`` describe another index refuses to write to it or search it
(:class:`~app.errors.IndexMismatch`). A version made with an explicit provider and model carries
its own configuration and is used as recorded by every process, whatever its settings say, so
two projects may run two models at once.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import ChunkingSettings, EmbeddingSettings, ImageEmbeddingSettings, Settings
from app.db.models import (
    Document,
    DocumentStatus,
    IndexState,
    IndexVersion,
    IndexVersionDocument,
    Project,
    utcnow,
)
from app.embeddings import create_provider, provider_class
from app.embeddings.images import default_model as image_default_model
from app.embeddings.prefixes import model_prefixes
from app.errors import IndexMismatch

#: Fields of ``EmbeddingSettings`` that decide what a vector means: two versions that differ in
#: any of them must never share an index. The ``image_*`` ones are the image model's
#: (``ImageEmbeddingSettings``, README "Images"): a change of image model, or of its size, is a
#: new version too. Versions recorded before image vectors lack them, which reads as no image model.
IDENTITY_FIELDS = (
    "provider",
    "model",
    "dimensions",
    "numerics",
    "document_prefix",
    "query_prefix",
    "image_provider",
    "image_model",
    "image_dimensions",
)
#: Fields a version also records to reach its model (never a secret: the key's variable *name*).
CONNECTION_FIELDS = (
    "base_url",
    "api_key_env",
    "backend",
    "image_model_path",
    "image_base_url",
    "image_api_key_env",
)
#: Identity fields whose None (the model's own size) is not compared: the size the model really
#: produces is checked against the collection before anything is written or searched.
_SIZE_FIELDS = ("dimensions", "image_dimensions")
#: Chunking fields a version records; a change re-chunks the stored files.
CHUNKING_FIELDS = ("chunk_size", "chunk_overlap", "min_chunk_size", "unit", "encoding")

ActivateMode = Literal["auto", "manual"]
#: States of a version that still takes documents (the pipeline or a build writes to it).
LIVE_STATES = (IndexState.active, IndexState.building)


def image_collection(collection: str) -> str:
    """The collection of an index version's image vectors, beside its chunks' ``collection``:
    ``{collection}_images`` (one point per page of each image document)."""
    return f"{collection}_images"


def image_fields(image: ImageEmbeddingSettings | None) -> dict[str, Any]:
    """What a spec records of the image model (all None: no image model).

    Raises:
        ProviderRejected: unknown image provider name.
    """
    if image is None or image.provider == "none":
        return {f: None for f in IMAGE_FIELDS}
    return {
        "image_provider": image.provider,
        "image_model": image_default_model(image),
        "image_dimensions": image.dimensions,
        "image_model_path": str(image.model_path) if image.model_path is not None else None,
        "image_base_url": image.base_url,
        "image_api_key_env": image.api_key_env,
    }


#: The spec fields of the image model (identity and connection).
IMAGE_FIELDS = (
    "image_provider",
    "image_model",
    "image_dimensions",
    "image_model_path",
    "image_base_url",
    "image_api_key_env",
)


def numerics(settings: EmbeddingSettings) -> str | None:
    """The numerics class of the local engine: FP32 engines (torch, ONNX, OpenVINO) agree to
    1e-5 and are one class (``fp32``); int8 quantisation is another (``int8``). None for remote
    providers, whose numerics are the server's."""
    if settings.provider != "local":
        return None
    return "int8" if settings.backend.endswith("int8") else "fp32"


@dataclass(frozen=True)
class IndexSpec:
    """What an index version records: ``embedding`` (identity and connection fields) and
    ``chunking``. Built from settings (:meth:`from_settings`) or read from a row."""

    embedding: dict[str, Any]
    chunking: dict[str, Any]

    @classmethod
    def from_settings(
        cls,
        embedding: EmbeddingSettings,
        chunking: ChunkingSettings,
        image: ImageEmbeddingSettings | None = None,
    ) -> IndexSpec:
        """The spec ``embedding``/``chunking`` (and the image model ``image``, None: none)
        describe: default model and prefixes resolved the way the provider resolves them
        (:mod:`app.embeddings.prefixes`).

        Raises:
            ProviderRejected: unknown provider name.
        """
        model = embedding.model or provider_class(embedding.provider).default_model
        doc_prefix, query_prefix = model_prefixes(model)
        data: dict[str, Any] = {
            "provider": embedding.provider,
            "model": model,
            "dimensions": embedding.dimensions,
            "numerics": numerics(embedding),
            "document_prefix": (
                embedding.document_prefix if embedding.document_prefix is not None else doc_prefix
            ),
            "query_prefix": (
                embedding.query_prefix if embedding.query_prefix is not None else query_prefix
            ),
            "base_url": embedding.base_url,
            "api_key_env": embedding.api_key_env,
            "backend": embedding.backend if embedding.provider == "local" else None,
            **image_fields(image),
        }
        return cls(data, {f: getattr(chunking, f) for f in CHUNKING_FIELDS})

    @classmethod
    def of(cls, version: IndexVersion) -> IndexSpec:
        """The spec recorded on ``version``."""
        return cls(dict(version.embedding), dict(version.chunking))

    def identity(self) -> dict[str, Any]:
        """The fields that decide what a vector means (:data:`IDENTITY_FIELDS`) and the chunking."""
        out = {f: self.embedding.get(f) for f in IDENTITY_FIELDS}
        out.update({f"chunking.{k}": self.chunking.get(k) for k in CHUNKING_FIELDS})
        return out

    def differences(self, other: IndexSpec) -> list[str]:
        """``field: mine -> theirs`` for each identity field that differs. A size one side does
        not state (the model's default) is not compared here: the provider's actual size is
        checked against the version's learned one before anything is written or searched."""
        a, b = self.identity(), other.identity()
        return [
            f"{k}: {a[k]!r} -> {b[k]!r}"
            for k in a
            if a[k] != b[k] and not (k in _SIZE_FIELDS and None in (a[k], b[k]))
        ]

    def embedding_settings(self, base: EmbeddingSettings) -> EmbeddingSettings:
        """``base`` (the process's operational settings: timeouts, limits, batch size) with this
        spec's model and connection fields; what a provider for this version is built from."""
        update_fields: dict[str, Any] = {
            "provider": self.embedding["provider"],
            "model": self.embedding["model"],
            "dimensions": self.embedding.get("dimensions"),
            "document_prefix": self.embedding.get("document_prefix"),
            "query_prefix": self.embedding.get("query_prefix"),
            "base_url": self.embedding.get("base_url"),
            "api_key_env": self.embedding.get("api_key_env"),
        }
        if self.embedding.get("backend"):
            update_fields["backend"] = self.embedding["backend"]
        elif self.embedding["provider"] == "local" and self.embedding.get("numerics") == "int8":
            update_fields["backend"] = "onnx-int8"
        return EmbeddingSettings.model_validate(base.model_dump() | update_fields)

    @property
    def has_images(self) -> bool:
        """Whether the version has an image model (its image documents get image vectors)."""
        return bool(self.embedding.get("image_provider"))

    def image_settings(self, base: ImageEmbeddingSettings) -> ImageEmbeddingSettings | None:
        """``base`` (the process's operational image settings: timeouts, batch size, picture
        size) with this spec's image model and connection fields; None: no image model."""
        if not self.has_images:
            return None
        e = self.embedding
        return ImageEmbeddingSettings.model_validate(
            base.model_dump()
            | {
                "provider": e["image_provider"],
                "model": e.get("image_model"),
                "dimensions": e.get("image_dimensions"),
                "model_path": e.get("image_model_path"),
                "base_url": e.get("image_base_url"),
                "api_key_env": e.get("image_api_key_env"),
            }
        )

    def chunking_settings(self) -> ChunkingSettings:
        """The chunking this spec records."""
        return ChunkingSettings.model_validate(self.chunking)

    def describe(self, dimensions: int | None = None) -> str:
        """``local:all-MiniLM-L6-v2 (384 dims, fp32; chunks 1000/200 chars)``."""
        e, c = self.embedding, self.chunking
        dims = dimensions or e.get("dimensions")
        bits = [f"{dims} dims" if dims else "dims unknown"]
        if e.get("numerics"):
            bits.append(str(e["numerics"]))
        if e.get("document_prefix") or e.get("query_prefix"):
            bits.append(f"prefixes {e.get('document_prefix')!r}/{e.get('query_prefix')!r}")
        chunks = f"chunks {c['chunk_size']}/{c['chunk_overlap']} {c['unit']}"
        images = ""
        if self.has_images:
            size = e.get("image_dimensions")
            images = f"; images {e['image_provider']}:{e.get('image_model')}" + (
                f" ({size} dims)" if size else ""
            )
        return f"{e['provider']}:{e['model']} ({', '.join(bits)}; {chunks}{images})"


@dataclass(frozen=True)
class VersionRef:
    """A snapshot of one version, safe to use after its session closed: what a query or a run
    resolved once and keeps using to its end."""

    id: uuid.UUID
    project_id: uuid.UUID
    version: int
    state: str
    spec: IndexSpec
    dimensions: int | None
    collection: str
    chunk_set: str
    follows_settings: bool

    @classmethod
    def of(cls, row: IndexVersion) -> VersionRef:
        """The snapshot of ``row``."""
        return cls(
            row.id,
            row.project_id,
            row.version,
            row.state,
            IndexSpec.of(row),
            row.dimensions,
            row.collection,
            row.chunk_set,
            row.follows_settings,
        )

    def label(self) -> str:
        """``version 2 (openai:text-embedding-3-small (512 dims; chunks 1000/200 chars))``."""
        return f"version {self.version} ({self.spec.describe(self.dimensions)})"

    @property
    def image_collection(self) -> str | None:
        """The collection of the version's image vectors; None: the version has no image model."""
        return image_collection(self.collection) if self.spec.has_images else None


# ---- resolution ---------------------------------------------------------------------------------
def versions_of(session: Session, project_id: uuid.UUID) -> list[IndexVersion]:
    """Every version of the project, oldest first."""
    return list(
        session.scalars(
            select(IndexVersion)
            .where(IndexVersion.project_id == project_id)
            .order_by(IndexVersion.version)
        )
    )


def get_version(session: Session, project_id: uuid.UUID, version: int) -> IndexVersion:
    """The project's version number ``version``.

    Raises:
        LookupError: no such version.
    """
    row = session.scalar(
        select(IndexVersion).where(
            IndexVersion.project_id == project_id, IndexVersion.version == version
        )
    )
    if row is None:
        raise LookupError(f"index version {version} not found")
    return row


def first_collection(settings: Settings) -> str:
    """The collection of every project's first version: ``DOCVEC_COLLECTION``, shared by the
    projects (every query filters by project), as before index versions existed."""
    return settings.collection


def version_collection(settings: Settings, project_id: uuid.UUID, version: int) -> str:
    """The collection of a project's later versions: ``{DOCVEC_COLLECTION}_{project}_v{n}``
    (12 hex digits of the project id: at most 48 characters with the default collection name,
    pgvector's table-name limit here)."""
    if version == 1:
        return first_collection(settings)
    return f"{settings.collection}_{project_id.hex[:12]}_v{version}"


def active_version(session: Session, project: Project, settings: Settings) -> VersionRef:
    """The project's active version; a project without versions gets version 1 from the settings
    (adopted data keeps its collection and chunks: nothing is re-embedded).

    Raises:
        IndexMismatch: the version follows the settings and the settings describe another index.
    """
    row = session.scalar(
        select(IndexVersion).where(
            IndexVersion.project_id == project.id, IndexVersion.state == IndexState.active
        )
    )
    if row is None:
        row = _first_version(session, project, settings)
    ref = VersionRef.of(row)
    check_settings(ref, settings, project_name=project.name)
    return ref


def building_version(session: Session, project_id: uuid.UUID) -> IndexVersion | None:
    """The project's version being built, if any (at most one at a time)."""
    return session.scalar(
        select(IndexVersion).where(
            IndexVersion.project_id == project_id, IndexVersion.state == IndexState.building
        )
    )


def settings_spec(settings: Settings) -> IndexSpec:
    """The spec the process settings describe (text model, chunking and image model)."""
    return IndexSpec.from_settings(settings.embedding, settings.chunking, settings.image_embedding)


def _first_version(session: Session, project: Project, settings: Settings) -> IndexVersion:
    spec = settings_spec(settings)
    row = IndexVersion(
        project_id=project.id,
        version=1,
        state=IndexState.active,
        embedding=spec.embedding,
        chunking=spec.chunking,
        dimensions=None,
        collection=first_collection(settings),
        chunk_set="",
        follows_settings=True,
        activate="auto",
        activated_at=utcnow(),
    )
    # Its own savepoint: a concurrent first request may create it first (unique project+version).
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = session.scalar(
            select(IndexVersion).where(
                IndexVersion.project_id == project.id, IndexVersion.state == IndexState.active
            )
        )
        if existing is None:
            raise
        return existing
    return row


def check_settings(ref: VersionRef, settings: Settings, *, project_name: str = "") -> None:
    """Refuse settings that describe another index than ``ref`` when ``ref`` follows them.

    Raises:
        IndexMismatch: names the version, the settings and the remedy.
    """
    if not ref.follows_settings:
        return
    mine = settings_spec(settings)
    diff = ref.spec.differences(mine)
    if not diff:
        return
    name = f"project {project_name!r}" if project_name else f"project {ref.project_id}"
    settings_text = mine.describe(_documented_dimension(settings))
    remedy = (
        f"build a new version with `docvec index create --project {project_name or ref.project_id}`"
        " (it takes the settings, or --provider/--model/...), and search keeps serving the "
        "active one until it is ready; or restore the settings"
    )
    raise IndexMismatch(
        f"{name}: its active index {ref.label()} differs from this process's settings "
        f"({settings_text}): {'; '.join(diff)}. Writing or searching would mix two models or "
        f"chunkings in one index. To change them, {remedy}."
    )


def _documented_dimension(settings: Settings) -> int | None:
    """The settings' vector size as the provider knows it without a request (its documented
    table, or ``dimensions``), for the refusal's message; None if it cannot tell."""
    try:
        provider = create_provider(settings.embedding)
    except Exception:
        return None
    try:
        return provider.known_dimension()
    except Exception:
        return None
    finally:
        provider.close()


def learn_dimensions(session: Session, version_id: uuid.UUID, dimensions: int) -> None:
    """Record a version's vector size the first time a provider reports it (versions adopted from
    data made before index versions do not know theirs)."""
    session.execute(
        update(IndexVersion)
        .where(IndexVersion.id == version_id, IndexVersion.dimensions.is_(None))
        .values(dimensions=dimensions)
    )


# ---- state changes ------------------------------------------------------------------------------
class VersionConflict(ValueError):
    """The state change is not possible now (a build running, a version not complete, ...)."""


def _lock_project(session: Session, project_id: uuid.UUID) -> Project:
    """Lock the project's row: activation, and the writes that must see one active version,
    decide one after the other (a no-op lock on SQLite, which runs one writer at a time)."""
    project = session.get(Project, project_id, with_for_update=True, populate_existing=True)
    if project is None:
        raise LookupError(f"project {project_id} not found")
    return project


def create_version(
    session: Session,
    *,
    project: Project,
    spec: IndexSpec,
    settings: Settings,
    follows_settings: bool,
    activate: ActivateMode = "auto",
) -> IndexVersion:
    """Record a new version in ``building`` state (the caller commits, then starts the build).

    Its chunks: the rows of a version with the same chunking (no re-extraction), else a chunk
    set of its own that the build fills by re-chunking the stored files.

    Raises:
        VersionConflict: a build is already running for the project, or the active version
            already is this spec (nothing to build).
    """
    _lock_project(session, project.id)
    active = active_version_or_none(session, project.id)
    if active is None:
        active = _first_version(session, project, settings)
    if building_version(session, project.id) is not None:
        raise VersionConflict(
            f"project {project.name!r} already has a version being built: cancel it first "
            "(`docvec index cancel`) or wait for it"
        )
    if not IndexSpec.of(active).differences(spec):
        raise VersionConflict(
            f"the active index version {active.version} of project {project.name!r} already is "
            f"{spec.describe(active.dimensions)}: nothing to build"
        )
    number = (
        session.scalar(
            select(func.max(IndexVersion.version)).where(IndexVersion.project_id == project.id)
        )
        or 0
    ) + 1
    chunk_set = f"v{number}"
    for other in versions_of(session, project.id):
        if other.chunking == spec.chunking:
            chunk_set = other.chunk_set
            break
    row = IndexVersion(
        project_id=project.id,
        version=number,
        state=IndexState.building,
        embedding=spec.embedding,
        chunking=spec.chunking,
        dimensions=spec.embedding.get("dimensions"),
        collection=version_collection(settings, project.id, number),
        chunk_set=chunk_set,
        follows_settings=follows_settings,
        activate=activate,
        build_started_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def active_version_or_none(session: Session, project_id: uuid.UUID) -> IndexVersion | None:
    """The project's active version row, without creating one."""
    return session.scalar(
        select(IndexVersion).where(
            IndexVersion.project_id == project_id, IndexVersion.state == IndexState.active
        )
    )


@dataclass(frozen=True)
class Progress:
    """How far a version is: documents of the project that are ``vectorized`` (``total``), how
    many of them it holds at their current generation (``done``), how many failed to get there
    (``failures``), its chunks, and an estimate of the seconds left (None: no rate yet)."""

    documents_total: int
    documents_done: int
    failures: int
    chunks: int
    eta_s: float | None

    @property
    def complete(self) -> bool:
        """Every vectorized document is in the version, without failure."""
        return self.documents_done == self.documents_total and self.failures == 0

    def as_dict(self) -> dict[str, object]:
        return {
            "documents_done": self.documents_done,
            "documents_total": self.documents_total,
            "failures": self.failures,
            "chunks": self.chunks,
            "eta_s": self.eta_s,
        }


def progress(session: Session, version: IndexVersion) -> Progress:
    """The version's :class:`Progress`, from SQL (two aggregate queries)."""
    current = and_(
        IndexVersionDocument.document_id == Document.id,
        IndexVersionDocument.version_id == version.id,
        IndexVersionDocument.generation == Document.generation,
    )
    live = and_(
        Document.project_id == version.project_id,
        Document.status == DocumentStatus.vectorized,
    )
    total = session.scalar(select(func.count()).select_from(Document).where(live)) or 0
    done, failed, chunks = session.execute(
        select(
            func.count().filter(IndexVersionDocument.error.is_(None)),
            func.count().filter(IndexVersionDocument.error.is_not(None)),
            func.coalesce(func.sum(IndexVersionDocument.chunks), 0),
        )
        .select_from(Document)
        .join(IndexVersionDocument, current)
        .where(live)
    ).one()
    eta: float | None = None
    started = version.build_started_at
    if version.state == IndexState.building and started is not None and done:
        elapsed = (utcnow() - _aware(started)).total_seconds()
        left = total - done - failed
        eta = round(max(0.0, left) * elapsed / done, 1) if math.isfinite(elapsed) else None
    return Progress(int(total), int(done), int(failed), int(chunks), eta)


def missing_documents(
    session: Session, version: IndexVersion, *, limit: int
) -> list[tuple[uuid.UUID, int]]:
    """Up to ``limit`` vectorized documents of the project that the version does not hold at
    their current generation (and did not fail at it): ``(document_id, generation)``."""
    held = (
        select(IndexVersionDocument.document_id)
        .where(
            IndexVersionDocument.version_id == version.id,
            IndexVersionDocument.document_id == Document.id,
            IndexVersionDocument.generation == Document.generation,
        )
        .exists()
    )
    rows = session.execute(
        select(Document.id, Document.generation)
        .where(
            Document.project_id == version.project_id,
            Document.status == DocumentStatus.vectorized,
            ~held,
        )
        .order_by(Document.created_at, Document.id)
        .limit(limit)
    ).all()
    return [(doc_id, generation) for doc_id, generation in rows]


def record_document(
    session: Session,
    *,
    version_id: uuid.UUID,
    document_id: uuid.UUID,
    generation: int,
    chunks: int,
    error: str | None = None,
) -> None:
    """Record that ``document_id`` at ``generation`` is in the version (or failed to get there),
    in the caller's transaction — the one that records its points."""
    row = session.get(IndexVersionDocument, (version_id, document_id))
    if row is None:
        session.add(
            IndexVersionDocument(
                version_id=version_id,
                document_id=document_id,
                generation=generation,
                chunks=chunks,
                error=error,
                built_at=utcnow(),
            )
        )
    else:
        row.generation, row.chunks, row.error, row.built_at = generation, chunks, error, utcnow()


def activate(session: Session, version: IndexVersion) -> list[IndexVersion]:
    """Make ``version`` the project's active one, in the caller's transaction (one commit flips
    it): the active one becomes ``retired``. Returns the retired versions beyond
    ``keep`` — none here; :func:`versions_to_drop` picks them.

    Raises:
        VersionConflict: the version is not complete (``progress``) or is failed/cancelled.
    """
    _lock_project(session, version.project_id)
    session.refresh(version)
    if version.state == IndexState.active:
        return []
    if version.state in (IndexState.failed, IndexState.cancelled):
        raise VersionConflict(
            f"index version {version.version} is {version.state}: create a new version"
        )
    state = progress(session, version)
    if not state.complete:
        raise VersionConflict(
            f"index version {version.version} holds {state.documents_done} of "
            f"{state.documents_total} documents ({state.failures} failed): it activates when "
            "complete"
        )
    previous = active_version_or_none(session, version.project_id)
    now = utcnow()
    if previous is not None:
        previous.state = IndexState.retired
    version.state = IndexState.active
    version.activated_at = now
    version.lease_until = None
    if version.built_at is None:
        version.built_at = now
    session.flush()
    return [previous] if previous is not None else []


def versions_to_drop(session: Session, project_id: uuid.UUID, *, keep: int) -> list[IndexVersion]:
    """Retired, failed and cancelled versions beyond the ``keep`` newest retired ones."""
    retired = [
        v
        for v in reversed(versions_of(session, project_id))
        if v.state in (IndexState.retired, IndexState.failed, IndexState.cancelled)
    ]
    kept = [v for v in retired if v.state == IndexState.retired][:keep]
    return [v for v in retired if v not in kept]


def start_catch_up(session: Session, version: IndexVersion) -> None:
    """Put a retired version back to ``building`` (auto-activate): a rollback to it first adds
    what changed since it was retired, then swaps."""
    version.state = IndexState.building
    version.activate = "auto"
    version.build_started_at = utcnow()
    version.error = None
    version.lease_until = None


def cancel(session: Session, version: IndexVersion) -> None:
    """Cancel a build (the active version is untouched; the collection stays until dropped).

    Raises:
        VersionConflict: the version is not being built.
    """
    if version.state not in (IndexState.building, IndexState.ready):
        raise VersionConflict(f"index version {version.version} is {version.state}, not building")
    version.state = IndexState.cancelled
    version.lease_until = None


def live_versions(session: Session, project_id: uuid.UUID) -> list[VersionRef]:
    """The versions a document change must reach: active and building (and ready: complete,
    waiting for a manual activation)."""
    return [
        VersionRef.of(v)
        for v in versions_of(session, project_id)
        if v.state in (IndexState.active, IndexState.building, IndexState.ready)
    ]


def shares_collection(session: Session, version: IndexVersion) -> bool:
    """Whether another version (of any project) uses the same collection: then dropping this one
    deletes its project's points, not the collection."""
    n = session.scalar(
        select(func.count()).where(
            IndexVersion.collection == version.collection, IndexVersion.id != version.id
        )
    )
    return bool(n)


def chunk_set_in_use(
    session: Session, project_id: uuid.UUID, chunk_set: str, but: uuid.UUID
) -> bool:
    """Whether a version of the project other than ``but`` reads the chunk set."""
    n = session.scalar(
        select(func.count()).where(
            IndexVersion.project_id == project_id,
            IndexVersion.chunk_set == chunk_set,
            IndexVersion.id != but,
        )
    )
    return bool(n)


def as_dict(session: Session, version: IndexVersion) -> dict[str, object]:
    """The API and ``--json`` form of a version, with its progress."""
    spec = IndexSpec.of(version)
    return {
        "id": str(version.id),
        "version": version.version,
        "state": version.state,
        "provider": spec.embedding["provider"],
        "model": spec.embedding["model"],
        "dimensions": version.dimensions,
        "numerics": spec.embedding.get("numerics"),
        "document_prefix": spec.embedding.get("document_prefix"),
        "query_prefix": spec.embedding.get("query_prefix"),
        "chunking": spec.chunking,
        "image_provider": spec.embedding.get("image_provider"),
        "image_model": spec.embedding.get("image_model"),
        "image_dimensions": spec.embedding.get("image_dimensions"),
        "collection": version.collection,
        "follows_settings": version.follows_settings,
        "activate": version.activate,
        "progress": progress(session, version).as_dict(),
        "error": version.error,
        "created_at": version.created_at,
        "build_started_at": version.build_started_at,
        "built_at": version.built_at,
        "activated_at": version.activated_at,
    }


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def spec_for(
    settings: Settings,
    *,
    provider: str | None = None,
    model: str | None = None,
    dimensions: int | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    document_prefix: str | None = None,
    query_prefix: str | None = None,
    backend: str | None = None,
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
    image_provider: str | None = None,
    image_model: str | None = None,
    image_model_path: str | None = None,
    image_dimensions: int | None = None,
) -> tuple[IndexSpec, bool]:
    """The spec of a new version: the settings with the given overrides, and whether it follows
    the settings (no override given). Naming another provider drops the settings' model, server,
    key variable, dimensions and prefixes, which belong to the settings' provider; naming another
    image provider (``none``: no image model) drops the image model's likewise.

    Raises:
        pydantic.ValidationError: an override the settings model refuses (a chunk_overlap not
            below chunk_size, an unknown provider or backend).
    """
    embedding = settings.embedding.model_dump()
    if provider is not None and provider != settings.embedding.provider:
        embedding.update(
            provider=provider,
            model=None,
            base_url=None,
            api_key_env=None,
            dimensions=None,
            document_prefix=None,
            query_prefix=None,
        )
    given = {
        "model": model,
        "dimensions": dimensions,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "document_prefix": document_prefix,
        "query_prefix": query_prefix,
        "backend": backend,
    }
    embedding.update({k: v for k, v in given.items() if v is not None})
    chunking = settings.chunking.model_dump()
    chunking.update(
        {k: v for k, v in {"chunk_size": chunk_size, "chunk_overlap": chunk_overlap}.items() if v}
    )
    follows = (
        provider is None
        and all(v is None for v in given.values())
        and not (chunk_size or chunk_overlap)
    )
    image = settings.image_embedding.model_dump()
    if image_provider is not None and image_provider != settings.image_embedding.provider:
        image.update(
            provider=image_provider,
            model=None,
            model_path=None,
            base_url=None,
            api_key_env=None,
            dimensions=None,
        )
    image_given = {
        "model": image_model,
        "model_path": image_model_path,
        "dimensions": image_dimensions,
    }
    image.update({k: v for k, v in image_given.items() if v is not None})
    follows = follows and image_provider is None and all(v is None for v in image_given.values())
    spec = IndexSpec.from_settings(
        EmbeddingSettings.model_validate(embedding),
        ChunkingSettings.model_validate(chunking),
        ImageEmbeddingSettings.model_validate(image),
    )
    return spec, follows
