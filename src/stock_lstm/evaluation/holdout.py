"""Scoring a trained model on its validation and test slices, horizon by horizon.

The model, persistence and drift are scored on exactly the same origins and target days.
Validation forecasts calibrate the conformal intervals and feed the promotion gate; test
forecasts are what reports show. Nothing here trains or writes anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stock_lstm.data.preprocessing import PreparedData, origins_between
from stock_lstm.evaluation.baselines import drift_paths, mean_log_return, persistence_paths
from stock_lstm.evaluation.conformal import coverage
from stock_lstm.evaluation.metrics import score
from stock_lstm.evaluation.significance import diebold_mariano, wilson_interval
from stock_lstm.models.records import (
    HorizonScores,
    IntervalScores,
    TrainingMetrics,
    ValidationScores,
)

DEFAULT_INTERVAL_LEVEL = 0.9


@dataclass(frozen=True)
class HoldoutForecasts:
    """Forecasts from consecutive origins of one slice; ``actual`` is NaN past the slice."""

    origins: np.ndarray
    origin_dates: pd.DatetimeIndex
    last_close: np.ndarray
    forecast: np.ndarray
    actual: np.ndarray
    persistence: np.ndarray
    drift: np.ndarray
    #: Price quantiles (n, horizon, Q) of a quantile head, at ``quantile_levels``.
    quantiles: np.ndarray | None = None
    quantile_levels: tuple[float, ...] = ()

    @property
    def horizon(self) -> int:
        return int(self.forecast.shape[1])


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
    mu = mean_log_return(closes[: data.train_rows])
    return HoldoutForecasts(
        origins=origins,
        origin_dates=data.prices.index[origins],
        last_close=last_close,
        forecast=forecast,
        actual=actual,
        persistence=persistence_paths(last_close, horizon),
        drift=drift_paths(last_close, mu, horizon),
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
    """One row per horizon: model, persistence and drift scores, rMAE, direction, DM, coverage.

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
        drift = forecasts.drift[valid, h]
        model_score = score(actual, model)
        persistence_score = score(actual, persistence)
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
        base_mae = persistence_score["mae"]
        row: dict[str, Any] = {
            "horizon": h + 1,
            "n": int(valid.sum()),
            "model": model_score,
            "persistence": persistence_score,
            "drift": score(actual, drift),
            "rmae": _finite(model_score["mae"] / persistence_score["mae"]),
            "rmae_ci": [_finite(1 + low / base_mae), _finite(1 + high / base_mae)]
            if base_mae
            else [None, None],
            "rmae_drift": _finite(score(actual, drift)["mae"] / persistence_score["mae"]),
            "directional_accuracy": _finite(hits / trials) if trials else None,
            "directional_ci": [_finite(ci_low), _finite(ci_high)],
            "dm_statistic": _finite(dm.statistic),
            "dm_p_value": _finite(dm.p_value),
            "predicted_move_std": float(np.std(np.log(model / forecasts.last_close[valid]))),
            "actual_move_std": float(np.std(np.log(actual / forecasts.last_close[valid]))),
        }
        if lower is not None and upper is not None:
            cover, width = coverage(actual, lower[valid, h], upper[valid, h])
            row["coverage"], row["interval_width"] = _finite(cover), _finite(width)
        rows.append(HorizonScores.model_validate(row))
    return rows


@dataclass(frozen=True)
class TestEvaluation:
    """Next-day forecasts on the test slice beside persistence, in price units, day by day.

    ``metrics``: the typed scores per horizon, validation, calibration and intervals (the
    registered version's ``metrics`` once the gate and the training run are added).
    """

    __test__ = False  # not a pytest test class, despite the name

    dates: pd.DatetimeIndex
    actual: np.ndarray
    predicted: np.ndarray
    persistence: np.ndarray
    metrics: TrainingMetrics
    test_forecasts: HoldoutForecasts | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    interval_level: float = DEFAULT_INTERVAL_LEVEL
    extra: dict[str, Any] = field(default_factory=dict)


def evaluate_model(
    model: Any,
    data: PreparedData,
    strategy: str,
    horizon: int,
    *,
    interval_level: float = DEFAULT_INTERVAL_LEVEL,
) -> TestEvaluation:
    """Validation (gate, interval calibration) and test (report) scores of a trained model.

    Test intervals are calibrated online (each test origin's interval uses the outcomes
    known by that day only) and scored beside the same intervals frozen at training and
    beside every classical anchor (``evaluation.anchors``); ``metrics.calibration`` is the
    calibration state after the last close, which forecasts carry on from.
    """
    from stock_lstm.evaluation.combination import CHOICE_LEVEL, FALLBACK_ANCHOR
    from stock_lstm.evaluation.intervals import (
        best_anchor,
        calibration_from_validation,
        interval_forecasts,
        price_history,
        probabilistic_scores,
    )
    from stock_lstm.evaluation.probabilistic import volatility_terciles
    from stock_lstm.models.online_calibration import CALIBRATION_LEVELS, CalibrationState

    validation = slice_forecasts(model, data, strategy, "val", horizon)
    start = calibration_from_validation(validation)
    val_h1 = horizon_metrics(_first_horizon(validation))[0]

    test = slice_forecasts(model, data, strategy, "test", horizon)
    closes = data.prices.to_numpy(dtype=np.float64)
    intervals = interval_forecasts(test, price_history(data), start)
    level = CALIBRATION_LEVELS.index(interval_level)
    lower, upper = (bound[..., level] for bound in intervals.bounds["model"])
    rows = horizon_metrics(test, lower, upper)
    probabilistic = probabilistic_scores(
        test, intervals.bounds, volatility_terciles(closes, test.origins)
    )
    state = CalibrationState(
        levels=CALIBRATION_LEVELS,
        theta=intervals.tracked.theta,
        through=str(data.prices.index[-1].date()),
        updates=intervals.tracked.updates,
    )
    metrics = TrainingMetrics(
        horizons=tuple(rows),
        validation=ValidationScores(
            n=val_h1.n,
            mae=val_h1.model["mae"],
            persistence_mae=val_h1.persistence["mae"],
            rmae_h1=val_h1.rmae,
        ),
        conformal=start.conformal,
        interval_level=interval_level,
        calibration=state.to_dict(),
        intervals_h1={
            name: IntervalScores(
                coverage=per_horizon[0][f"{interval_level:g}"]["coverage"],
                winkler=per_horizon[0][f"{interval_level:g}"]["winkler"],
                crps=per_horizon[0].get("crps"),
            )
            for name, per_horizon in probabilistic.items()
            if per_horizon
        },
        served_anchors=tuple(
            best_anchor(probabilistic, h, CHOICE_LEVEL) or FALLBACK_ANCHOR
            for h in range(1, horizon + 1)
        ),
    )
    return TestEvaluation(
        dates=data.prices.index[test.origins + 1],
        actual=test.actual[:, 0],
        predicted=test.forecast[:, 0],
        persistence=test.persistence[:, 0],
        metrics=metrics,
        test_forecasts=test,
        lower=lower,
        upper=upper,
        interval_level=interval_level,
        extra={"probabilistic": probabilistic, "bounds": intervals.bounds},
    )


def _first_horizon(forecasts: HoldoutForecasts) -> HoldoutForecasts:
    return HoldoutForecasts(
        origins=forecasts.origins,
        origin_dates=forecasts.origin_dates,
        last_close=forecasts.last_close,
        forecast=forecasts.forecast[:, :1],
        actual=forecasts.actual[:, :1],
        persistence=forecasts.persistence[:, :1],
        drift=forecasts.drift[:, :1],
    )
