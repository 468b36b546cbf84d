"""index versions: index_versions, index_version_documents, document_chunks.chunk_set; every
existing project adopted as version 1 of its data, with no re-embedding (app/indexes.py)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("document_chunks") as batch:
        batch.add_column(sa.Column("chunk_set", sa.String(32), nullable=False, server_default=""))
        batch.drop_constraint("uq_document_chunks_doc_index", type_="unique")
        batch.create_unique_constraint(
            "uq_document_chunks_doc_set_index", ["document_id", "chunk_set", "chunk_index"]
        )
    op.create_table(
        "index_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("embedding", sa.JSON(), nullable=False),
        sa.Column("chunking", sa.JSON(), nullable=False),
        sa.Column("dimensions", sa.Integer(), nullable=True),
        sa.Column("collection", sa.String(200), nullable=False),
        sa.Column("chunk_set", sa.String(32), nullable=False),
        sa.Column("follows_settings", sa.Boolean(), nullable=False),
        sa.Column("activate", sa.String(10), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("build_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_index_versions_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_index_versions")),
        sa.UniqueConstraint("project_id", "version", name="uq_index_versions_project_version"),
    )
    op.create_index("ix_index_versions_state", "index_versions", ["state"], unique=False)
    op.create_table(
        "index_version_documents",
        sa.Column("version_id", sa.Uuid(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["index_versions.id"],
            name=op.f("fk_index_version_documents_version_id_index_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_index_version_documents_document_id_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "version_id", "document_id", name=op.f("pk_index_version_documents")
        ),
    )
    op.create_index(
        "ix_index_version_documents_document",
        "index_version_documents",
        ["document_id"],
        unique=False,
    )
    _adopt()


def _adopt() -> None:
    """Version 1 of every project: the settings' spec, but the provider and model its documents
    record (the truth of the data, when the settings changed since); the shared collection."""
    from app.config import get_settings
    from app.indexes import IndexSpec, first_collection

    conn = op.get_bind()
    settings = get_settings()
    spec = IndexSpec.from_settings(settings.embedding, settings.chunking)
    projects = sa.table("projects", sa.column("id", sa.Uuid()))
    documents = sa.table(
        "documents",
        sa.column("id", sa.Uuid()),
        sa.column("project_id", sa.Uuid()),
        sa.column("status", sa.String()),
        sa.column("generation", sa.Integer()),
        sa.column("chunk_count", sa.Integer()),
        sa.column("embedding_model", sa.String()),
    )
    versions = sa.table(
        "index_versions",
        *(
            sa.column(n, t)
            for n, t in [
                ("id", sa.Uuid()),
                ("project_id", sa.Uuid()),
                ("version", sa.Integer()),
                ("state", sa.String()),
                ("embedding", sa.JSON()),
                ("chunking", sa.JSON()),
                ("dimensions", sa.Integer()),
                ("collection", sa.String()),
                ("chunk_set", sa.String()),
                ("follows_settings", sa.Boolean()),
                ("activate", sa.String()),
                ("created_at", sa.DateTime(timezone=True)),
                ("activated_at", sa.DateTime(timezone=True)),
            ]
        ),
    )
    members = sa.table(
        "index_version_documents",
        sa.column("version_id", sa.Uuid()),
        sa.column("document_id", sa.Uuid()),
        sa.column("generation", sa.Integer()),
        sa.column("chunks", sa.Integer()),
        sa.column("built_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    for (project_id,) in conn.execute(sa.select(projects.c.id)).all():
        docs = conn.execute(
            sa.select(
                documents.c.id,
                documents.c.status,
                documents.c.generation,
                documents.c.chunk_count,
                documents.c.embedding_model,
            ).where(documents.c.project_id == project_id)
        ).all()
        embedding = dict(spec.embedding)
        recorded = Counter(d.embedding_model for d in docs if d.embedding_model)
        if recorded:
            provider, _, model = recorded.most_common(1)[0][0].partition(":")
            if (provider, model) != (embedding["provider"], embedding["model"]):
                # The settings describe another model than the data: record the data's, with
                # its defaults; the process then refuses until the settings agree.
                from app.config import EmbeddingSettings

                try:
                    embedding = IndexSpec.from_settings(
                        EmbeddingSettings(provider=provider, model=model),  # type: ignore[arg-type]
                        settings.chunking,
                    ).embedding
                except Exception:  # a provider this version of docvec no longer knows
                    embedding.update(provider=provider, model=model)
        version_id = uuid.uuid4()
        conn.execute(
            versions.insert().values(
                id=version_id,
                project_id=project_id,
                version=1,
                state="active",
                embedding=embedding,
                chunking=spec.chunking,
                dimensions=None,
                collection=first_collection(settings),
                chunk_set="",
                follows_settings=True,
                activate="auto",
                created_at=now,
                activated_at=now,
            )
        )
        held = [
            {
                "version_id": version_id,
                "document_id": d.id,
                "generation": d.generation,
                "chunks": d.chunk_count,
                "built_at": now,
            }
            for d in docs
            if d.status == "vectorized"
        ]
        if held:
            conn.execute(members.insert(), held)


def downgrade() -> None:
    op.drop_index("ix_index_version_documents_document", table_name="index_version_documents")
    op.drop_table("index_version_documents")
    op.drop_index("ix_index_versions_state", table_name="index_versions")
    op.drop_table("index_versions")
    op.execute("DELETE FROM document_chunks WHERE chunk_set <> ''")
    with op.batch_alter_table("document_chunks") as batch:
        batch.drop_constraint("uq_document_chunks_doc_set_index", type_="unique")
        batch.create_unique_constraint(
            "uq_document_chunks_doc_index", ["document_id", "chunk_index"]
        )
        batch.drop_column("chunk_set")
