"""The whole evaluation of a trained model: validation (the gate, the interval calibration)
and test (what reports show), points and intervals beside every classical anchor.

Why apart from ``holdout``: the intervals (``evaluation.intervals``) are built on the
holdout forecasts, and this evaluation needs both; here it imports them at the top instead
of dodging an import cycle inside a function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stock_lstm.data.preprocessing import PreparedData
from stock_lstm.evaluation.combination import CHOICE_LEVEL, FALLBACK_ANCHOR
from stock_lstm.evaluation.holdout import (
    DEFAULT_INTERVAL_LEVEL,
    HoldoutForecasts,
    horizon_metrics,
    slice_forecasts,
)
from stock_lstm.evaluation.intervals import (
    Intervals,
    best_anchor,
    calibration_from_validation,
    interval_forecasts,
    price_history,
    probabilistic_scores,
)
from stock_lstm.evaluation.probabilistic import volatility_terciles
from stock_lstm.evaluation.results import ProbabilisticScores, intervals_at
from stock_lstm.models.online_calibration import CALIBRATION_LEVELS, CalibrationState
from stock_lstm.models.records import TrainingMetrics, ValidationScores


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
    #: Every interval forecaster's scores on the test slice, by horizon.
    probabilistic: dict[str, tuple[ProbabilisticScores, ...]] = field(default_factory=dict)
    #: Every interval forecaster's forecasts on the test slice.
    intervals: Intervals = field(default_factory=dict)


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
    validation = slice_forecasts(model, data, strategy, "val", horizon)
    start = calibration_from_validation(validation)
    val_h1 = horizon_metrics(_first_horizon(validation))[0]

    test = slice_forecasts(model, data, strategy, "test", horizon)
    closes = data.prices.to_numpy(dtype=np.float64)
    intervals = interval_forecasts(test, price_history(data), start)
    lower, upper = intervals.forecasts["model"].at_level(CALIBRATION_LEVELS.index(interval_level))
    rows = horizon_metrics(test, lower, upper)
    probabilistic = probabilistic_scores(
        test, intervals.forecasts, volatility_terciles(closes, test.origins)
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
        calibration=state.to_record(),
        intervals_h1=intervals_at(probabilistic, interval_level),
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
        probabilistic=probabilistic,
        intervals=intervals.forecasts,
    )


def _first_horizon(forecasts: HoldoutForecasts) -> HoldoutForecasts:
    return HoldoutForecasts(
        origins=forecasts.origins,
        origin_dates=forecasts.origin_dates,
        last_close=forecasts.last_close,
        forecast=forecasts.forecast[:, :1],
        actual=forecasts.actual[:, :1],
        baselines={name: paths[:, :1] for name, paths in forecasts.baselines.items()},
    )
