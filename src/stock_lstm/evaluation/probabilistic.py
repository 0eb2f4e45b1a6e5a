"""Proper scores for probabilistic forecasts: intervals, quantiles, CRPS and coverage tests.

Scores are in percent of the origin's last close, so tickers of any price level average
together. Interval (Winkler) score, pinball loss and the quantile approximation of CRPS come
from ``scoringrules``; the two coverage tests are written here (a few lines of likelihood
ratios: no maintained package offers them without pulling in a whole risk library):

* **Kupiec (1995)** unconditional coverage: is the miss rate ``1 - level``?
* **Christoffersen (1998)** independence: does a miss make the next miss more likely (misses
  that cluster, as after a volatility jump)? Both are chi-square(1) likelihood-ratio tests;
  consecutive h-day forecasts overlap for h > 1, so their p-values are read as h = 1 only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

INTERVAL_LEVELS: tuple[float, ...] = (0.8, 0.9, 0.95)


def _percent(values: np.ndarray, last_close: np.ndarray) -> np.ndarray:
    return 100.0 * np.asarray(values, dtype=np.float64) / np.asarray(last_close)[..., None]


def interval_scores(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float, last_close: np.ndarray
) -> dict[str, float]:
    """Coverage, mean width and mean Winkler (interval) score of one level's intervals, the
    last two in percent of the last close. Inputs are (n,) for one horizon."""
    import scoringrules as sr

    y = 100.0 * np.asarray(actual, dtype=np.float64) / last_close
    low = 100.0 * np.asarray(lower, dtype=np.float64) / last_close
    high = 100.0 * np.asarray(upper, dtype=np.float64) / last_close
    valid = np.isfinite(y) & np.isfinite(low) & np.isfinite(high)
    if not valid.any():
        return {"coverage": math.nan, "width": math.nan, "winkler": math.nan}
    y, low, high = y[valid], low[valid], high[valid]
    winkler = sr.interval_score(y, low, high, 1.0 - level, backend="numpy")
    return {
        "coverage": float(np.mean((y >= low) & (y <= high))),
        "width": float(np.mean(high - low)),
        "winkler": float(np.mean(winkler)),
    }


def quantile_scores(
    actual: np.ndarray, quantiles: np.ndarray, levels: tuple[float, ...], last_close: np.ndarray
) -> dict[str, float]:
    """Mean pinball loss over the quantile levels and the quantile-based CRPS (``2 x`` the
    mean pinball loss, Berrisch & Ziel 2023), both in percent of the last close.
    ``quantiles``: (n, Q) prices for one horizon."""
    import scoringrules as sr

    y = 100.0 * np.asarray(actual, dtype=np.float64) / last_close
    q = _percent(quantiles, last_close)
    valid = np.isfinite(y) & np.isfinite(q).all(axis=1)
    if not valid.any():
        return {"pinball": math.nan, "crps": math.nan}
    alpha = np.asarray(levels, dtype=np.float64)
    pinball = sr.quantile_score(y[valid, None], q[valid], alpha[None, :], backend="numpy")
    crps = sr.crps_quantile(y[valid], q[valid], alpha, backend="numpy")
    return {"pinball": float(np.mean(pinball)), "crps": float(np.mean(crps))}


def kupiec_test(misses: np.ndarray, level: float) -> float | None:
    """p-value of Kupiec's unconditional coverage test (None with no observation)."""
    hits = np.asarray(misses, dtype=bool)
    n, x = hits.size, int(hits.sum())
    if n == 0:
        return None
    p = 1.0 - level
    observed = x / n
    log_null = x * math.log(p) + (n - x) * math.log(1 - p)
    log_alt = _xlogy(x, observed) + _xlogy(n - x, 1 - observed)
    statistic = max(-2.0 * (log_null - log_alt), 0.0)
    return float(stats.chi2.sf(statistic, 1))


def christoffersen_test(misses: np.ndarray) -> float | None:
    """p-value of Christoffersen's independence test of a miss sequence (None if undefined:
    fewer than two observations, or no miss, or nothing but misses)."""
    hits = np.asarray(misses, dtype=bool)
    if hits.size < 2 or hits.all() or not hits.any():
        return None
    previous, current = hits[:-1], hits[1:]
    n00 = int(np.sum(~previous & ~current))
    n01 = int(np.sum(~previous & current))
    n10 = int(np.sum(previous & ~current))
    n11 = int(np.sum(previous & current))
    pi0 = n01 / max(n00 + n01, 1)
    pi1 = n11 / max(n10 + n11, 1)
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    log_null = _xlogy(n00 + n10, 1 - pi) + _xlogy(n01 + n11, pi)
    log_alt = _xlogy(n00, 1 - pi0) + _xlogy(n01, pi0) + _xlogy(n10, 1 - pi1) + _xlogy(n11, pi1)
    statistic = max(-2.0 * (log_null - log_alt), 0.0)
    return float(stats.chi2.sf(statistic, 1))


def _xlogy(count: float, probability: float) -> float:
    return 0.0 if count == 0 else count * math.log(probability)


