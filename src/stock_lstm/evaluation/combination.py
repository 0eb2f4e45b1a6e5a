"""The model combined with the strongest anchor *so far*: the candidate the serving rule
(docs/evaluation.md, "A universal model") weighs against the model's own interval.

Which anchor is strongest is itself a forecast: choosing it by the scores of the origins it
is then scored on would flatter the combination. So each refit block, and each horizon,
takes the anchor with the lowest mean 90% Winkler score over the ticker's origins whose
outcome was known before the block's first origin; the first block, which has none, takes
``FALLBACK_ANCHOR``. The combination's bounds are the geometric mean of the two forecasters'
price bounds: the average in log-return space, with equal weights (nothing fitted), as
``intervals``' "model_garch".

This works on plain arrays so a backtest (all levels) and a kept ``backtest.csv`` (its one
level) are combined by the same code. A served forecast (``models.forecasting``) combines
the same way with the anchor strongest on the version's test slice, per horizon
(``TrainingMetrics.served_anchors``): those are its origins "so far".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stock_lstm.evaluation.anchors import ANCHORS
from stock_lstm.evaluation.forecasters import IntervalForecast
from stock_lstm.models.online_calibration import CALIBRATION_LEVELS, widening

#: The anchor of a block with no scored history: the strongest on the reference table
#: (``../shared/data/anchor-reference.csv``: HAR on the range, on the 20 shared tickers).
FALLBACK_ANCHOR = "har_range"
#: The level whose Winkler score chooses the anchor: the level every table leads with.
CHOICE_LEVEL = 0.9


def winkler_percent(
    actual: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    last_close: np.ndarray,
    level: float = CHOICE_LEVEL,
) -> np.ndarray:
    """Per-origin interval (Winkler) score in % of the last close, (n, H); NaN where the
    outcome is unknown. ``scoringrules`` scores it, as everywhere else."""
    import scoringrules as sr

    scale = 100.0 / np.asarray(last_close, dtype=np.float64)[:, None]
    y, low, high = (np.asarray(a, dtype=np.float64) * scale for a in (actual, lower, upper))
    known = np.isfinite(y)
    score = np.full(y.shape, np.nan)
    score[known] = sr.interval_score(y[known], low[known], high[known], 1.0 - level)
    return score


def choose_anchors(
    losses: Mapping[str, np.ndarray],
    target_rows: np.ndarray,
    block_first_rows: Sequence[int],
) -> list[list[str]]:
    """Per block and horizon, the anchor with the lowest mean loss over the origins whose
    target row is before the block's first origin row.

    ``losses``: anchor -> (n, H) per-origin scores; ``target_rows``: (n, H) row index of
    each target day; ``block_first_rows``: each block's first origin row, in order.
    """
    names = [name for name in ANCHORS if name in losses]
    if not names:
        raise ValueError("no anchor scores to choose from")
    horizon = target_rows.shape[1]
    choices = []
    for first in block_first_rows:
        known = target_rows < first
        row = []
        for h in range(horizon):
            mask = known[:, h]
            means = {
                name: float(np.nanmean(losses[name][mask, h]))
                for name in names
                if mask.any() and np.isfinite(losses[name][mask, h]).any()
            }
            row.append(min(means, key=means.__getitem__) if means else FALLBACK_ANCHOR)
        choices.append(row)
    return choices


def combine_with_chosen(
    model: tuple[np.ndarray, np.ndarray],
    anchors: Mapping[str, tuple[np.ndarray, np.ndarray]],
    choices: list[list[str]],
    block_sizes: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """The model's price bounds averaged in log space with each block's and horizon's chosen
    anchor. Bounds are (n, H) or (n, H, L) price arrays; blocks are consecutive origins."""
    lower, upper = (
        geometric_mean_with_chosen(
            model[side], {name: pair[side] for name, pair in anchors.items()}, choices, block_sizes
        )
        for side in (0, 1)
    )
    return lower, upper


def geometric_mean_with_chosen(
    values: np.ndarray,
    partners: Mapping[str, np.ndarray],
    choices: list[list[str]],
    block_sizes: Sequence[int],
) -> np.ndarray:
    """``values`` (n, H, ...) averaged in log space with each block's and horizon's chosen
    partner: one bound of an interval, or a median."""
    out = np.array(values, dtype=np.float64, copy=True)
    start = 0
    for size, per_horizon in zip(block_sizes, choices, strict=True):
        rows = slice(start, start + size)
        for h, name in enumerate(per_horizon):
            out[rows, h] = np.sqrt(out[rows, h] * partners[name][rows, h])
        start += size
    if start != out.shape[0]:
        raise ValueError(f"blocks cover {start} origins, the bounds {out.shape[0]}")
    return out


@dataclass(frozen=True)
class Combination:
    """An interval forecaster made of two others, with nothing fitted: ``member``'s intervals
    averaged in log space with an anchor's (each price bound, and the median, the geometric
    mean of the two), made a fan (``online_calibration.widening``) as every served interval is.

    ``anchor`` names a fixed partner; ``None`` takes, per block of origins and horizon, the
    anchor strongest on the outcomes known before the block (``choose_anchors``). That needs
    blocks with a "before": a walk-forward backtest has them, one test slice has not.
    A new combination is one more entry in ``COMBINATIONS``.
    """

    label: str
    anchor: str | None = None
    member: str = "model"

    @property
    def needs_earlier_blocks(self) -> bool:
        """Whether its anchor is chosen from earlier blocks' outcomes (backtests only)."""
        return self.anchor is None

    def choose(
        self,
        intervals: Mapping[str, IntervalForecast],
        actual: np.ndarray,
        last_close: np.ndarray,
        origins: np.ndarray,
        block_first_rows: Sequence[int],
    ) -> list[list[str]]:
        """The anchor of each block (by its first origin row) and horizon."""
        horizon = actual.shape[1]
        if self.anchor is not None:
            return [[self.anchor] * horizon for _ in block_first_rows]
        level = CALIBRATION_LEVELS.index(CHOICE_LEVEL)
        losses = {
            name: winkler_percent(actual, *forecast.at_level(level), last_close)
            for name, forecast in intervals.items()
            if name in ANCHORS
        }
        targets = origins[:, None] + np.arange(1, horizon + 1)
        return choose_anchors(losses, targets, block_first_rows)

    def combine(
        self,
        intervals: Mapping[str, IntervalForecast],
        choices: list[list[str]],
        block_sizes: Sequence[int],
    ) -> IntervalForecast:
        """The combined forecast of consecutive blocks of origins."""
        member = intervals[self.member]
        lower, upper, centre = (
            geometric_mean_with_chosen(
                getattr(member, side),
                {name: getattr(forecast, side) for name, forecast in intervals.items()},
                choices,
                block_sizes,
            )
            for side in ("lower", "upper", "centre")
        )
        return IntervalForecast(*widening(lower, upper), centre)


