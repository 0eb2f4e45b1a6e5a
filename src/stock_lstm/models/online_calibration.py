"""Online interval calibration: intervals that widen after misses and narrow after hits.

Why: an interval calibrated once, on a validation slice, is only as good as that slice was
typical. After a calm calibration year a 90% interval held 53% of one ticker's closes. Here
each level and horizon carries a correction ``theta`` that moves after every revealed close,
the *quantile tracker* of Angelopoulos, Candes & Tibshirani (2023, "Conformal PID control",
its P term; adaptive conformal inference, Gibbs & Candes 2021, moves the level instead):

    theta <- theta + (step / h) * (miss - (1 - level))        (h: the forecast's horizon in days)

A miss pushes the interval out by ``step / h * level`` of its base width, a hit pulls it in by
``step / h * (1 - level)``, so over any long stretch the miss rate is driven to ``1 - level``,
whatever the regime. The ``1 / h``: consecutive h-day outcomes overlap, so one volatile week
arrives at h=5 as five correlated misses; with the full step they widened the 5-day interval
five times over (its frozen, uncorrected interval scored better over 500 origins).

Scores are normalized by the base interval's own width (the model's predicted spread, or the
static conformal band of a point model), as in conformalized quantile regression, so
``theta`` is unitless and one ``step`` suits every ticker:

    score = max(lower - y, y - upper) / (upper - lower)    (y, bounds: log(price / last close))
    calibrated = [lower - theta * width, upper + theta * width]

``theta`` is kept above ``MIN_THETA`` (> -0.5) so an interval is never empty, and every
bound is a finite multiple of a finite base width. Feedback is delayed by the horizon: the
h-day forecast made at origin row ``o`` is scored when row ``o + h`` is known, and only
then updates ``theta``; a forecast at row ``t`` uses exactly the outcomes of rows ``<= t``.
Written here rather than imported because the maintained conformal libraries (MAPIE,
Darts' conformal models) calibrate their own model objects, not an interval handed to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from stock_lstm.models.records import CalibrationRecord

#: Quantile levels of a distributional head: the median and the bounds of the 50/80/90/95%
#: central intervals (kept here, free of torch, so scoring code can read them cheaply).
QUANTILE_LEVELS: tuple[float, ...] = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)
#: Central interval levels the calibrator tracks (the fan chart's bands and the 95% one).
CALIBRATION_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
#: The tracker's step, in units of the base interval's width. A 90% interval whose closes
#: start missing half the time widens by about 0.4 * STEP of its width a day (doubles in
#: about 50 trading days); chosen from that reasoning, not tuned on any ticker.
DEFAULT_STEP = 0.05
#: Lower bound of theta: an interval keeps at least 10% of its base width.
MIN_THETA = -0.45
#: Fewest validation scores for a split-conformal starting theta; fewer start at 0.
MIN_START_SCORES = 20


def base_intervals_from_quantiles(
    quantile_prices: np.ndarray,
    quantile_levels: tuple[float, ...],
    last_close: np.ndarray,
    levels: tuple[float, ...] = CALIBRATION_LEVELS,
) -> tuple[np.ndarray, np.ndarray]:
    """Central intervals of a quantile head in log(price / last close): two (n, H, L) arrays.

    The ``level`` interval is bounded by the quantiles ``(1 - level) / 2`` and
    ``(1 + level) / 2``, which must be among ``quantile_levels``.
    """
    rounded = [round(q, 6) for q in quantile_levels]
    anchor = np.log(np.asarray(last_close, dtype=np.float64))[:, None]
    lowers, uppers = [], []
    for level in levels:
        low = rounded.index(round((1 - level) / 2, 6))
        high = rounded.index(round((1 + level) / 2, 6))
        lowers.append(np.log(quantile_prices[..., low]) - anchor)
        uppers.append(np.log(quantile_prices[..., high]) - anchor)
    return np.stack(lowers, axis=-1), np.stack(uppers, axis=-1)


def base_intervals_from_conformal(
    point: np.ndarray,
    last_close: np.ndarray,
    conformal: dict[str, list[float | None]],
    levels: tuple[float, ...] = CALIBRATION_LEVELS,
) -> tuple[np.ndarray, np.ndarray]:
    """A point model's static split-conformal bands ``point * exp(+-q)`` in log(price / last
    close), (n, H, L) each; NaN where training recorded no quantile for a level or horizon."""
    centre = np.log(np.asarray(point, dtype=np.float64) / np.asarray(last_close)[:, None])
    horizon = centre.shape[1]
    half = np.full((horizon, len(levels)), math.nan)
    for k, level in enumerate(levels):
        values = conformal.get(f"{level:g}") or []
        for h, value in enumerate(values[:horizon]):
            if value is not None:
                half[h, k] = value
    return centre[..., None] - half[None], centre[..., None] + half[None]


def normalized_scores(lower: np.ndarray, upper: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """``max(lower - y, y - upper) / (upper - lower)``: <= 0 inside the interval, the distance
    outside it in base widths. ``actual`` broadcasts against the bounds' last (level) axis."""
    y = np.asarray(actual, dtype=np.float64)[..., None]
    width = np.maximum(upper - lower, 1e-12)
    with np.errstate(invalid="ignore"):
        return np.maximum(lower - y, y - upper) / width


