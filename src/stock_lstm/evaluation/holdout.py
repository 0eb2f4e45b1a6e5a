"""A trained model's forecasts on a slice (validation or test) and their point scores,
horizon by horizon.

The model and every point baseline (``evaluation.baselines.BASELINE_CLASSES``: persistence,
drift) are scored on exactly the same origins and target days.
The intervals and the whole evaluation of a training are built on these in
``evaluation.model_evaluation``. Nothing here trains or writes anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stock_lstm.data.preprocessing import PreparedData, origins_between
from stock_lstm.evaluation.baselines import baseline_paths
from stock_lstm.evaluation.conformal import coverage
from stock_lstm.evaluation.forecasters import PriceHistory
from stock_lstm.evaluation.metrics import score
from stock_lstm.evaluation.significance import diebold_mariano, wilson_interval
from stock_lstm.models.records import HorizonScores

DEFAULT_INTERVAL_LEVEL = 0.9


@dataclass(frozen=True)
class HoldoutForecasts:
    """Forecasts from consecutive origins of one slice; ``actual`` is NaN past the slice."""

    origins: np.ndarray
    origin_dates: pd.DatetimeIndex
    last_close: np.ndarray
    forecast: np.ndarray
    actual: np.ndarray
    #: Each point baseline's (n, horizon) forecast by name; ``persistence`` is always there.
    baselines: Mapping[str, np.ndarray]
    #: Price quantiles (n, horizon, Q) of a quantile head, at ``quantile_levels``.
    quantiles: np.ndarray | None = None
    quantile_levels: tuple[float, ...] = ()

    @property
    def horizon(self) -> int:
        return int(self.forecast.shape[1])

    @property
    def persistence(self) -> np.ndarray:
        """Tomorrow = today: the baseline every rMAE divides by."""
        return self.baselines["persistence"]


def slice_forecasts(
    model: Any,
    data: PreparedData,
    strategy: str,
    slice_name: str,
    horizon: int,
) -> HoldoutForecasts:
    """Forecast ``horizon`` days from every origin whose next day lies in ``slice_name``."""
    from stock_lstm.models.forecasting import predict_distribution

    bounds = {"val": (data.train_rows, data.val_rows), "test": (data.val_rows, len(data.prices))}
    first_row, end_row = bounds[slice_name]
    origins = origins_between(first_row, end_row, 1, data.earliest_origin())
    closes = data.prices.to_numpy(dtype=np.float64)
    last_close = closes[origins]
    forecast, quantiles = predict_distribution(
        model, data.encoder, strategy, data.windows(origins), last_close, horizon
    )
    rows = origins[:, None] + np.arange(1, horizon + 1)
    actual = np.where(rows < end_row, closes[np.minimum(rows, len(closes) - 1)], np.nan)
    return HoldoutForecasts(
        origins=origins,
        origin_dates=data.prices.index[origins],
        last_close=last_close,
        forecast=forecast,
        actual=actual,
        baselines=baseline_paths(PriceHistory(closes), data.train_rows, origins, horizon),
        quantiles=quantiles,
        quantile_levels=tuple(getattr(model, "quantiles", ())),
    )


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def horizon_metrics(
    forecasts: HoldoutForecasts,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> list[HorizonScores]:
    """One row per horizon: model and baseline scores, rMAE, direction, DM, coverage.

    rMAE = MAE(model) / MAE(persistence) on the same dates (1 = no better than tomorrow =
    today). Directional accuracy counts days where the model's predicted move has the sign of
    the actual move (days without a move are left out), with a 95% Wilson interval.
    """
    rows = []
    for h in range(forecasts.horizon):
        valid = np.isfinite(forecasts.actual[:, h])
        if valid.sum() < 2:
            break
        actual = forecasts.actual[valid, h]
        model = forecasts.forecast[valid, h]
        persistence = forecasts.persistence[valid, h]
        model_score = score(actual, model)
        baseline_scores = {
            name: score(actual, paths[valid, h]) for name, paths in forecasts.baselines.items()
        }
        actual_move = actual - forecasts.last_close[valid]
        model_move = model - forecasts.last_close[valid]
        moved = actual_move != 0
        hits = int(np.sum(np.sign(model_move[moved]) == np.sign(actual_move[moved])))
        trials = int(moved.sum())
        ci_low, ci_high = wilson_interval(hits, trials)
        dm = diebold_mariano(actual - model, actual - persistence, h + 1)
        # rMAE's 95% band from the same test: 1 + (the mean |error| difference's interval)
        # / persistence MAE; it excludes 1 exactly when the DM p-value is below 0.05.
        low, high = dm.interval()
        base_mae = baseline_scores["persistence"]["mae"]
        row: dict[str, Any] = {
            "horizon": h + 1,
            "n": int(valid.sum()),
            "model": model_score,
            "baselines": baseline_scores,
            "rmae": _finite(model_score["mae"] / base_mae),
            "rmae_ci": [_finite(1 + low / base_mae), _finite(1 + high / base_mae)]
            if base_mae
            else [None, None],
            "directional_accuracy": _finite(hits / trials) if trials else None,
            "directional_ci": [_finite(ci_low), _finite(ci_high)],
            "dm_statistic": _finite(dm.statistic),
            "dm_p_value": _finite(dm.p_value),
            "predicted_move_std": float(np.std(np.log(model / forecasts.last_close[valid]))),
            "actual_move_std": float(np.std(np.log(actual / forecasts.last_close[valid]))),
        }
        if lower is not None and upper is not None:
            cover, width = coverage(actual, lower[valid, h], upper[valid, h])
            row.update(coverage=_finite(cover), interval_width=_finite(width))
        rows.append(HorizonScores.model_validate(row))
    return rows
