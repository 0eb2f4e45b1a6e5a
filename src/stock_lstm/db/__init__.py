"""Database layer: typed ORM models and engine/session construction."""

from __future__ import annotations

from stock_lstm.db.models import (
    Base,
    CalibrationStateRow,
    ModelRegistry,
    PriceCache,
    TrainingJob,
)
from stock_lstm.db.session import Database

__all__ = [
    "Base",
    "CalibrationStateRow",
    "Database",
    "ModelRegistry",
    "PriceCache",
    "TrainingJob",
]
