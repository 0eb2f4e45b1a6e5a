"""``make evaluate``: backtest every ticker of a CSV folder and write one comparison table.

Each ticker is backtested (one fit, ``origins`` origins, by default) for several seeds with
the project's default model, and once with the original design's model (min-max scaled
prices, recursive). Persistence and drift are scored on the same origins. The table is
what README quotes; nothing here is asserted by a test because it is a measurement.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ORIGINAL_DESIGN = {"target": "price", "strategy": "recursive"}


@dataclass(frozen=True)
class EvaluationTask:
    ticker: str
    source_dir: str
    label: str
    params: dict[str, Any]
    horizon: int
    origins: int
    refit_every: int | None


def run_task(task: EvaluationTask) -> dict[str, Any]:
    """One backtest; returns the headline numbers (never raises: errors become a row)."""
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.evaluation.backtest import BacktestConfig, headline, walk_forward
    from stock_lstm.models.training import TrainParams

    began = time.perf_counter()
    try:
        prices = CsvSource(Path(task.source_dir)).fetch(task.ticker).frame
        params = TrainParams.from_dict(task.params)
        config = BacktestConfig(
            horizon=task.horizon, origins=task.origins, refit_every=task.refit_every
        )
        result = walk_forward(prices, params, config, threads=1)
        row = {"status": "ok", **headline(result.summary, (1, task.horizon))}
    except Exception as exc:  # one ticker failing must not stop the others
        row = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return {
        "ticker": task.ticker,
        "label": task.label,
        "seed": task.params.get("seed"),
        "seconds": round(time.perf_counter() - began, 1),
        **row,
    }


def build_tasks(
    source_dir: Path,
    tickers: list[str] | None,
    seeds: list[int],
    *,
    horizon: int,
    origins: int,
    refit_every: int | None,
    base_params: dict[str, Any],
    include_original: bool = True,
) -> list[EvaluationTask]:
    from stock_lstm.data.sources import CsvSource

    names = tickers or CsvSource(source_dir).available_tickers()
    tasks = []
    for ticker in names:
        for seed in seeds:
            params = {**base_params, "seed": seed}
            tasks.append(
                EvaluationTask(
                    ticker, str(source_dir), "model", params, horizon, origins, refit_every
                )
            )
        if include_original:
            params = {**base_params, **ORIGINAL_DESIGN, "seed": seeds[0]}
            tasks.append(
                EvaluationTask(
                    ticker, str(source_dir), "original", params, horizon, origins, refit_every
                )
            )
    return tasks


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
        results = executor.map(run_task, calls, desc="backtests", unit="fit", progress=progress)
    rows = []
    for label, task in zip(calls, tasks, strict=True):
        identity = {"ticker": task.ticker, "label": task.label, "seed": task.params.get("seed")}
        rows.append({**identity, **results[label]})
    return rows


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def summarize(rows: list[dict[str, Any]], horizon: int) -> tuple[pd.DataFrame, str]:
    """Per-ticker table (model averaged over seeds, with its seed spread) and markdown."""
    frame = pd.DataFrame(rows)
    ok = frame[frame["status"] == "ok"]
    model = ok[ok["label"] == "model"]
    original = ok[ok["label"] == "original"].set_index("ticker")
    h = f"rmae_h{horizon}"
    table_rows = []
    for ticker, group in model.groupby("ticker"):
        table_rows.append(
            {
                "ticker": ticker,
                "rmae_h1": group["rmae_h1"].mean(),
                "rmae_h1_spread": group["rmae_h1"].max() - group["rmae_h1"].min(),
                h: group[h].mean(),
                "dm_p_h1": group["dm_p_h1"].mean(),
                "directional_accuracy_h1": group["directional_accuracy_h1"].mean(),
                "coverage_mean": group["coverage_mean"].mean(),
                "drift_rmae_h1": group["rmae_drift_h1"].mean(),
                "original_rmae_h1": original["rmae_h1"].get(ticker, np.nan),
                f"original_{h}": original[h].get(ticker, np.nan),
                "predicted_move_std_h1": group["predicted_move_std_h1"].mean(),
                "actual_move_std_h1": group["actual_move_std_h1"].mean(),
            }
        )
    table = pd.DataFrame(table_rows)
    lines = [
        f"| ticker | rMAE h=1 (seed spread) | rMAE h={horizon} | DM p h=1 | direction h=1 "
        f"| 90% coverage | drift rMAE h=1 | original rMAE h=1 | original rMAE h={horizon} "
        "| predicted / actual move std h=1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        lines.append(
            f"| {row['ticker']} | {_fmt(row['rmae_h1'])} ({_fmt(row['rmae_h1_spread'])}) "
            f"| {_fmt(row[h])} | {_fmt(row['dm_p_h1'], 2)} "
            f"| {_fmt(row['directional_accuracy_h1'])} | {_fmt(row['coverage_mean'])} "
            f"| {_fmt(row['drift_rmae_h1'])} | {_fmt(row['original_rmae_h1'])} "
            f"| {_fmt(row[f'original_{h}'])} "
            f"| {_fmt(row['predicted_move_std_h1'], 4)} / {_fmt(row['actual_move_std_h1'], 4)} |"
        )
    if not table.empty:
        lines.append(
            f"| **median** | {_fmt(table['rmae_h1'].median())} | {_fmt(table[h].median())} "
            f"| | {_fmt(table['directional_accuracy_h1'].median())} "
            f"| {_fmt(table['coverage_mean'].median())} | {_fmt(table['drift_rmae_h1'].median())} "
            f"| {_fmt(table['original_rmae_h1'].median())} "
            f"| {_fmt(table[f'original_{h}'].median())} | |"
        )
    failed = frame[frame["status"] != "ok"]
    for row in failed.to_dict("records"):
        lines.append(f"\nfailed: {row['ticker']} ({row['label']}): {row.get('error')}")
    return table, "\n".join(lines)


def write_outputs(out_dir: Path, rows: list[dict[str, Any]], horizon: int) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    table, markdown = summarize(rows, horizon)
    table.to_csv(out_dir / "evaluation.csv", index=False, float_format="%.5f")
    (out_dir / "runs.json").write_text(json.dumps(rows, indent=2, default=str))
    (out_dir / "evaluation.md").write_text(markdown + "\n")
    return markdown


def default_params(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from stock_lstm.models.training import TrainParams

    return replace(TrainParams(), **(overrides or {})).to_dict()
