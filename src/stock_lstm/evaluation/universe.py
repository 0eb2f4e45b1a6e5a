"""The honest protocol for a universal model in a walk-forward backtest.

For each refit block of a scored ticker the universal network is trained on universe rows
dated on or before the block's last fitting day (strictly before its first origin), and
never on a held-out ticker; the scored ticker's own encoder and starting calibration come
from its own window (``backtest.fit_window``'s split), so everything the block reads is
older than its first origin. Fits depend only on the cut-off (the last universe date a fit
may read), the seed and the parameters, so they are shared by every ticker and block with
the same cut-off and kept on disk: 20 tickers on 5 cut-offs cost 5 fits, and a re-run none.

``held_out_split`` fixes which universe tickers no universal fit ever sees: the "tickers it
never saw" test.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stock_lstm.data.encoding import needs_market
from stock_lstm.data.market import MARKET_TICKER, market_frames

#: Universe tickers no universal fit sees, scored as the "never seen" set.
HELD_OUT_TICKERS = 40
#: Seed of the held-out draw: fixed once, never tuned (written beside every result).
HELD_OUT_SEED = 20201211


def held_out_split(
    tickers: Iterable[str], count: int = HELD_OUT_TICKERS, seed: int = HELD_OUT_SEED
) -> tuple[list[str], list[str]]:
    """(training tickers, held-out tickers), both sorted: ``count`` drawn at random with a
    fixed seed from the sorted names, so the split depends on nothing but the folder."""
    names = sorted(set(tickers))
    if not 0 <= count < len(names):
        raise ValueError(f"cannot hold out {count} of {len(names)} tickers")
    held = set(random.Random(seed).sample(names, count))
    return [t for t in names if t not in held], sorted(held)


@dataclass(frozen=True)
class UniverseSpec:
    """Which universe a universal fit reads and what it must never read."""

    directory: str
    held_out: tuple[str, ...]
    cache_dir: str

    def training_tickers(self) -> list[str]:
        from stock_lstm.data.sources import CsvSource

        held = set(self.held_out)
        return [t for t in CsvSource(Path(self.directory)).available_tickers() if t not in held]


@functools.lru_cache(maxsize=4)
def universe_dates(spec: UniverseSpec) -> pd.DatetimeIndex:
    """Every date any training ticker of the universe has a row on, sorted."""
    dates: set[pd.Timestamp] = set()
    for frame in _frames(spec, spec.training_tickers()).values():
        dates.update(frame.index)
    return pd.DatetimeIndex(sorted(dates))


def cutoff_for(dates: pd.DatetimeIndex, last_fit_day: pd.Timestamp) -> pd.Timestamp | None:
    """The last universe date on or before ``last_fit_day`` (``None``: none is)."""
    position = int(dates.searchsorted(last_fit_day, side="right")) - 1
    return None if position < 0 else pd.Timestamp(dates[position])


def _frames(spec: UniverseSpec, tickers: list[str]) -> dict[str, pd.DataFrame]:
    from stock_lstm.data.sources import CsvSource

    source = CsvSource(Path(spec.directory))
    return {ticker: source.fetch(ticker).frame for ticker in tickers}


def _params_key(params: Any) -> str:
    """A short digest of the parameters a fit depends on (the horizon head included)."""
    text = json.dumps(params.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def fit_path(spec: UniverseSpec, params: Any, cutoff: pd.Timestamp) -> Path:
    """Where the fit of ``cutoff`` for ``params`` is kept."""
    return Path(spec.cache_dir) / _params_key(params) / f"{cutoff:%Y-%m-%d}.pt"


def train_universal(
    spec: UniverseSpec, params: Any, cutoff: pd.Timestamp, threads: int | None = 1
) -> dict[str, Any]:
    """Fit (or find) the universal network on rows dated ``<= cutoff``; what the fit was."""
    import torch

    from stock_lstm.models.pooled import prepare_universe, train_pooled

    path = fit_path(spec, params, cutoff)
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        return dict(saved["run"], cached=True)
    frames = _frames(spec, spec.training_tickers())
    if needs_market(params.inputs):
        frames = market_frames(frames, _frames(spec, [MARKET_TICKER])[MARKET_TICKER])
    until = cutoff + pd.Timedelta(days=1)  # nothing dated after the cut-off day is read
    data = prepare_universe(frames, params, until=until)
    result = train_pooled(data, params, threads=threads)
    run = {
        "cutoff": f"{cutoff:%Y-%m-%d}",
        "tickers": len(result.tickers),
        "skipped": len(result.skipped),
        "train_origins": result.train_origins,
        "validation_start": f"{result.validation_start:%Y-%m-%d}",
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "seconds": round(result.train_seconds, 1),
    }
    payload = {
        "network": result.model.network,
        "config": result.model.config(),
        "state": result.model.state_dict(),
        "run": run,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(handle)
    torch.save(payload, temporary)
    os.replace(temporary, path)  # another process finds a whole file or none
    return dict(run, cached=False)


def load_universal(spec: UniverseSpec, params: Any, cutoff: pd.Timestamp) -> tuple[Any, dict]:
    """The kept fit of ``cutoff`` (trained now if missing) and its run record."""
    import torch

    from stock_lstm.models.networks import build_network

    path = fit_path(spec, params, cutoff)
    if not path.is_file():
        train_universal(spec, params, cutoff)
    saved = torch.load(path, weights_only=True)
    model = build_network(saved["network"], **saved["config"])
    model.load_state_dict(saved["state"])
    model.eval()
    return model, saved["run"]


def needed_cutoffs(
    prices: pd.DataFrame, config: Any, dates: pd.DatetimeIndex
) -> list[pd.Timestamp]:
    """The cut-offs a backtest of ``prices`` with ``config`` will ask for, one per block."""
    from stock_lstm.evaluation.backtest import origin_rows

    origins = origin_rows(len(prices), config)
    size = config.refit_every or len(origins)
    out = []
    for first in origins[::size]:
        cutoff = cutoff_for(dates, pd.Timestamp(prices.index[int(first) - 1]))
        if cutoff is not None and cutoff not in out:
            out.append(cutoff)
    return out


def universal_fit_function(spec: UniverseSpec, dates: pd.DatetimeIndex) -> Any:
    """A ``walk_forward`` fit function: the universal network of the window's cut-off, with
    the scored ticker's own encoder and validation slice from the window."""
    from stock_lstm.data.preprocessing import SplitFractions, prepare_data
    from stock_lstm.errors import NotEnoughDataError
    from stock_lstm.evaluation.backtest import VALIDATION_FRACTION, FittedWindow

    def fit(window: pd.DataFrame, params: Any) -> FittedWindow:
        cutoff = cutoff_for(dates, pd.Timestamp(window.index[-1]))
        if cutoff is None:
            raise NotEnoughDataError(
                f"the universe has no row on or before {window.index[-1]:%Y-%m-%d}"
            )
        model, run = load_universal(spec, params, cutoff)
        fractions = SplitFractions(
            1.0 - VALIDATION_FRACTION, VALIDATION_FRACTION, allow_empty_test=True
        )
        data = prepare_data(window, fractions=fractions, **params.data_options)
        return FittedWindow(model, data, int(run["epochs_run"]), int(run["best_epoch"]), False)

    return fit


