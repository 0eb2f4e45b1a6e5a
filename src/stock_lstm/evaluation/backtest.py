"""Walk-forward (rolling-origin) backtests: the honest way to score a daily forecaster.

For each origin (a trading day whose close is the last one observed) the model forecasts
the next ``horizon`` closes. Models are fitted on an expanding window that ends the day
*before* the first origin they serve (refitted every ``refit_every`` origins), with the
encoder/scaler fitted on that window's training rows only, so no fit ever sees data at or
after an origin it is scored on. Every point baseline (persistence, drift: ``BASELINE_CLASSES``)
is scored on exactly the same origins and target days.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from stock_lstm.errors import InvalidParameterError, NotEnoughDataError
from stock_lstm.evaluation.baselines import BASELINE_CLASSES, baseline_paths
from stock_lstm.evaluation.combination import add_combinations
from stock_lstm.evaluation.forecasters import IntervalForecast
from stock_lstm.evaluation.holdout import HoldoutForecasts, horizon_metrics
from stock_lstm.evaluation.intervals import (
    FORECASTERS,
    Intervals,
    best_anchor,
    interval_forecasts,
    probabilistic_scores,
    starting_calibration,
)
from stock_lstm.evaluation.probabilistic import volatility_terciles
from stock_lstm.evaluation.results import BacktestSummary, FitWindow
from stock_lstm.models.online_calibration import CALIBRATION_LEVELS

BACKTEST_COLUMNS = (
    "origin_date",
    "horizon",
    "target_date",
    "actual",
    "model",
    *BASELINE_CLASSES,
    *(
        f"{'' if name == 'model' else name + '_'}{side}"
        for name in FORECASTERS
        for side in ("lower", "upper")
    ),
)
"""Columns of ``backtest.csv``; a quantile model adds one column per quantile (``q0.05``)."""
#: Share of each fitting window held out for early stopping and conformal calibration.
VALIDATION_FRACTION = 0.15
#: Epochs without a better validation loss before a warm-started refit stops: it starts
#: next to the previous optimum, so it needs fewer than a cold fit's ``patience``.
WARM_START_PATIENCE = 3


@dataclass(frozen=True)
class BacktestConfig:
    """What to backtest: ``origins`` origins ``step`` trading days apart, the last one
    ``horizon`` days before the end of the data; refit every ``refit_every`` origins
    (``None``: one fit for all)."""

    horizon: int = 5
    origins: int = 100
    step: int = 1
    refit_every: int | None = None
    interval_level: float = 0.9
    #: Refits start from the previous fit's weights (the first fit is always cold).
    warm_start: bool = True

    def validate(self) -> BacktestConfig:
        checks = {
            "horizon": (self.horizon, 1, 30),
            "origins": (self.origins, 1, 100_000),
            "step": (self.step, 1, 10_000),
        }
        if self.refit_every is not None:
            checks["refit_every"] = (self.refit_every, 1, 100_000)
        for name, (value, low, high) in checks.items():
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidParameterError(
                    f"{name} must be a whole number between {low} and {high}, got {value!r}"
                )
        if self.interval_level not in (0.8, 0.9, 0.95):
            raise InvalidParameterError(
                f"interval_level must be 0.8, 0.9 or 0.95, got {self.interval_level!r}"
            )
        return self


@dataclass
class FittedWindow:
    """A model fitted on one window, with the prepared data that fitted it."""

    model: Any
    data: Any  # PreparedData
    epochs_run: int = 0
    best_epoch: int = 0
    warm_start: bool = False


FitFunction = Callable[[pd.DataFrame, Any], FittedWindow]


def fit_window(
    prices: pd.DataFrame,
    params: Any,
    *,
    threads: int | None = None,
    previous: FittedWindow | None = None,
) -> FittedWindow:
    """Prepare and train on one window (85% train, 15% validation, no test slice).

    With ``previous`` (the fit of an earlier window, a prefix of this one) training starts
    from its weights and stops after ``WARM_START_PATIENCE`` epochs without improvement; the
    encoder is fitted on this window's training rows as always, and nothing of ``previous``
    saw a row after its own window, so nothing here sees a row after this window.
    """
    from stock_lstm.data.preprocessing import SplitFractions, prepare_data
    from stock_lstm.models.training import train_model

    fractions = SplitFractions(
        1.0 - VALIDATION_FRACTION, VALIDATION_FRACTION, allow_empty_test=True
    )
    data = prepare_data(prices, fractions=fractions, **params.data_options)
    warm = previous is not None and previous.data.X_train.shape[2] == data.X_train.shape[2]
    result = train_model(
        data,
        params,
        threads=threads,
        initial_state=previous.model.state_dict() if warm and previous else None,
        patience=WARM_START_PATIENCE if warm else None,
    )
    return FittedWindow(result.model, data, result.epochs_run, result.best_epoch, warm)


@dataclass
class BacktestResult:
    """Every forecast (``frame``, one row per origin and horizon) and its summary."""

    frame: pd.DataFrame
    summary: BacktestSummary


def origin_rows(n_rows: int, config: BacktestConfig) -> np.ndarray:
    """Row indices of the origins: the last one leaves ``horizon`` days of actuals."""
    last = n_rows - 1 - config.horizon
    first = last - (config.origins - 1) * config.step
    if first < 1:
        raise NotEnoughDataError(
            f"{config.origins} origins {config.step} day(s) apart with horizon "
            f"{config.horizon} need more than {n_rows} rows: use fewer --origins"
        )
    return np.arange(first, last + 1, config.step, dtype=np.int64)


def walk_forward(
    prices: pd.DataFrame,
    params: Any,
    config: BacktestConfig,
    *,
    fit: FitFunction | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Run the backtest described in the module docstring on a normalized price frame."""
    config = config.validate()
    params = params.validate()
    if params.strategy == "direct" and params.horizon < config.horizon:
        params = params.replace(horizon=config.horizon)
    previous: list[FittedWindow] = []  # the last fit, for a warm start

    def default_fit(window: pd.DataFrame, p: Any) -> FittedWindow:
        last = previous[-1] if previous and config.warm_start else None
        return fit_window(window, p, threads=threads, previous=last)

    fit = fit or default_fit
    closes = prices["close"].to_numpy(dtype=np.float64)
    dates = prices.index
    origins = origin_rows(len(prices), config)
    group_size = config.refit_every or len(origins)
    groups = [origins[i : i + group_size] for i in range(0, len(origins), group_size)]

    parts: list[HoldoutForecasts] = []
    interval_parts: list[Intervals] = []
    fits: list[FitWindow] = []
    for index, group in enumerate(groups):
        first_origin = int(group[0])
        window = prices.iloc[:first_origin]  # strictly before the first origin it serves
        fitted = fit(window, params)
        previous[:] = [fitted]
        data = fitted.data
        part, group_intervals = _forecast_group(
            fitted.model, data, params.strategy, prices, group, config.horizon
        )
        parts.append(part)
        interval_parts.append(group_intervals)
        fits.append(
            FitWindow(
                fit=index + 1,
                train_first_date=str(dates[0].date()),
                train_last_date=str(dates[first_origin - 1].date()),
                first_origin_date=str(dates[first_origin].date()),
                origins=len(group),
                epochs_run=fitted.epochs_run,
                best_epoch=fitted.best_epoch,
                warm_start=fitted.warm_start,
            )
        )
        if progress:
            progress(index + 1, len(groups))

    combined = _concatenate(parts)
    intervals = _concatenate_intervals(interval_parts)
    # Each block's combination with the anchor strongest before it (evaluation.combination).
    choices = add_combinations(
        intervals, combined.actual, combined.last_close, combined.origins, groups
    )
    level_index = CALIBRATION_LEVELS.index(config.interval_level)
    lower, upper = intervals["model"].at_level(level_index)
    frame = _long_frame(combined, intervals, level_index, dates)
    regimes = volatility_terciles(closes, combined.origins)
    summary = BacktestSummary(
        params=params.to_dict(),
        config=asdict(config),
        n_origins=len(origins),
        first_origin=str(dates[origins[0]].date()),
        last_origin=str(dates[origins[-1]].date()),
        fits=len(fits),
        epochs_per_fit=tuple(fit_row.epochs_run for fit_row in fits),
        horizons=tuple(horizon_metrics(combined, lower, upper)),
        probabilistic=probabilistic_scores(combined, intervals, regimes),
        anchor_choices=tuple(tuple(block) for block in choices.get("model_anchor", ())),
        fit_windows=tuple(fits),
    )
    return BacktestResult(frame, summary)


