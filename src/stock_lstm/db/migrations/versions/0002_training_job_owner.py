"""Training jobs record their owner process (host, pid).

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-20

A restarted server marks a job failed only when the process that ran it is gone; for that
each job row names its owner. Both columns are nullable: jobs from before have no owner and
are treated as the restart rule always treated them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the two nullable owner columns (existing rows keep NULL)."""
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("owner_host", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("owner_pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop the owner columns (SQLite rebuilds the table in batch mode)."""
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("owner_pid")
        batch.drop_column("owner_host")