def starting_theta(
    lower: np.ndarray,
    upper: np.ndarray,
    actual: np.ndarray,
    levels: tuple[float, ...] = CALIBRATION_LEVELS,
) -> np.ndarray:
    """(H, L) split-conformal corrections from validation forecasts: the ``ceil((n + 1) L)``-th
    smallest normalized score of each horizon and level (0 with too few scores)."""
    scores = normalized_scores(lower, upper, actual)
    horizon = scores.shape[1]
    theta = np.zeros((horizon, len(levels)))
    for h in range(horizon):
        for k, level in enumerate(levels):
            values = np.sort(scores[:, h, k][np.isfinite(scores[:, h, k])])
            rank = math.ceil((values.size + 1) * level)
            if values.size >= MIN_START_SCORES and rank <= values.size:
                theta[h, k] = values[rank - 1]
    return np.maximum(theta, MIN_THETA)


def calibrated(
    lower: np.ndarray, upper: np.ndarray, theta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds widened (theta > 0) or narrowed (theta < 0) by ``theta`` base widths a side."""
    width = upper - lower
    return lower - theta * width, upper + theta * width


def widening(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds (log offsets from the last close, (n, H, L)) made into a fan: each lower bound
    the lowest and each upper bound the highest so far along the horizon.

    Why: an h-day cumulative return is the (h-1)-day one plus one more day, so its quantiles
    spread out with h; per-horizon heads and per-horizon calibration corrections do not know
    that and can give day 12 a narrower interval than day 11. Bounds only ever move outward
    (nothing at h = 1 changes), so every level's width, in log and in price terms, is
    non-decreasing in h, and the calibrator's coverage can only rise. This is the simplest
    projection onto fans (a running extreme, as isotonic rearrangement of quantile curves);
    constraining each head instead would leave the calibration step able to break it.
    """
    return np.minimum.accumulate(lower, axis=1), np.maximum.accumulate(upper, axis=1)


@dataclass
class TrackResult:
    """``theta_used``: (n, H, L), the correction each origin's forecast was made with;
    ``theta``: (H, L) after every outcome known by the end of the data; ``updates``: count."""

    theta_used: np.ndarray
    theta: np.ndarray
    updates: int


def track(
    theta: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    actual: np.ndarray,
    origin_rows: np.ndarray,
    *,
    levels: tuple[float, ...] = CALIBRATION_LEVELS,
    step: float = DEFAULT_STEP,
    revealed_after: int | None = None,
) -> TrackResult:
    """Walk forward through origins (ascending rows), updating ``theta`` as outcomes arrive.

    ``lower``/``upper``: (n, H, L) base bounds, ``actual``: (n, H) log(close / last close), NaN
    where not yet known. The h-day outcome of origin row ``o`` is revealed at row ``o + h`` and
    applied before any origin at or after that row is forecast (never before). Outcomes
    revealed at rows ``<= revealed_after`` are skipped: a saved state already holds them.
    """
    rows = np.asarray(origin_rows, dtype=np.int64)
    n, horizon, _ = lower.shape
    alpha = 1.0 - np.asarray(levels, dtype=np.float64)
    scores = normalized_scores(lower, upper, actual)
    reveal = rows[:, None] + np.arange(1, horizon + 1)[None, :]
    known = np.isfinite(scores).any(axis=-1)
    if revealed_after is not None:
        known &= reveal > revealed_after
    events_j, events_h = np.nonzero(known)
    order = np.lexsort((events_h, events_j, reveal[events_j, events_h]))
    events_j, events_h = events_j[order], events_h[order]
    event_rows = reveal[events_j, events_h]
    theta = np.array(theta, dtype=np.float64, copy=True)
    used = np.empty((n, horizon, len(levels)))
    cursor = 0
    for i in range(n):
        while cursor < event_rows.size and event_rows[cursor] <= rows[i]:
            _update(theta, scores, events_j[cursor], events_h[cursor], alpha, step)
            cursor += 1
        used[i] = theta
    while cursor < event_rows.size:
        _update(theta, scores, events_j[cursor], events_h[cursor], alpha, step)
        cursor += 1
    return TrackResult(used, theta, int(event_rows.size))


def _update(
    theta: np.ndarray, scores: np.ndarray, j: int, h: int, alpha: np.ndarray, step: float
) -> None:
    score = scores[j, h]
    miss = (score > theta[h]).astype(np.float64)
    # An (h+1)-day outcome overlaps the h outcomes revealed just before it: one volatile week
    # arrives as h+1 correlated misses. Dividing the step by h+1 makes those move theta as
    # far as one independent miss does at h=1 (the 1-day step is unchanged).
    moved = np.maximum(theta[h] + step / (h + 1) * (miss - alpha), MIN_THETA)
    theta[h] = np.where(np.isfinite(score), moved, theta[h])


@dataclass
class CalibrationState:
    """What a model version carries between forecasts: ``theta`` (H, L) after every outcome
    up to ``through`` (ISO date of the last close used), and how many updates made it."""

    levels: tuple[float, ...]
    theta: np.ndarray
    through: str
    updates: int = 0
    step: float = DEFAULT_STEP

    def to_dict(self) -> dict[str, Any]:
        return {
            "levels": list(self.levels),
            "theta": np.round(self.theta, 8).tolist(),
            "through": self.through,
            "updates": int(self.updates),
            "step": float(self.step),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CalibrationState:
        theta = np.asarray(values["theta"], dtype=np.float64)
        levels = tuple(float(level) for level in values["levels"])
        if theta.ndim != 2 or theta.shape[1] != len(levels) or not np.isfinite(theta).all():
            raise ValueError(f"calibration state has a malformed theta of shape {theta.shape}")
        return cls(
            levels=levels,
            theta=np.maximum(theta, MIN_THETA),
            through=str(values["through"]),
            updates=int(values.get("updates", 0)),
            step=float(values.get("step", DEFAULT_STEP)),
        )

    @classmethod
    def from_record(cls, record: CalibrationRecord) -> CalibrationState:
        """The state a version's metrics recorded."""
        return cls.from_dict(record.model_dump(exclude_none=True))

    def to_record(self) -> CalibrationRecord:
        from stock_lstm.models.records import CalibrationRecord

        return CalibrationRecord.model_validate(self.to_dict())

    def level_index(self, level: float) -> int | None:
        rounded = [round(value, 6) for value in self.levels]
        return rounded.index(round(level, 6)) if round(level, 6) in rounded else None


def base_intervals(
    point: np.ndarray,
    quantiles: np.ndarray | None,
    quantile_levels: tuple[float, ...],
    last_close: np.ndarray,
    conformal: dict[str, list[float | None]] | None,
    levels: tuple[float, ...] = CALIBRATION_LEVELS,
) -> tuple[np.ndarray, np.ndarray]:
    """The uncalibrated intervals a forecaster offers: a quantile head's own, else the static
    conformal band around the point forecast (all NaN without either)."""
    if quantiles is not None:
        return base_intervals_from_quantiles(quantiles, quantile_levels, last_close, levels)
    return base_intervals_from_conformal(point, last_close, conformal or {}, levels)


def log_outcomes(actual: np.ndarray, last_close: np.ndarray) -> np.ndarray:
    """Realized ``log(close[o + h] / close[o])`` (n, H); NaN stays NaN (not yet known)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(np.asarray(actual, dtype=np.float64) / np.asarray(last_close)[:, None])


def to_prices(
    lower: np.ndarray, upper: np.ndarray, last_close: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Log offsets (n, H, L) -> price bounds ``last_close * exp(offset)``."""
    anchor = np.asarray(last_close, dtype=np.float64)[:, None, None]
    return anchor * np.exp(lower), anchor * np.exp(upper)


def interval_quantiles(
    lower: np.ndarray,
    upper: np.ndarray,
    median: np.ndarray,
    levels: tuple[float, ...] = CALIBRATION_LEVELS,
) -> tuple[np.ndarray, tuple[float, ...]]:
    """The quantiles that central intervals (n, H, L) and a median (n, H) describe, sorted
    along the last axis (rearrangement: independently calibrated levels may not nest), and
    their levels: ``(1 - L) / 2`` ascending, 0.5, then ``(1 + L) / 2``."""
    order = np.argsort(levels)[::-1]
    stacked = np.concatenate(
        [lower[..., order], np.asarray(median)[..., None], upper[..., order[::-1]]], axis=-1
    )
    quantile_levels = tuple(
        [round((1 - levels[k]) / 2, 6) for k in order]
        + [0.5]
        + [round((1 + levels[k]) / 2, 6) for k in order[::-1]]
    )
    return np.sort(stacked, axis=-1), quantile_levels
