"""Walk-forward backtest of a ticker, written to its run folder."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stock_lstm.tickers import validate_ticker
from stock_lstm.workflows.context import (
    AppContext,
    load_prices,
    with_market,
)

if TYPE_CHECKING:
    from stock_lstm.models.training import TrainParams


@contextlib.contextmanager
def fit_progress_bar(config: Any, *, enabled: bool) -> Iterator[Any]:
    """A ``walk_forward`` progress callback drawing a tqdm bar over fits (``None`` when off).

    Drawn before the first fit starts (the longest: it is the only cold one) and moved once a
    fit has forecast its origins, so the estimate of the time left counts training and
    forecasting alike.
    """
    if not enabled:
        yield None
        return
    import math
    import sys

    from tqdm import tqdm

    per_fit = config.refit_every or config.origins
    bar = tqdm(
        total=math.ceil(config.origins / per_fit), desc="backtest", unit="fit", file=sys.stderr
    )
    bar.set_postfix(origins=f"0/{config.origins}")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.set_postfix(origins=f"{min(done * per_fit, config.origins)}/{config.origins}")
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        bar.close()


def backtest_ticker(
    ctx: AppContext,
    ticker: str,
    params: TrainParams,
    config: Any,
    *,
    output_dir: Path | None = None,
    start: date | None = None,
    end: date | None = None,
    show_progress: bool = False,
    fit: Any = None,
) -> tuple[Any, Path]:
    """Walk-forward backtest of ``ticker``; writes ``backtest.csv`` and ``summary.json``.

    ``fit``: how each block's model is made (default: trained on the ticker's window; a
    universal model's fit function from ``evaluation.universe``).

    ``show_progress``: a bar over the fits (and the origins they serve) with the time left.

    Returns the :class:`~stock_lstm.evaluation.backtest.BacktestResult` and the folder it
    was written to (default ``reports/<TICKER>/backtest_<UTC time>/``).
    """
    from stock_lstm.evaluation.backtest import walk_forward
    from stock_lstm.tickers import ticker_file_stem

    ticker = validate_ticker(ticker)
    params = params.validate()
    config = config.validate()
    prices, _sync = load_prices(ctx, ticker, start=start, end=end)
    prices = with_market(ctx, prices, params.inputs, start=start, end=end)
    with fit_progress_bar(config, enabled=show_progress) as progress:
        result = walk_forward(
            prices,
            params,
            config,
            threads=ctx.settings.torch_threads,
            progress=progress,
            fit=fit,
        )
    folder = output_dir or (
        Path(ctx.settings.reports_dir)
        / ticker_file_stem(ticker)
        / f"backtest_{ctx.clock().strftime('%Y%m%d_%H%M%S')}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    result.summary = result.summary.model_copy(update={"ticker": ticker})
    result.frame.to_csv(folder / "backtest.csv", index=False, float_format="%.6f")
    (folder / "summary.json").write_text(result.summary.to_json_text())
    return result, folder