def _forecast_group(
    model: Any,
    data: Any,
    strategy: str,
    prices: pd.DataFrame,
    group: np.ndarray,
    horizon: int,
) -> tuple[HoldoutForecasts, Intervals]:
    """One fit's forecasts at its origins, and every forecaster's price intervals (n, H, L)
    (see ``evaluation.intervals``); the anchors are fitted on the same window as the model."""
    from stock_lstm.data.preprocessing import input_windows
    from stock_lstm.evaluation.forecasters import PriceHistory
    from stock_lstm.models.forecasting import predict_distribution

    closes = prices["close"].to_numpy(dtype=np.float64)
    first_origin = int(group[0])
    start = starting_calibration(model, data, strategy, horizon)
    values = prices[list(data.feature_columns)].to_numpy(dtype=np.float64)
    inputs = data.encoder.encode_inputs(values[: int(group[-1]) + 1])
    windows = input_windows(inputs, group, data.sequence_length)
    forecast, quantiles = predict_distribution(
        model, data.encoder, strategy, windows, closes[group], horizon
    )
    rows = group[:, None] + np.arange(1, horizon + 1)
    history = PriceHistory.of(prices)
    part = HoldoutForecasts(
        origins=group,
        origin_dates=prices.index[group],
        last_close=closes[group],
        forecast=forecast,
        actual=closes[rows],
        baselines=baseline_paths(history, first_origin, group, horizon),
        quantiles=quantiles,
        quantile_levels=tuple(getattr(model, "quantiles", ())),
    )
    return part, interval_forecasts(part, history, start, combine=False).forecasts


