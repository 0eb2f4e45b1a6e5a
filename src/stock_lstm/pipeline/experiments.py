"""Experiments as Dask tasks: ``make evaluate``'s backtests and ``stock-lstm sweep``'s grid
points, one task each (``stock_lstm.cluster``: a local cluster or a real scheduler).

The scoring they call is in ``evaluation/`` (``backtest``, ``evaluate``, ``sweep``), which
knows nothing of Dask, workers or settings; this module is where a task gets its prices,
its settings and its worker.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stock_lstm.cluster import settings_from_dict, worker_name, worker_settings
from stock_lstm.config import Settings
from stock_lstm.errors import StockLSTMError
from stock_lstm.evaluation.evaluate import EvaluationTask
from stock_lstm.evaluation.sweep import SweepResult, grid_points, point_label, rank_key

if TYPE_CHECKING:
    from stock_lstm.cluster import Executor
    from stock_lstm.evaluation.backtest import BacktestConfig


def run_task(task: EvaluationTask) -> dict[str, Any]:
    """One backtest; returns the headline numbers (never raises: errors become a row)."""
    from stock_lstm.data.encoding import needs_market
    from stock_lstm.data.market import MARKET_TICKER, attach_market
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.evaluation.backtest import BacktestConfig, headline, walk_forward
    from stock_lstm.models.training import TrainParams

    began = time.perf_counter()
    try:
        source = CsvSource(Path(task.source_dir))
        prices = source.fetch(task.ticker).frame
        params = TrainParams.from_dict(task.params)
        if needs_market(params.inputs):
            prices = attach_market(prices, source.fetch(MARKET_TICKER).frame)
        config = BacktestConfig(
            horizon=task.horizon,
            origins=task.origins,
            refit_every=task.refit_every,
            warm_start=task.warm_start,
        )
        fit = None
        if task.universe is not None:
            from stock_lstm.evaluation.universe import universal_fit_function, universe_dates

            fit = universal_fit_function(task.universe, universe_dates(task.universe))
        result = walk_forward(prices, params, config, threads=1, fit=fit)
        if task.output_dir:
            _keep_rows(Path(task.output_dir), task, result.frame)
        epochs = result.summary.epochs_per_fit
        row = {
            "status": "ok",
            **headline(result.summary, (1, task.horizon)),
            "epochs_total": int(sum(epochs)),
            "epochs_per_fit": "/".join(str(n) for n in epochs),
        }
    except Exception as exc:  # one ticker failing must not stop the others
        row = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return {
        "ticker": task.ticker,
        "label": task.label,
        "seed": task.params.get("seed"),
        "seconds": round(time.perf_counter() - began, 1),
        **row,
    }


def _keep_rows(out_dir: Path, task: EvaluationTask, frame: Any) -> None:
    """``<out_dir>/<ticker>/seed<k>/backtest.csv`` (``<label>-seed<k>`` for other models), so
    anyone can re-score the forecasts."""
    from stock_lstm.tickers import validate_ticker

    prefix = "" if task.label == "model" else f"{task.label}-"
    folder = out_dir / validate_ticker(task.ticker) / f"{prefix}seed{int(task.params['seed'])}"
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "backtest.csv", index=False, float_format="%.6f")


def train_universal_fits(
    spec: Any,
    params_by_seed: Mapping[int, Any],
    cutoffs: Sequence[Any],
    workers: int | None = 1,
    *,
    scheduler: str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every universal fit a universe evaluation needs, one Dask task per (seed, cut-off),
    before any backtest asks for one (two backtests never train the same fit)."""
    from stock_lstm.cluster import open_executor
    from stock_lstm.evaluation.universe import train_universal

    calls = {
        f"seed{seed}:{cutoff:%Y-%m-%d}": (spec, params, cutoff)
        for seed, params in params_by_seed.items()
        for cutoff in cutoffs
    }
    with open_executor(scheduler, workers=workers) as executor:
        results = executor.map(
            train_universal, calls, desc="universal fits", unit="fit", progress=progress
        )
    return [{"fit": label, **results[label]} for label in calls]


