"""``make evaluate``: backtest every ticker of a CSV folder and write one comparison table.

Each ticker is backtested (``origins`` origins, refit every ``refit_every``) for several seeds with
the project's default model, and once with the original design's model (min-max scaled
prices, recursive). Persistence and drift are scored on the same origins. The table is
what README quotes; nothing here is asserted by a test because it is a measurement.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ORIGINAL_DESIGN = {"target": "price", "strategy": "recursive"}
#: The model before probabilistic forecasts: a point head on the close alone, whose
#: intervals are static split-conformal bands (scored with online calibration too).
POINT_MODEL = {"output": "point", "inputs": "close"}


@dataclass(frozen=True)
class EvaluationTask:
    ticker: str
    source_dir: str
    label: str
    params: dict[str, Any]
    horizon: int
    origins: int
    refit_every: int | None
    warm_start: bool = True


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
    include_point: bool = False,
    warm_start: bool = True,
) -> list[EvaluationTask]:
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.errors import DataSourceError

    source = CsvSource(source_dir).check_folder()  # a mistyped --csv-dir: one line, no cluster
    names = tickers or source.available_tickers()
    if not names:
        raise DataSourceError(
            f"the folder {source_dir} holds no .csv files: point --csv-dir at a folder of "
            "<TICKER>.csv files"
        )
    tasks = []
    for ticker in names:
        for seed in seeds:
            params = {**base_params, "seed": seed}
            tasks.append(
                EvaluationTask(
                    ticker,
                    str(source_dir),
                    "model",
                    params,
                    horizon,
                    origins,
                    refit_every,
                    warm_start,
                )
            )
        if include_point:
            params = {**base_params, **POINT_MODEL, "seed": seeds[0]}
            tasks.append(
                EvaluationTask(
                    ticker,
                    str(source_dir),
                    "point",
                    params,
                    horizon,
                    origins,
                    refit_every,
                    warm_start,
                )
            )
        if include_original:
            params = {**base_params, **ORIGINAL_DESIGN, **POINT_MODEL, "seed": seeds[0]}
            tasks.append(
                EvaluationTask(
                    ticker,
                    str(source_dir),
                    "original",
                    params,
                    horizon,
                    origins,
                    refit_every,
                    warm_start,
                )
            )
    return tasks


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def summarize(rows: list[dict[str, Any]], horizon: int) -> tuple[pd.DataFrame, str]:
    """Per-ticker table (model averaged over seeds, with its seed spread) and markdown: the
    point forecast beside persistence, then the 90% intervals at h=1 of the model (online
    calibration), the model's intervals frozen at the fit, the point model's, GARCH-t, EWMA."""
    frame = pd.DataFrame(rows)
    ok = frame[frame["status"] == "ok"]
    model = ok[ok["label"] == "model"]
    by_label = {
        label: ok[ok["label"] == label].set_index("ticker") for label in ("original", "point")
    }
    h = f"rmae_h{horizon}"
    table_rows = []
    for ticker, group in model.groupby("ticker"):
        row: dict[str, Any] = {
            "ticker": ticker,
            "seeds": len(group),
            "rmae_h1": group["rmae_h1"].mean(),
            "rmae_h1_spread": group["rmae_h1"].max() - group["rmae_h1"].min(),
            h: group[h].mean(),
            "dm_p_h1": group["dm_p_h1"].mean(),
            "directional_accuracy_h1": group["directional_accuracy_h1"].mean(),
            "drift_rmae_h1": group["rmae_drift_h1"].mean(),
        }
        for name in ("model", "model_static", "model_garch", "garch_t", "ewma"):
            for metric in ("coverage90_h1", "winkler90_h1", "crps_h1", "kupiec90_h1"):
                column = f"{name}_{metric}"
                if column in group:
                    row[column] = group[column].mean()
        if "model_winkler90_h1" in group:
            row["model_winkler90_h1_spread"] = (
                group["model_winkler90_h1"].max() - group["model_winkler90_h1"].min()
            )
        for label, other in by_label.items():
            for column in ("rmae_h1", h, "model_winkler90_h1", "model_static_winkler90_h1"):
                if column in other:
                    row[f"{label}_{column}"] = other[column].get(ticker, np.nan)
        table_rows.append(row)
    table = pd.DataFrame(table_rows)
    lines = [
        f"| ticker | rMAE h=1 (seed spread) | rMAE h={horizon} | DM p h=1 | 90% coverage h=1 "
        "| Winkler h=1: model (seed spread) | frozen at fit | point model today | GARCH-t | EWMA "
        "| CRPS h=1: model | GARCH-t | EWMA |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        lines.append(
            f"| {row['ticker']} | {_fmt(row['rmae_h1'])} ({_fmt(row['rmae_h1_spread'])}) "
            f"| {_fmt(row[h])} | {_fmt(row['dm_p_h1'], 2)} "
            f"| {_fmt(row.get('model_coverage90_h1'))} "
            f"| {_fmt(row.get('model_winkler90_h1'), 2)} "
            f"({_fmt(row.get('model_winkler90_h1_spread'), 2)}) "
            f"| {_fmt(row.get('model_static_winkler90_h1'), 2)} "
            f"| {_fmt(row.get('point_model_static_winkler90_h1'), 2)} "
            f"| {_fmt(row.get('garch_t_winkler90_h1'), 2)} "
            f"| {_fmt(row.get('ewma_winkler90_h1'), 2)} "
            f"| {_fmt(row.get('model_crps_h1'))} | {_fmt(row.get('garch_t_crps_h1'))} "
            f"| {_fmt(row.get('ewma_crps_h1'))} |"
        )
    if not table.empty:

        def median(column: str, digits: int = 3) -> str:
            return _fmt(table[column].median(), digits) if column in table else "–"

        lines.append(
            f"| **median** | {median('rmae_h1')} | {median(h)} | "
            f"| {median('model_coverage90_h1')} | {median('model_winkler90_h1', 2)} "
            f"| {median('model_static_winkler90_h1', 2)} "
            f"| {median('point_model_static_winkler90_h1', 2)} "
            f"| {median('garch_t_winkler90_h1', 2)} | {median('ewma_winkler90_h1', 2)} "
            f"| {median('model_crps_h1')} | {median('garch_t_crps_h1')} "
            f"| {median('ewma_crps_h1')} |"
        )
        lines.extend(_aims(table))
        lines.extend(_cost(frame))
    failed = frame[frame["status"] != "ok"]
    for row in failed.to_dict("records"):
        lines.append(f"\nfailed: {row['ticker']} ({row['label']}): {row.get('error')}")
    return table, "\n".join(lines)


def _wilcoxon(first: pd.Series, second: pd.Series) -> str:
    """Two-sided p of the paired difference across tickers (each ticker one pair)."""
    from scipy.stats import wilcoxon

    pairs = pd.concat([first, second], axis=1).dropna()
    if len(pairs) < 6:
        return "n/a"
    return f"{wilcoxon(pairs.iloc[:, 0], pairs.iloc[:, 1]).pvalue:.2g}"


def _cost(frame: pd.DataFrame) -> list[str]:
    """What the backtests cost: seconds and epochs per backtest, first fit against refits."""
    if "epochs_per_fit" not in frame:
        return []  # rows written before epochs were recorded
    done = frame[(frame["status"] == "ok") & frame["epochs_per_fit"].notna()]
    if done.empty:
        return []
    per_fit = (
        done["epochs_per_fit"].astype(str).str.split("/").apply(lambda fits: [int(n) for n in fits])
    )
    first = per_fit.apply(lambda fits: fits[0])
    refits = per_fit.apply(lambda fits: fits[1:]).explode().dropna().astype(int)
    refit_text = f", each refit {refits.mean():.1f}" if len(refits) else ""
    return [
        f"- cost: {len(done)} backtests, {done['seconds'].mean():.1f} s each on average; "
        f"epochs per backtest {done['epochs_total'].mean():.1f} (first fit {first.mean():.1f}"
        f"{refit_text})"
    ]


def _aims(table: pd.DataFrame) -> list[str]:
    """The probabilistic issue's aims, as measured (never asserted: a measurement)."""
    lines = [""]
    if "model_coverage90_h1" in table:
        coverage = table["model_coverage90_h1"]
        inside = int(coverage.between(0.86, 0.94).sum())
        lines.append(
            f"- 90% coverage at h=1 within 86-94%: {inside} of {len(table)} tickers "
            f"(range {_fmt(coverage.min())}-{_fmt(coverage.max())})"
        )
    for other, label in (
        ("garch_t_winkler90_h1", "GARCH-t"),
        ("ewma_winkler90_h1", "EWMA"),
        ("point_model_static_winkler90_h1", "the point model's static intervals"),
    ):
        if "model_winkler90_h1" in table and other in table and table[other].notna().any():
            ratio = table["model_winkler90_h1"].mean() / table[other].mean()
            direction = "lower (better)" if ratio < 1 else "higher (worse)"
            better = int((table["model_winkler90_h1"] < table[other]).sum())
            lines.append(
                f"- mean Winkler score at h=1 vs {label}: {ratio:.3f}x, "
                f"{abs(1 - ratio) * 100:.1f}% {direction}; lower on {better} of "
                f"{len(table)} tickers (Wilcoxon signed-rank p = "
                f"{_wilcoxon(table['model_winkler90_h1'], table[other])})"
            )
    if "model_garch_winkler90_h1" in table and "garch_t_winkler90_h1" in table:
        combined, garch = table["model_garch_winkler90_h1"], table["garch_t_winkler90_h1"]
        ratio = combined.mean() / garch.mean()
        coverage = table["model_garch_coverage90_h1"]
        lines.append(
            f"- the combination model + GARCH-t (scored, not served): mean Winkler at h=1 "
            f"{_fmt(combined.mean(), 2)}, {(1 - ratio) * 100:.1f}% below GARCH-t (lower on "
            f"{int((combined < garch).sum())} of {len(table)} tickers, Wilcoxon p = "
            f"{_wilcoxon(combined, garch)}); against the model alone "
            f"{_fmt(table['model_winkler90_h1'].mean(), 2)} (p = "
            f"{_wilcoxon(combined, table['model_winkler90_h1'])}); 90% coverage "
            f"{_fmt(coverage.min())}-{_fmt(coverage.max())}"
        )
    lines.append(
        f"- median rMAE at h=1: {_fmt(table['rmae_h1'].median())}; tickers above 1.02: "
        f"{', '.join(table.loc[table['rmae_h1'] > 1.02, 'ticker']) or 'none'}"
    )
    return lines


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
