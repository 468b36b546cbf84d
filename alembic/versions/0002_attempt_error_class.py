"""vectorization_attempts.error_class: the error tree class that ended an attempt

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vectorization_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_class", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vectorization_attempts", schema=None) as batch_op:
        batch_op.drop_column("error_class")