def run_tasks(
    tasks: list[EvaluationTask],
    workers: int | None = 1,
    *,
    scheduler: str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every backtest as one Dask task (``stock_lstm.cluster``): on a local cluster of
    ``workers`` processes, or on the cluster of ``scheduler`` (``tcp://host:port``, where the
    CSV folder must be an absolute path every worker mounts). Rows in the order of ``tasks``;
    a backtest whose workers all died becomes a failed row like any other failure.
    """
    from stock_lstm.cluster import open_executor, shared_path

    calls = {}
    for number, task in enumerate(tasks):
        folder = shared_path(Path(task.source_dir), "--csv-dir", scheduler)
        label = f"{number}:{task.ticker}/{task.label}/seed{task.params.get('seed')}"
        calls[label] = (replace(task, source_dir=str(folder)),)
    with open_executor(scheduler, workers=workers) as executor:
        results = executor.map(
            run_task, calls, desc="backtests", unit="backtest", progress=progress
        )
    rows = []
    for label, task in zip(calls, tasks, strict=True):
        identity = {"ticker": task.ticker, "label": task.label, "seed": task.params.get("seed")}
        rows.append({**identity, **results[label]})
    return rows


def backtest_point_task(
    settings: dict[str, Any],
    ticker: str,
    params: dict[str, Any],
    config: dict[str, Any],
    start: str | None = None,
    end: str | None = None,
) -> dict[str, Any]:
    """One grid point's walk-forward backtest on a worker (a Dask task): its h=1 scores.

    Prices come through the cache (the caller synced them, so this reads the database).
    """
    from datetime import date

    from stock_lstm.evaluation.backtest import BacktestConfig, walk_forward
    from stock_lstm.models.training import TrainParams
    from stock_lstm.workflows import AppContext, load_prices, with_market

    began = time.perf_counter()
    ctx = AppContext.create(settings_from_dict(settings))
    row: dict[str, Any] = {"params": params, "worker": worker_name()}
    try:
        prices, _sync = load_prices(
            ctx,
            ticker,
            start=date.fromisoformat(start) if start else None,
            end=date.fromisoformat(end) if end else None,
        )
        prices = with_market(ctx, prices, TrainParams.from_dict(params).inputs)
        result = walk_forward(
            prices,
            TrainParams.from_dict(params),
            BacktestConfig(**config),
            threads=ctx.settings.torch_threads,
        )
    except StockLSTMError as exc:
        row.update(status="failed", error=str(exc))
        return row
    finally:
        ctx.db.dispose()
    summary = result.summary
    first = summary.horizons[0]
    row.update(
        status="ok",
        rmae_h1=first.rmae,
        mae_h1=first.model.get("mae"),
        **{f"{name}_mae_h1": scores.get("mae") for name, scores in first.baselines.items()},
        **{f"rmae_{name}_h1": ratio for name, ratio in first.baseline_rmae.items()},
        dm_p_h1=first.dm_p_value,
        directional_accuracy_h1=first.directional_accuracy,
        n_origins=summary.n_origins,
        first_origin=summary.first_origin,
        last_origin=summary.last_origin,
        fits=summary.fits,
        seconds=round(time.perf_counter() - began, 1),
    )
    return row


def run_sweep(
    executor: Executor,
    ticker: str,
    settings: Settings,
    grid: Mapping[str, Sequence[Any]],
    fixed: Mapping[str, Any],
    config: BacktestConfig,
    *,
    start: str | None = None,
    end: str | None = None,
    progress: bool = True,
) -> SweepResult:
    """Backtest every grid point as one task on ``executor``; rows ranked by rMAE at h=1.

    The caller syncs the ticker's prices first, so tasks read a fresh cache.
    """
    config = config.validate()
    fixed = {**fixed, "horizon": max(config.horizon, int(fixed.get("horizon", 1)))}
    points = grid_points(grid, fixed)
    names = list(grid)
    shared = worker_settings(settings)
    config_dict = asdict(config)
    calls = {
        point_label(point, names): (shared, ticker, point, config_dict, start, end)
        for point in points
    }
    results = executor.map(
        backtest_point_task, calls, desc="grid points", unit="point", progress=progress
    )
    rows = []
    for label, point in zip(calls, points, strict=True):
        row = {**results[label], "label": label, "params": point}
        row["point"] = {name: point[name] for name in names}
        rows.append(row)
    rows.sort(key=rank_key)
    return SweepResult(ticker, {k: list(v) for k, v in grid.items()}, config_dict, rows)
