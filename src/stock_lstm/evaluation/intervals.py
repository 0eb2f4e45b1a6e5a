"""Every interval forecaster of a set of origins, side by side, and their proper scores.

The model's intervals start from its validation slice (split conformal on normalized scores,
see ``models.online_calibration``) and are then corrected origin by origin as closes arrive
("model"); the same start without corrections ("model_static") is what an interval
calibrated once at training gives. The classical anchors (``evaluation.anchors``: GARCH-t,
GJR-GARCH-skew-t, HAR on the range, EWMA) are fitted on the rows before the first origin,
and every score is also read against the strongest of them (``best_anchor``). The
combinations (``evaluation.combination.COMBINATIONS``: the model's online interval averaged
in log space with GARCH-t's, or with the strongest anchor so far; quantile averaging,
"Vincentization", Lichtendahl, Grushka-Cockayne & Winkler 2013, no weight fitted) are
forecasters like the others: forecast combination is the field's standard answer to two
close competitors, and their rows say whether it pays here. Every forecaster's forecast is
an ``IntervalForecast`` (bounds and median), and one loop scores them all. Training reports
(the test slice) and walk-forward backtests both go through here, so they score the same
things the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stock_lstm.evaluation.anchors import ANCHORS, PriceHistory, anchor_labels, make_anchor
from stock_lstm.evaluation.combination import COMBINATIONS, add_combinations
from stock_lstm.evaluation.conformal import calibrate
from stock_lstm.evaluation.forecasters import IntervalForecast
from stock_lstm.evaluation.holdout import HoldoutForecasts, slice_forecasts
from stock_lstm.evaluation.probabilistic import INTERVAL_LEVELS, horizon_scores
from stock_lstm.evaluation.results import Probabilistic, ProbabilisticScores, scores_at
from stock_lstm.models.online_calibration import (
    CALIBRATION_LEVELS,
    QUANTILE_LEVELS,
    TrackResult,
    base_intervals,
    base_intervals_from_quantiles,
    calibrated,
    interval_quantiles,
    log_outcomes,
    starting_theta,
    to_prices,
    track,
    widening,
)

#: Interval forecasters scored everywhere, in the order tables show them.
FORECASTERS = ("model", "model_static", *COMBINATIONS, *ANCHORS)

#: Every interval forecaster's forecast on a set of origins, by name.
Intervals = dict[str, IntervalForecast]


@dataclass(frozen=True)
class StartingCalibration:
    """What a fit's validation slice says about its intervals: the static conformal band
    half-widths per level and horizon (used by point models) and the starting ``theta``."""

    conformal: dict[str, list[float | None]]
    theta: np.ndarray


def starting_calibration(model: Any, data: Any, strategy: str, horizon: int) -> StartingCalibration:
    """Score the fit's validation forecasts to start its calibration (no test data read)."""
    return calibration_from_validation(slice_forecasts(model, data, strategy, "val", horizon))


def calibration_from_validation(validation: HoldoutForecasts) -> StartingCalibration:
    """The starting calibration from validation forecasts already made."""
    conformal = calibrate(validation.actual, validation.forecast, CALIBRATION_LEVELS)
    lower, upper = base_intervals(
        validation.forecast,
        validation.quantiles,
        validation.quantile_levels,
        validation.last_close,
        conformal,
    )
    theta = starting_theta(lower, upper, log_outcomes(validation.actual, validation.last_close))
    return StartingCalibration(conformal, theta)


@dataclass
class IntervalForecasts:
    """Every forecaster's intervals on one slice, and the model's calibration after the last
    known outcome (``tracked.theta``)."""

    forecasts: Intervals
    tracked: TrackResult


def price_history(data: Any) -> PriceHistory:
    """What the anchors may read of a prepared fit's rows: closes, highs and lows."""
    closes = data.prices.to_numpy(dtype=np.float64)
    high_low = getattr(data, "high_low", None)
    if high_low is None:
        return PriceHistory(closes)
    return PriceHistory(closes, high_low["high"].to_numpy(), high_low["low"].to_numpy())


def interval_forecasts(
    forecasts: HoldoutForecasts,
    prices: PriceHistory | np.ndarray,
    start: StartingCalibration,
    *,
    anchors: bool = True,
    combine: bool = True,
) -> IntervalForecasts:
    """Intervals of the model (online and static) and, with ``anchors``, of every anchor
    fitted on the rows of ``prices`` before the first origin and (``combine``) of each
    combination a single slice can make; a backtest combines after joining its fits'
    slices. ``forecasts.actual`` may hold NaN for outcomes not yet known; those never update
    the calibration."""
    last_close = forecasts.last_close
    lower, upper = base_intervals(
        forecasts.forecast,
        forecasts.quantiles,
        forecasts.quantile_levels,
        last_close,
        start.conformal,
    )
    tracked = track(
        start.theta, lower, upper, log_outcomes(forecasts.actual, last_close), forecasts.origins
    )
    online = widening(*calibrated(lower, upper, tracked.theta_used))
    static = widening(*calibrated(lower, upper, start.theta[None]))
    intervals: Intervals = {
        "model": IntervalForecast(*to_prices(*online, last_close), forecasts.forecast),
        "model_static": IntervalForecast(*to_prices(*static, last_close), forecasts.forecast),
    }
    if anchors:
        history = PriceHistory.of(prices)
        first = int(forecasts.origins.min())
        for name in ANCHORS:
            anchor = make_anchor(name).fit(history, first)
            quantiles = anchor.predict(forecasts.origins, forecasts.horizon, QUANTILE_LEVELS)
            anchor_bounds = base_intervals_from_quantiles(
                quantiles.prices, QUANTILE_LEVELS, last_close
            )
            # An anchor forecasts the spread, not the level: its median is persistence.
            intervals[name] = IntervalForecast(
                *to_prices(*anchor_bounds, last_close), forecasts.persistence
            )
        if combine:
            add_combinations(intervals, forecasts.actual, last_close, forecasts.origins)
    return IntervalForecasts(intervals, tracked)


