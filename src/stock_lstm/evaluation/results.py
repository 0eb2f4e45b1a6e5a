"""A walk-forward backtest's results as typed records: what ``summary.json`` holds.

Why typed: the CLI, notebook 05, the reports index, ``compare``, sweeps and ``evaluate``
all read the same document; with attributes a typo fails at once and a type checker sees
it, where a string key into nested dicts (``row["0.9"]["coverage"]``) breaks silently.

The JSON form is unchanged, so every ``summary.json`` ever written reads: per forecaster,
one row per horizon holding ``pinball`` and ``crps`` beside one object per interval level
keyed ``"0.8"``, ``"0.9"``, ``"0.95"``. Records are lenient (``models.records.Record``): a
key this version does not know is ignored, a missing one takes its default.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    ValidationError,
    computed_field,
    model_serializer,
    model_validator,
)

from stock_lstm.models.records import HorizonScores, IntervalScores, Record

logger = logging.getLogger(__name__)


def level_key(level: float) -> str:
    """The JSON key of an interval level: ``0.9`` -> ``"0.9"``."""
    return f"{level:g}"


class LevelScores(Record):
    """One forecaster's intervals at one level and horizon (``probabilistic.horizon_scores``):
    width and Winkler score in % of the close, lower is better."""

    coverage: float | None = None
    width: float | None = None
    winkler: float | None = None
    kupiec_p: float | None = Field(None, description="Kupiec's unconditional coverage test.")
    christoffersen_p: float | None = Field(None, description="Christoffersen's independence test.")
    coverage_by_regime: tuple[float | None, ...] | None = Field(
        None, description="Coverage in calm, normal and turbulent terciles of volatility."
    )


class ProbabilisticScores(Record):
    """Every probabilistic score of one forecaster at one horizon."""

    horizon: int = Field(1, ge=1)
    pinball: float | None = None
    crps: float | None = Field(None, description="Quantile CRPS, % of the close.")
    levels: dict[str, LevelScores] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_levels(cls, values: Any) -> Any:
        """The JSON form keys each level's scores by the level itself, beside ``crps``."""
        if not isinstance(values, Mapping) or "levels" in values:
            return values
        levels = {key: value for key, value in values.items() if _is_level(key)}
        rest = {key: value for key, value in values.items() if not _is_level(key)}
        return {**rest, "levels": levels}

    @model_serializer(mode="wrap")
    def _flatten_levels(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        levels = data.pop("levels", {}) or {}
        return {**data, **levels}

    def at(self, level: float) -> LevelScores:
        """The scores at ``level`` (empty scores if that level was not scored)."""
        return self.levels.get(level_key(level)) or LevelScores()


def _is_level(key: Any) -> bool:
    try:
        return 0.0 < float(key) < 1.0
    except (TypeError, ValueError):
        return False


#: Per forecaster name, its scores by horizon (h=1 first).
Probabilistic = Mapping[str, Sequence[ProbabilisticScores]]


def scores_at(probabilistic: Probabilistic, name: str, horizon: int) -> ProbabilisticScores | None:
    """``name``'s scores at ``horizon`` (None if it was not scored that far)."""
    rows = probabilistic.get(name) or ()
    return rows[horizon - 1] if len(rows) >= horizon else None


def intervals_at(
    probabilistic: Probabilistic, level: float, horizon: int = 1
) -> dict[str, IntervalScores]:
    """Each forecaster's coverage, Winkler and CRPS at ``level`` and ``horizon``: the row a
    training's metrics keep (``TrainingMetrics.intervals_h1``)."""
    out = {}
    for name in probabilistic:
        row = scores_at(probabilistic, name, horizon)
        if row is not None:
            at = row.at(level)
            out[name] = IntervalScores(coverage=at.coverage, winkler=at.winkler, crps=row.crps)
    return out


class FitWindow(Record):
    """One fit of a backtest: the rows it trained on and the origins it served."""

    fit: int
    train_first_date: str
    train_last_date: str
    first_origin_date: str
    origins: int
    epochs_run: int = 0
    best_epoch: int = 0
    warm_start: bool = False


class BacktestSummary(Record):
    """Everything a walk-forward backtest scored (``evaluation.backtest.walk_forward``)."""

    ticker: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="TrainParams.to_dict().")
    config: dict[str, Any] = Field(default_factory=dict, description="The BacktestConfig.")
    n_origins: int = 0
    first_origin: str | None = None
    last_origin: str | None = None
    fits: int = 0
    epochs_per_fit: tuple[int, ...] = ()
    horizons: tuple[HorizonScores, ...] = Field(default=(), description="Point scores, h=1 first.")
    probabilistic: dict[str, tuple[ProbabilisticScores, ...]] = Field(
        default_factory=dict, description="Per interval forecaster, its scores by horizon."
    )
    anchor_choices: tuple[tuple[str, ...], ...] = Field(
        default=(), description="Per block then horizon, the anchor model_anchor averaged with."
    )
    fit_windows: tuple[FitWindow, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rmae(self) -> dict[str, float | None]:
        """rMAE by horizon (``"1"``: ...), for readers of the flat form."""
        return {str(row.horizon): row.rmae for row in self.horizons}

    @property
    def interval_level(self) -> float:
        return float(self.config.get("interval_level") or 0.9)

    def at_horizon(self, horizon: int) -> HorizonScores | None:
        return next((row for row in self.horizons if row.horizon == horizon), None)

    def point_table(self) -> Any:
        """One row per horizon: every recorded point metric of ``evaluation.metrics`` for the
        model and every point baseline, rMAE of the model (with its 95% band from
        Diebold-Mariano) and of each baseline other than persistence, the DM p-value, the
        direction hit rate and the interval's coverage. A metric added to ``POINT_METRICS`` or
        a baseline added to ``BASELINE_CLASSES`` appears here with nothing else to edit."""
        import pandas as pd

        from stock_lstm.evaluation.metrics import POINT_METRICS

        level = f"{self.interval_level:.0%} coverage"
        rows = {}
        for row in self.horizons:
            cells: dict[str, Any] = {}
            for name in POINT_METRICS:
                for who, scores in (("model", row.model), *row.baselines.items()):
                    if scores.get(name) is not None:
                        cells[f"{who} {name.upper()}"] = scores[name]
            low, high = row.rmae_ci
            cells.update(
                {
                    "rMAE (model)": row.rmae,
                    "rMAE 95% low": low,
                    "rMAE 95% high": high,
                    **{f"rMAE ({name})": ratio for name, ratio in row.baseline_rmae.items()},
                    "DM p-value": row.dm_p_value,
                    "direction hit rate": row.directional_accuracy,
                    level: row.coverage,
                }
            )
            rows[row.horizon] = cells
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "horizon"
        return table

    def to_json_text(self) -> str:
        """The one JSON form ``summary.json`` holds (NaN written as null)."""
        return self.model_dump_json(indent=2)

    @classmethod
    def read(cls, path: Path) -> BacktestSummary | None:
        """A run folder's ``summary.json``, whichever version wrote it; None if there is
        none or it cannot be read (logged: an index of 2,000 runs must not stop at one)."""
        try:
            return cls.model_validate_json(path.read_bytes()) if path.is_file() else None
        except (OSError, ValidationError, ValueError) as error:
            logger.warning("%s is not a backtest summary: %s", path, str(error).splitlines()[0])
            return None
