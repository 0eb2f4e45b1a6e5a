"""Is a difference in forecast accuracy more than noise? Diebold-Mariano and binomial intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DieboldMariano:
    """DM test of equal accuracy with the Harvey-Leybourne-Newbold small-sample correction.

    ``statistic`` < 0 means the first forecast has the smaller loss; ``p_value`` is two-sided
    from Student's t with n - 1 degrees of freedom. ``mean_difference`` is the mean loss of
    the first minus the second, ``standard_error`` its HAC standard error with the same
    small-sample correction, so :meth:`interval` excludes 0 exactly when ``p_value`` < 1 -
    its level: a band drawn from it never disagrees with the test.
    """

    statistic: float
    p_value: float
    n: int
    mean_difference: float = math.nan
    standard_error: float = math.nan

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Confidence interval of ``mean_difference`` (nan, nan when untestable)."""
        from scipy import stats

        if self.n < 3 or not math.isfinite(self.standard_error):
            return math.nan, math.nan
        half = float(stats.t.ppf(0.5 + level / 2, df=self.n - 1)) * self.standard_error
        return self.mean_difference - half, self.mean_difference + half


def diebold_mariano(
    errors_a: np.ndarray, errors_b: np.ndarray, horizon: int, *, power: int = 1
) -> DieboldMariano:
    """Compare forecast errors ``a`` and ``b`` (same dates) made ``horizon`` steps ahead.

    The loss is ``|e| ** power`` (1: absolute, matching MAE). h-step errors overlap, so the
    variance of the loss differential uses autocovariances up to lag ``horizon - 1``; HLN
    rescale the statistic for small samples (Harvey, Leybourne & Newbold, 1997).
    """
    from scipy import stats

    a = np.abs(np.asarray(errors_a, dtype=np.float64)) ** power
    b = np.abs(np.asarray(errors_b, dtype=np.float64)) ** power
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("errors_a and errors_b must be 1-D arrays of the same length")
    d = a - b
    n = d.size
    if n < 3:
        return DieboldMariano(math.nan, math.nan, n)
    mean = d.mean()
    centered = d - mean
    gamma0 = float(centered @ centered) / n
    variance = gamma0
    for lag in range(1, min(horizon, n)):
        variance += 2.0 * float(centered[lag:] @ centered[:-lag]) / n
    if variance <= 0 or not math.isfinite(variance):
        # Identical forecasts (or degenerate autocovariances): nothing to tell apart.
        statistic = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        return DieboldMariano(statistic, 1.0, n, float(mean), 0.0)
    correction = math.sqrt(max((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n, 0.0))
    if correction == 0:
        return DieboldMariano(math.nan, math.nan, n, float(mean))
    standard_error = math.sqrt(variance / n) / correction
    statistic = mean / standard_error
    p_value = float(2.0 * stats.t.sf(abs(statistic), df=n - 1))
    return DieboldMariano(float(statistic), p_value, n, float(mean), standard_error)


def wilson_interval(
    successes: int, trials: int, z: float = 1.959963984540054
) -> tuple[float, float]:
    """95% (by default) Wilson score interval for a binomial proportion; (nan, nan) if n = 0."""
    if trials <= 0:
        return math.nan, math.nan
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
