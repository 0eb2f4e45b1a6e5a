"""Indexes for newest-first listings paged by (created_at, id).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

A nightly retrain of hundreds of tickers grows the registry and the jobs table by as many
rows a night; ``/models``, ``/training/jobs`` and ``stock-lstm models`` now page through
them by keyset (``db/pages.py``), which these two indexes answer without sorting the table.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the two listing indexes (unless a schema made by ``create_all`` has them)."""
    op.create_index(
        "ix_model_registry_created_version",
        "model_registry",
        ["created_at", "version_id"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_training_jobs_created_job",
        "training_jobs",
        ["created_at", "job_id"],
        if_not_exists=True,
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_training_jobs_created_job", table_name="training_jobs")
    op.drop_index("ix_model_registry_created_version", table_name="model_registry")
