"""``make evaluate``: backtest every ticker of a CSV folder and write one comparison table.

Each ticker is backtested (``origins`` origins, refit every ``refit_every``) for several seeds with
the project's default model, and once with the original design's model (min-max scaled
prices, recursive). Persistence and drift are scored on the same origins. The table is
what README and docs/evaluation.md quote; nothing here is asserted by a test because it is
a measurement.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stock_lstm.evaluation.verdicts import Verdict

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
    #: A universal model's universe (``evaluation.universe``): each block's network is the
    #: universal fit of its cut-off instead of a fit on the ticker alone.
    universe: Any = None
    #: Where the backtest's rows are kept (``<dir>/<ticker>/seed<k>/backtest.csv``).
    output_dir: str | None = None


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
    universe: Any = None,
    output_dir: str | None = None,
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
                    universe,
                    output_dir,
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


def _strongest_anchor(row: dict[str, Any], step: int) -> dict[str, Any]:
    """The anchor with the lowest mean 90% Winkler score at ``step`` among a ticker's
    averaged ``row``, and that score; empty when no anchor was scored."""
    from stock_lstm.evaluation.anchors import ANCHORS

    anchors = {a: row.get(f"{a}_winkler90_h{step}") for a in ANCHORS}
    anchors = {a: v for a, v in anchors.items() if v is not None and np.isfinite(v)}
    if not anchors:
        return {}
    strongest = min(anchors, key=anchors.__getitem__)
    return {
        f"best_anchor_h{step}": strongest,
        f"best_anchor_winkler90_h{step}": anchors[strongest],
    }


def summarize(rows: list[dict[str, Any]], horizon: int) -> tuple[pd.DataFrame, str]:
    """Per-ticker table (model averaged over seeds, with its seed spread) and markdown: the
    point forecast beside persistence, then the 90% intervals at h=1 and at ``horizon`` of
    the model (online calibration), the model frozen at the fit, the point model's, every
    anchor and the strongest anchor of each ticker."""
    from stock_lstm.evaluation.baselines import BASELINE_CLASSES
    from stock_lstm.evaluation.intervals import FORECASTERS

    frame = pd.DataFrame(rows)
    ok = frame[frame["status"] == "ok"]
    model = ok[ok["label"] == "model"]
    by_label = {
        label: ok[ok["label"] == label].set_index("ticker") for label in ("original", "point")
    }
    h = f"rmae_h{horizon}"
    horizons = sorted({1, horizon})
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
        }
        for name in BASELINE_CLASSES:
            if f"rmae_{name}_h1" in group:
                row[f"{name}_rmae_h1"] = group[f"rmae_{name}_h1"].mean()
        for name in FORECASTERS:
            for step in horizons:
                for metric in ("coverage90", "winkler90", "crps"):
                    column = f"{name}_{metric}_h{step}"
                    if column in group:
                        row[column] = group[column].mean()
            if f"{name}_kupiec90_h1" in group:
                row[f"{name}_kupiec90_h1"] = group[f"{name}_kupiec90_h1"].mean()
        for step in horizons:
            row.update(_strongest_anchor(row, step))
            column = f"model_winkler90_h{step}"
            if column in group:
                row[f"{column}_spread"] = group[column].max() - group[column].min()
        for label, other in by_label.items():
            for column in ("rmae_h1", h, "model_winkler90_h1", "model_static_winkler90_h1"):
                if column in other:
                    row[f"{label}_{column}"] = other[column].get(ticker, np.nan)
        table_rows.append(row)
    table = pd.DataFrame(table_rows)
    lines = _markdown_table(table, horizon)
    if not table.empty:
        lines.extend(_aims(table, horizon))
        lines.extend(_cost(frame))
    failed = frame[frame["status"] != "ok"]
    for row in failed.to_dict("records"):
        lines.append(f"\nfailed: {row['ticker']} ({row['label']}): {row.get('error')}")
    return table, "\n".join(lines)


def _markdown_table(table: pd.DataFrame, horizon: int) -> list[str]:
    """One row per ticker, then the medians: point scores, then Winkler scores at h=1 of
    every forecaster and the ticker's strongest anchor, then the model's and the strongest
    anchor's at ``horizon``."""
    from stock_lstm.evaluation.anchors import ANCHORS
    from stock_lstm.evaluation.intervals import FORECASTER_LABELS

    h = f"rmae_h{horizon}"
    anchor_names = [FORECASTER_LABELS[a] for a in ANCHORS]
    headers = [
        "ticker",
        "rMAE h=1 (seed spread)",
        f"rMAE h={horizon}",
        "DM p h=1",
        "90% coverage h=1",
        "Winkler h=1: model (seed spread)",
        "frozen at fit",
        "point model today",
        *anchor_names,
        "best anchor h=1",
        f"Winkler h={horizon}: model",
        f"best anchor h={horizon}",
        "CRPS h=1: model",
        "best anchor",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]

    def cells(row: dict[str, Any], spread: bool) -> list[str]:
        def w(column: str) -> str:
            return _fmt(row.get(column), 2)

        best = row.get("best_anchor_h1")
        best_far = row.get(f"best_anchor_h{horizon}")
        model = w("model_winkler90_h1")
        if spread:
            model += f" ({w('model_winkler90_h1_spread')})"
        return [
            f"{_fmt(row.get('rmae_h1'))}"
            + (f" ({_fmt(row.get('rmae_h1_spread'))})" if spread else ""),
            _fmt(row.get(h)),
            _fmt(row.get("dm_p_h1"), 2) if spread else "",
            _fmt(row.get("model_coverage90_h1")),
            model,
            w("model_static_winkler90_h1"),
            w("point_model_static_winkler90_h1"),
            *(w(f"{a}_winkler90_h1") for a in ANCHORS),
            f"{w('best_anchor_winkler90_h1')} {_short(best)}".strip(),
            w(f"model_winkler90_h{horizon}"),
            f"{w(f'best_anchor_winkler90_h{horizon}')} {_short(best_far)}".strip(),
            _fmt(row.get("model_crps_h1")),
            _fmt(row.get(f"{best}_crps_h1")) if isinstance(best, str) else "–",
        ]

    for row in table.to_dict("records"):
        lines.append("| " + " | ".join([str(row["ticker"]), *cells(row, True)]) + " |")
    if not table.empty:
        medians = {
            column: table[column].median()
            for column in table.columns
            if pd.api.types.is_numeric_dtype(table[column])
        }
        lines.append("| " + " | ".join(["**median**", *cells(medians, False)]) + " |")
    return lines


