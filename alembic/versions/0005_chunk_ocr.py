"""document_chunks.ocr: whether a chunk's text was read by OCR (scans and images)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every chunk written before OCR existed came from a text layer: false, filled by the server
    # default, so the column can be NOT NULL at once.
    with op.batch_alter_table("document_chunks") as batch:
        batch.add_column(sa.Column("ocr", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("document_chunks") as batch:
        batch.drop_column("ocr")