__all__ = [
    "HELD_OUT_TICKERS",
    "UniverseSpec",
    "cutoff_for",
    "held_out_split",
    "load_universal",
    "needed_cutoffs",
    "train_universal",
    "universal_fit_function",
    "universe_dates",
]


def market_range_volatility(frames: Mapping[str, pd.DataFrame], window: int = 21) -> pd.Series:
    """The universe's volatility by day: the cross-sectional median, over the tickers quoted
    that day, of each ticker's ``window``-day mean Parkinson range variance, as an annualized
    volatility in %. What a pooled fit sees that one ticker does not: one regime for all
    (notebook 06 shows where the validation dates fall in it)."""
    from stock_lstm.evaluation.har import range_variance

    columns = {}
    for ticker, frame in frames.items():
        variance = range_variance(
            frame["close"].to_numpy(),
            frame["high"].to_numpy() if "high" in frame else None,
            frame["low"].to_numpy() if "low" in frame else None,
        )
        rolling = pd.Series(variance, index=frame.index).rolling(window, min_periods=window)
        columns[ticker] = rolling.mean()
    panel = pd.DataFrame(columns)
    return (100.0 * np.sqrt(252.0 * panel.median(axis=1, skipna=True))).dropna()


def universe_frames(
    directory: Path, tickers: Iterable[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Every (or each named) ticker's prices in a universe folder, by ticker."""
    from stock_lstm.data.sources import CsvSource

    source = CsvSource(Path(directory)).check_folder()
    names = list(tickers) if tickers is not None else source.available_tickers()
    return {ticker: source.fetch(ticker).frame for ticker in names}