def _short(anchor: Any) -> str:
    """An anchor's name in brackets for a table cell (empty when there is none)."""
    return f"({anchor})" if isinstance(anchor, str) else ""


def _paired(first: pd.Series, second: pd.Series) -> Verdict:
    """``first`` against ``second`` across tickers (each ticker one pair), Wilcoxon-tested."""
    from stock_lstm.evaluation.verdicts import paired_verdict

    pairs = pd.concat([first, second], axis=1).dropna()
    return paired_verdict(pairs.iloc[:, 0].tolist(), pairs.iloc[:, 1].tolist())


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


#: The universal-model issue's aims: how far below the strongest anchor's mean Winkler
#: score the model's must be, at h=1 and at the last horizon.
AIM_BELOW_BEST_ANCHOR = {1: 0.03, 5: 0.02}


def strongest_anchor(table: pd.DataFrame, horizon: int) -> str | None:
    """The anchor with the lowest mean Winkler score over the tickers of ``table`` at
    ``horizon``: every claim of the model is against it, never a weaker one."""
    from stock_lstm.evaluation.anchors import ANCHORS

    means = {
        a: table[f"{a}_winkler90_h{horizon}"].mean()
        for a in ANCHORS
        if f"{a}_winkler90_h{horizon}" in table and table[f"{a}_winkler90_h{horizon}"].notna().any()
    }
    return min(means, key=means.__getitem__) if means else None


def _comparison(table: pd.DataFrame, first: str, other: str, what: str) -> str:
    """``first`` against ``other`` over the tickers: ratio of means, count, Wilcoxon p."""
    ratio = table[first].mean() / table[other].mean()
    direction = "lower" if ratio < 1 else "higher"
    lower = int((table[first] < table[other]).sum())
    tested = _paired(table[first], table[other])
    return (
        f"- {what}: {_fmt(table[first].mean(), 2)} vs {_fmt(table[other].mean(), 2)}, "
        f"{abs(1 - ratio) * 100:.1f}% {direction}: {tested.word}; lower on {lower} of "
        f"{len(table)} tickers (Wilcoxon signed-rank {tested.p_text()})"
    )


def _aims(table: pd.DataFrame, horizon: int = 5) -> list[str]:
    """The aims, as measured (never asserted: a measurement): coverage, the model's and the
    combination's Winkler scores against every anchor and the strongest, rMAE."""
    from stock_lstm.evaluation.anchors import ANCHORS
    from stock_lstm.evaluation.intervals import COMBINATIONS, FORECASTER_LABELS

    lines = [""]
    if "model_coverage90_h1" in table:
        coverage = table["model_coverage90_h1"]
        inside = int(coverage.between(0.86, 0.94).sum())
        lines.append(
            f"- 90% coverage at h=1 within 86-94%: {inside} of {len(table)} tickers "
            f"(range {_fmt(coverage.min())}-{_fmt(coverage.max())})"
        )
    for step in sorted({1, horizon}):
        model = f"model_winkler90_h{step}"
        if model not in table:
            continue
        strongest = strongest_anchor(table, step)
        if strongest is not None:
            aim = AIM_BELOW_BEST_ANCHOR.get(step)
            aim_text = f", aim: at least {aim:.0%} below" if aim else ""
            lines.append(
                _comparison(
                    table,
                    model,
                    f"{strongest}_winkler90_h{step}",
                    f"mean Winkler at h={step}, model vs the strongest anchor "
                    f"({FORECASTER_LABELS[strongest]}{aim_text})",
                )
            )
        for name in ANCHORS:
            other = f"{name}_winkler90_h{step}"
            if name != strongest and other in table and table[other].notna().any():
                lines.append(
                    _comparison(
                        table, model, other, f"h={step}, model vs {FORECASTER_LABELS[name]}"
                    )
                )
        for name in COMBINATIONS:
            combined = f"{name}_winkler90_h{step}"
            if combined not in table or strongest is None or table[combined].isna().all():
                continue
            label = FORECASTER_LABELS[name]
            lines.append(
                _comparison(
                    table,
                    combined,
                    f"{strongest}_winkler90_h{step}",
                    f"h={step}, {label} vs the strongest anchor",
                )
            )
            lines.append(_comparison(table, combined, model, f"h={step}, {label} vs model"))
    other = "point_model_static_winkler90_h1"
    if "model_winkler90_h1" in table and other in table and table[other].notna().any():
        lines.append(
            _comparison(
                table,
                "model_winkler90_h1",
                other,
                "h=1, model vs the point model's static intervals",
            )
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

    return TrainParams().replace(**(overrides or {})).to_dict()