#: The combinations every training report and backtest scores, by name: weighed by the
#: serving rule (docs/evaluation.md) beside the forecasters they combine.
COMBINATIONS: dict[str, Combination] = {
    "model_garch": Combination("model + GARCH-t (average)", anchor="garch_t"),
    "model_anchor": Combination("model + strongest anchor so far"),
}


def add_combinations(
    intervals: dict[str, IntervalForecast],
    actual: np.ndarray,
    last_close: np.ndarray,
    origins: np.ndarray,
    blocks: Sequence[np.ndarray] | None = None,
) -> dict[str, list[list[str]]]:
    """Add every combination's forecast to ``intervals`` (in place). ``blocks``: the
    consecutive origin blocks of a walk-forward backtest, one per fit; without them (one
    test slice) the combinations that choose from earlier blocks are left out. Returns each
    added combination's choices, per block then horizon, for the summary."""
    block_list = [np.asarray(block) for block in blocks] if blocks is not None else [origins]
    firsts = [int(block[0]) for block in block_list]
    sizes = [len(block) for block in block_list]
    chosen = {}
    for name, combination in COMBINATIONS.items():
        if blocks is None and combination.needs_earlier_blocks:
            continue
        choices = combination.choose(intervals, actual, last_close, origins, firsts)
        intervals[name] = combination.combine(intervals, choices, sizes)
        chosen[name] = choices
    return chosen


def anchor_log_bounds(name: str, prices: Any, days: int) -> tuple[np.ndarray, np.ndarray]:
    """What a served forecast combines with: anchor ``name``'s intervals for the ``days``
    trading days after the last row of ``prices``, as (1, days, L) log offsets from the last
    close at ``CALIBRATION_LEVELS``. Fitted on the rows before that last row and read at it,
    exactly as a backtest origin is (``intervals.interval_forecasts``)."""
    from stock_lstm.evaluation.anchors import PriceHistory, make_anchor
    from stock_lstm.models.online_calibration import (
        QUANTILE_LEVELS,
        base_intervals_from_quantiles,
    )

    history = PriceHistory.of(prices)
    origin = len(history.close) - 1
    quantiles = (
        make_anchor(name).fit(history, origin).predict(np.array([origin]), days, QUANTILE_LEVELS)
    )
    return base_intervals_from_quantiles(quantiles.prices, QUANTILE_LEVELS, history.close[[origin]])