def probabilistic_scores(
    forecasts: HoldoutForecasts, intervals: Intervals, regimes: np.ndarray | None = None
) -> dict[str, tuple[ProbabilisticScores, ...]]:
    """Per forecaster, one row per horizon of ``probabilistic.horizon_scores``.

    Every forecaster's distribution is read off its own intervals and median, so the
    model's pinball loss and CRPS include its calibration, exactly as the anchors' do.
    """
    out: dict[str, tuple[ProbabilisticScores, ...]] = {}
    for name in FORECASTERS:
        if name in intervals:
            out[name] = _scores_by_horizon(forecasts, intervals[name], regimes)
    return out


def _scores_by_horizon(
    forecasts: HoldoutForecasts, forecast: IntervalForecast, regimes: np.ndarray | None
) -> tuple[ProbabilisticScores, ...]:
    quantiles, levels = interval_quantiles(forecast.lower, forecast.upper, forecast.centre)
    rows = []
    for h in range(forecasts.horizon):
        if np.isfinite(forecasts.actual[:, h]).sum() < 2:
            break
        intervals = {
            level: tuple(side[:, h] for side in forecast.at_level(CALIBRATION_LEVELS.index(level)))
            for level in INTERVAL_LEVELS
        }
        scores = horizon_scores(
            forecasts.actual[:, h],
            forecasts.last_close,
            quantiles[:, h, :],
            levels,
            intervals,
            regimes,
        )
        rows.append(ProbabilisticScores.model_validate({"horizon": h + 1, **scores}))
    return tuple(rows)


#: Readable names of the forecasters, for tables and legends.
FORECASTER_LABELS = {
    "model": "model (online calibration)",
    "model_static": "model, frozen at the fit",
    **{name: combination.label for name, combination in COMBINATIONS.items()},
    **anchor_labels(),
}


def best_anchor(probabilistic: Probabilistic, horizon: int = 1, level: float = 0.9) -> str | None:
    """The anchor with the lowest Winkler score at ``horizon``: claims are made against it,
    never against a weaker one. ``None`` when no anchor was scored there."""
    scored = {}
    for name in probabilistic:
        row = scores_at(probabilistic, name, horizon) if name in ANCHORS else None
        winkler = row.at(level).winkler if row else None
        if winkler is not None and np.isfinite(winkler):
            scored[name] = winkler
    return min(scored, key=scored.__getitem__) if scored else None


def interval_table(probabilistic: Probabilistic, horizon: int = 1, level: float = 0.9) -> Any:
    """One row per forecaster at ``horizon``: coverage, width, Winkler score, CRPS (in % of
    the close), the Winkler score against the strongest anchor's (negative: lower), Kupiec
    and Christoffersen p-values and the coverage by volatility tercile."""
    import pandas as pd

    strongest = best_anchor(probabilistic, horizon, level)
    reference_row = scores_at(probabilistic, strongest, horizon) if strongest else None
    reference = reference_row.at(level).winkler if reference_row else None
    rows = {}
    for name in probabilistic:
        row = scores_at(probabilistic, name, horizon)
        if row is None:
            continue
        scores = row.at(level)
        regimes = scores.coverage_by_regime or (None, None, None)
        rows[FORECASTER_LABELS.get(name, name)] = {
            "coverage": scores.coverage,
            "width %": scores.width,
            "Winkler %": scores.winkler,
            "CRPS %": row.crps,
            "vs best anchor %": (
                100.0 * (scores.winkler / reference - 1.0)
                if reference and scores.winkler is not None
                else None
            ),
            "Kupiec p": scores.kupiec_p,
            "Christoffersen p": scores.christoffersen_p,
            "calm": regimes[0],
            "normal": regimes[1],
            "turbulent": regimes[2],
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def coverage_table(probabilistic: Probabilistic, level: float = 0.9) -> Any:
    """Each interval forecaster's coverage at ``level`` by horizon (columns by readable
    name, as notebook 05 plots them)."""
    import pandas as pd

    table = pd.DataFrame(
        {
            FORECASTER_LABELS.get(name, name): [row.at(level).coverage for row in rows]
            for name, rows in probabilistic.items()
        }
    )
    table.index = pd.RangeIndex(1, len(table) + 1, name="horizon")
    return table
