"""Model versions carry an online interval calibration state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Intervals are corrected as closes arrive (see ``models/online_calibration.py``); the state
of each version lives in its own small table, written on forecasts, so the registry row
stays as it was registered. Versions from before have no row and start from the state their
metrics hold, or from their static conformal band.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create calibration_states (empty)."""
    op.create_table(
        "calibration_states",
        sa.Column("version_id", sa.String(length=64), nullable=False),
        sa.Column("through", sa.Date(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version_id"),
    )


def downgrade() -> None:
    """Drop calibration_states."""
    op.drop_table("calibration_states")