def volatility_terciles(
    closes: np.ndarray, origin_rows: np.ndarray, window: int = 20
) -> np.ndarray:
    """Label each origin calm (0), normal (1) or turbulent (2) by the terciles, over these
    origins, of the trailing ``window``-day realized volatility known at the origin."""
    log_returns = np.diff(np.log(np.asarray(closes, dtype=np.float64)))
    rows = np.asarray(origin_rows, dtype=np.int64)
    realized = np.array(
        [np.std(log_returns[max(row - window, 0) : row]) if row > 1 else np.nan for row in rows]
    )
    edges = np.nanquantile(realized, [1 / 3, 2 / 3])
    return np.digitize(realized, edges)


def pit_values(actual: np.ndarray, quantiles: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """Probability integral transform from quantile forecasts (n, Q): the forecast CDF at the
    outcome, interpolated linearly between quantiles (clamped to the outer levels' tails).
    Uniform on [0, 1] for a calibrated forecaster."""
    y = np.asarray(actual, dtype=np.float64)
    alpha = np.asarray(levels, dtype=np.float64)
    out = np.full(y.shape, np.nan)
    for i, (value, row) in enumerate(zip(y, np.asarray(quantiles), strict=True)):
        if np.isfinite(value) and np.isfinite(row).all():
            out[i] = float(np.interp(value, row, alpha, left=0.0, right=1.0))
    return out


#: Fewer origins per PIT bin than this and the histogram is not read at all.
MIN_PER_PIT_BIN = 5


def read_pit(pit: np.ndarray, *, bins: int = 10) -> str:
    """The PIT histogram read for a person, in one or two sentences.

    Why a sentence: a hump or a U is easy to see and hard to interpret. Flatness is judged
    by the chi-square test of the bin counts (a histogram of 200 origins is never exactly
    flat); the shape named is the larger departure, in standard errors, of the two that
    matter: the outer bins (hump = intervals too wide in the tails, U = too narrow) or the
    lower half against the upper half (forecasts too high or too low).
    """
    values = np.asarray(pit, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = int(values.size)
    if n < MIN_PER_PIT_BIN * bins:
        return (
            f"{n} origins are too few to read the PIT histogram (about {MIN_PER_PIT_BIN * bins} "
            "are needed)."
        )
    counts = np.histogram(values, bins=bins, range=(0.0, 1.0))[0]
    expected = n / bins
    p_value = float(stats.chisquare(counts).pvalue)
    outer = int(counts[0] + counts[-1])
    outer_z = (outer - 2 * expected) / math.sqrt(2 * expected * (1 - 2 / bins))
    below = int(counts[: bins // 2].sum())
    skew_z = (below - n / 2) / math.sqrt(n / 4)
    if abs(outer_z) >= abs(skew_z):
        kind = "a hump" if outer_z < 0 else "a U"
        evidence = f"the two outer bins hold {outer} origins against {2 * expected:.0f} expected"
        meaning = (
            "closes reach the tails less often than forecast: the intervals are too wide there"
            if outer_z < 0
            else "closes reach the tails more often than forecast: the intervals are too "
            "narrow there"
        )
    else:
        kind = "a slope"
        side, count = ("below", below) if skew_z > 0 else ("above", n - below)
        evidence = f"{count} of {n} closes fall {side} the forecast median"
        meaning = f"the forecasts run too {'high' if skew_z > 0 else 'low'}"
    if p_value >= 0.05:
        return (
            f"The PIT histogram is flat within chance (chi-square p = {p_value:.2f}, {n} "
            f"origins): no miscalibration shows. Its largest lean, toward {kind} ({evidence}), "
            "is within what chance gives."
        )
    return (
        f"The PIT histogram is not flat (chi-square p = {p_value:.2g}, {n} origins): it is "
        f"{kind}; {evidence}, so {meaning}."
    )


def horizon_scores(
    actual: np.ndarray,
    last_close: np.ndarray,
    quantiles: np.ndarray | None,
    levels: tuple[float, ...],
    intervals: dict[float, tuple[np.ndarray, np.ndarray]],
    regimes: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every probabilistic score of one forecaster at one horizon (inputs (n,) / (n, Q)):
    per interval level coverage, width, Winkler, Kupiec and Christoffersen p-values and the
    coverage by volatility tercile; pinball and CRPS when quantiles are given."""
    row: dict[str, Any] = {}
    if quantiles is not None:
        row.update(quantile_scores(actual, quantiles, levels, last_close))
    for level, (lower, upper) in intervals.items():
        key = f"{level:g}"
        scores = interval_scores(actual, lower, upper, level, last_close)
        valid = np.isfinite(actual) & np.isfinite(lower) & np.isfinite(upper)
        misses = (actual[valid] < lower[valid]) | (actual[valid] > upper[valid])
        scores["kupiec_p"] = kupiec_test(misses, level)
        scores["christoffersen_p"] = christoffersen_test(misses)
        if regimes is not None:
            labels = regimes[valid]
            scores["coverage_by_regime"] = [
                float(np.mean(~misses[labels == k])) if np.any(labels == k) else None
                for k in range(3)
            ]
        row[key] = scores
    return row
