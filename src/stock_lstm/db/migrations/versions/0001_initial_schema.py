"""Initial schema: price cache, training jobs and the model registry.

Revision ID: 0001
Revises:
Create Date: 2026-05-20

The schema exactly as ``Base.metadata.create_all`` built it before migrations existed (commit
2a6124b): ``stock_lstm.db.migrate`` stamps such databases with this revision instead of
dropping them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the three tables, their lookup indexes and the one-active-model index."""
    op.create_table(
        "price_cache",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticker", sa.String(length=16), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("adj_close", sa.Float(), nullable=True),
        sa.Column("volume", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticker", "date", name="uq_price_cache_ticker_date"),
    )
    op.create_index("ix_price_cache_ticker", "price_cache", ["ticker"])

    op.create_table(
        "training_jobs",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("ticker", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("current_epoch", sa.Integer(), nullable=False),
        sa.Column("total_epochs", sa.Integer(), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=True),
        sa.Column("val_loss", sa.Float(), nullable=True),
        sa.Column("losses", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("version_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_training_jobs_status", "training_jobs", ["status"])
    op.create_index("ix_training_jobs_ticker", "training_jobs", ["ticker"])

    op.create_table(
        "model_registry",
        sa.Column("version_id", sa.String(length=64), nullable=False),
        sa.Column("ticker", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("model_path", sa.Text(), nullable=False),
        sa.Column("scaler_path", sa.Text(), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("scaler_sha256", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("first_date", sa.Date(), nullable=False),
        sa.Column("last_date", sa.Date(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("data_sha256", sa.String(length=64), nullable=False),
        sa.Column("code_version", sa.String(length=64), nullable=False),
        sa.Column("report_path", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("version_id"),
    )
    op.create_index("ix_model_registry_ticker", "model_registry", ["ticker"])
    # Never two active models for a ticker, enforced by the database itself.
    op.create_index(
        "uq_model_registry_one_active",
        "model_registry",
        ["ticker"],
        unique=True,
        sqlite_where=sa.text("is_active"),
        postgresql_where=sa.text("is_active"),
    )


def downgrade() -> None:
    """Drop everything (the cache, the job history and the registry rows are lost)."""
    op.drop_index("uq_model_registry_one_active", table_name="model_registry")
    op.drop_index("ix_model_registry_ticker", table_name="model_registry")
    op.drop_table("model_registry")
    op.drop_index("ix_training_jobs_ticker", table_name="training_jobs")
    op.drop_index("ix_training_jobs_status", table_name="training_jobs")
    op.drop_table("training_jobs")
    op.drop_index("ix_price_cache_ticker", table_name="price_cache")
    op.drop_table("price_cache")