def _concatenate(parts: list[HoldoutForecasts]) -> HoldoutForecasts:
    has_quantiles = all(part.quantiles is not None for part in parts)
    return HoldoutForecasts(
        origins=np.concatenate([p.origins for p in parts]),
        origin_dates=pd.DatetimeIndex(np.concatenate([p.origin_dates for p in parts])),
        last_close=np.concatenate([p.last_close for p in parts]),
        forecast=np.concatenate([p.forecast for p in parts]),
        actual=np.concatenate([p.actual for p in parts]),
        baselines={
            name: np.concatenate([p.baselines[name] for p in parts]) for name in parts[0].baselines
        },
        quantiles=np.concatenate([p.quantiles for p in parts]) if has_quantiles else None,
        quantile_levels=parts[0].quantile_levels if has_quantiles else (),
    )


def _concatenate_intervals(parts: list[Intervals]) -> Intervals:
    """Each forecaster's forecasts of consecutive fits, as one."""
    return {
        name: IntervalForecast(
            *(
                np.concatenate([getattr(part[name], side) for part in parts])
                for side in ("lower", "upper", "centre")
            )
        )
        for name in parts[0]
    }


def _long_frame(
    forecasts: HoldoutForecasts,
    intervals: Intervals,
    level_index: int,
    dates: pd.DatetimeIndex,
) -> pd.DataFrame:
    """One row per origin and horizon: actual, point forecasts, the configured level's
    interval of every forecaster, and the model's quantiles (``q0.05`` ...) if it has them."""
    n, horizon = forecasts.forecast.shape
    steps = np.arange(1, horizon + 1)
    target_rows = forecasts.origins[:, None] + steps
    columns: dict[str, Any] = {
        "origin_date": np.repeat(forecasts.origin_dates.date, horizon),
        "horizon": np.tile(steps, n),
        "target_date": dates[target_rows.ravel()].date,
        "actual": forecasts.actual.ravel(),
        "model": forecasts.forecast.ravel(),
        **{name: paths.ravel() for name, paths in forecasts.baselines.items()},
    }
    for name in FORECASTERS:
        lower, upper = intervals[name].at_level(level_index)
        prefix = "" if name == "model" else f"{name}_"
        columns[f"{prefix}lower"] = lower.ravel()
        columns[f"{prefix}upper"] = upper.ravel()
    if forecasts.quantiles is not None:
        for k, level in enumerate(forecasts.quantile_levels):
            columns[f"q{level:g}"] = forecasts.quantiles[..., k].ravel()
    return pd.DataFrame(columns)


def headline(summary: BacktestSummary, horizons: tuple[int, ...] = (1, 5)) -> dict[str, Any]:
    """The few numbers a table row shows: rMAE at h=1 and h=5, DM p, direction, coverage,
    each interval forecaster's 90% coverage, Winkler score and CRPS, and which anchor was
    strongest (lowest Winkler) at each of ``horizons``."""
    first = summary.at_horizon(1)
    out: dict[str, Any] = {
        "dm_p_h1": first.dm_p_value if first else None,
        "directional_accuracy_h1": first.directional_accuracy if first else None,
        "coverage_h1": first.coverage if first else None,
        "predicted_move_std_h1": first.predicted_move_std if first else None,
        "actual_move_std_h1": first.actual_move_std if first else None,
    }
    for h in horizons:
        row = summary.at_horizon(h)
        out[f"rmae_h{h}"] = row.rmae if row else math.nan
        for name in BASELINE_CLASSES:
            if name != "persistence":
                out[f"rmae_{name}_h{h}"] = row.baseline_rmae.get(name) if row else math.nan
    coverages = [row.coverage for row in summary.horizons if row.coverage is not None]
    out["coverage_mean"] = float(np.mean(coverages)) if coverages else None
    probabilistic = summary.probabilistic
    for name, per_horizon in probabilistic.items():
        for h in horizons:
            if h > len(per_horizon):
                continue
            row_h = per_horizon[h - 1]
            out[f"{name}_coverage90_h{h}"] = row_h.at(0.9).coverage
            out[f"{name}_winkler90_h{h}"] = row_h.at(0.9).winkler
            out[f"{name}_crps_h{h}"] = row_h.crps
        if per_horizon:
            out[f"{name}_kupiec90_h1"] = per_horizon[0].at(0.9).kupiec_p
            out[f"{name}_christoffersen90_h1"] = per_horizon[0].at(0.9).christoffersen_p
    for h in horizons:
        strongest = best_anchor(probabilistic, h)
        out[f"best_anchor_h{h}"] = strongest
        out[f"best_anchor_winkler90_h{h}"] = out.get(f"{strongest}_winkler90_h{h}", math.nan)
    return out
