"""The one interface every forecaster a backtest scores shares: ``fit`` on the rows of a
price history before a row, then ``predict`` price quantiles at origin rows at or after it.

statsforecast's shape (``fit``, then ``predict(h, level)``), where the naive forecasts are
ordinary models: the point baselines (``evaluation.baselines``: persistence, drift) and the
classical anchors (``evaluation.anchors``: GARCH-t, GJR-GARCH, HAR, EWMA) are all
:class:`Forecaster` s, made by name from their registries
(``evaluation.baselines.make_forecaster``), and a point forecaster's quantiles are its point
at every level.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PriceHistory:
    """What an anchor may read: daily closes and, where the source has them, highs and lows
    (same rows). Rows after an origin are never read for that origin's forecast."""

    close: np.ndarray
    high: np.ndarray | None = None
    low: np.ndarray | None = None

    @classmethod
    def of(cls, prices: PriceHistory | pd.DataFrame | np.ndarray) -> PriceHistory:
        """A history from a price frame (``close`` and, if present, ``high``/``low``
        columns), from bare closes, or as given."""
        if isinstance(prices, PriceHistory):
            return prices
        if isinstance(prices, pd.DataFrame):
            columns = {str(c).lower(): c for c in prices.columns}

            def column(name: str) -> np.ndarray | None:
                key = columns.get(name)
                return None if key is None else prices[key].to_numpy(dtype=np.float64)

            close = column("close")
            if close is None:
                raise ValueError("a price frame needs a close column")
            return cls(close, column("high"), column("low"))
        return cls(np.asarray(prices, dtype=np.float64))

    @property
    def log_returns(self) -> np.ndarray:
        """``log_returns[p]`` is the log-return into row ``p + 1``."""
        return np.diff(np.log(self.close))


@dataclass(frozen=True)
class QuantileForecast:
    """Price quantiles (n origins, H horizons, Q levels) of one forecaster."""

    levels: tuple[float, ...]
    prices: np.ndarray

    @property
    def median(self) -> np.ndarray:
        """The (n, H) median: the point forecast."""
        if 0.5 in self.levels:
            return self.prices[..., self.levels.index(0.5)]
        raise ValueError(f"no median among the levels {self.levels}")


class Forecaster(ABC):
    """Fitted on the history before ``fit_end_row``, forecasts from origins at or after
    it, reading no row after an origin for that origin's forecast."""

    name: ClassVar[str]
    label: ClassVar[str]

    @abstractmethod
    def fit(self, history: PriceHistory, fit_end_row: int) -> Forecaster:
        """Estimate on rows ``< fit_end_row``; returns ``self``."""

    @abstractmethod
    def predict(
        self, origin_rows: np.ndarray, horizon: int, levels: tuple[float, ...]
    ) -> QuantileForecast:
        """Price quantiles (n, horizon, Q) of the next ``horizon`` closes at each origin."""


@dataclass(frozen=True)
class IntervalForecast:
    """One interval forecaster's forecast at a set of origins, as every score reads it:
    central price intervals (n, H, L at ``online_calibration.CALIBRATION_LEVELS``) and the
    median (n, H) its pinball loss and CRPS are centred on.

    The median travels with the bounds so scoring never asks who made them: the model's is
    its point forecast, an anchor's is persistence (anchors forecast the spread, not the
    level), a combination's is its members' geometric mean.
    """

    lower: np.ndarray
    upper: np.ndarray
    centre: np.ndarray

    def at_level(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The (n, H) lower and upper bounds at ``CALIBRATION_LEVELS[index]``."""
        return self.lower[..., index], self.upper[..., index]
