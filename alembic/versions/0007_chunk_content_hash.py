"""document_chunks.content_sha256: unchanged and repeated chunk texts reuse their stored vectors
(app/pipeline/reuse.py); existing rows get theirs here

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Rows hashed per round trip: bounds the memory of the backfill (texts of about 1 KB each).
_PAGE = 2000


def upgrade() -> None:
    with op.batch_alter_table("document_chunks") as batch:
        batch.add_column(sa.Column("content_sha256", sa.String(64), nullable=True))
    op.create_index(
        "ix_document_chunks_content_sha256", "document_chunks", ["content_sha256"], unique=False
    )
    conn = op.get_bind()
    chunks = sa.table(
        "document_chunks",
        sa.column("id", sa.Uuid()),
        sa.column("content", sa.Text()),
        sa.column("content_sha256", sa.String()),
    )
    while True:
        rows = conn.execute(
            sa.select(chunks.c.id, chunks.c.content)
            .where(chunks.c.content_sha256.is_(None))
            .limit(_PAGE)
        ).all()
        if not rows:
            break
        for cid, content in rows:
            digest = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
            conn.execute(chunks.update().where(chunks.c.id == cid).values(content_sha256=digest))


def downgrade() -> None:
    op.drop_index("ix_document_chunks_content_sha256", table_name="document_chunks")
    with op.batch_alter_table("document_chunks") as batch:
        batch.drop_column("content_sha256")
