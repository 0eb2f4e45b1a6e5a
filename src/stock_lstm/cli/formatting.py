"""The tables and headlines the commands print for a model's metrics and a backtest's summary
(``train``, ``models``, ``run``, ``backtest``): plain functions of a version's typed metrics
and a backtest's typed summary, no I/O."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from stock_lstm.models.records import TrainingMetrics

if TYPE_CHECKING:
    from stock_lstm.evaluation.results import BacktestSummary


def format_metrics_table(metrics: TrainingMetrics) -> str:
    """Model beside persistence at h=1, one row per point metric, with the ratio model /
    persistence (every metric of ``evaluation.metrics.POINT_METRICS`` that was recorded),
    then the Diebold-Mariano test's verdict in ``evaluation.verdicts``' words."""
    from stock_lstm.evaluation.metrics import POINT_METRICS

    first = metrics.next_day
    lines = [f"{'metric':<8}{'model':>12}{'persistence':>14}{'ratio':>8}"]
    for name, metric in POINT_METRICS.items():
        model_value = first.model.get(name) if first else None
        base_value = first.persistence.get(name) if first else None
        if model_value is None or base_value is None:
            continue
        ratio = model_value / base_value if base_value else float("nan")
        unit = f" {metric.unit}" if metric.unit != "price" else ""
        lines.append(f"{name:<8}{model_value:>12.4f}{base_value:>14.4f}{ratio:>8.3f}{unit}")
    if first is not None:
        from stock_lstm.evaluation.verdicts import point_verdict

        tested = point_verdict(first.rmae, first.dm_p_value)
        lines.append(f"the model is {tested.phrase('persistence')} ({first.n} test days)")
    return "\n".join(lines)


def _interval_labels() -> dict[str, str]:
    """Every interval forecaster's readable name, in table order (one declaration, in
    ``evaluation.intervals``)."""
    from stock_lstm.evaluation.intervals import FORECASTER_LABELS

    return FORECASTER_LABELS


def format_interval_table(metrics: TrainingMetrics) -> str:
    """The test slice's intervals at h=1 beside the volatility anchors (empty if absent)."""
    rows = metrics.intervals_h1
    if not rows:
        return ""
    level = metrics.interval_level or 0.9
    lines = [
        f"{level:.0%} interval at h=1, test set (Winkler and CRPS in % of the close; lower is "
        "better):",
        f"{'':<30}{'coverage':>9}{'Winkler':>9}{'CRPS':>8}",
    ]
    from stock_lstm.evaluation.anchors import ANCHORS

    anchors = {n: rows[n].winkler for n in ANCHORS if n in rows and rows[n].winkler is not None}
    strongest = min(anchors, key=anchors.__getitem__) if anchors else None
    for name, label in _interval_labels().items():
        row = rows.get(name)
        if row is None:
            continue
        lines.append(
            f"{label:<30}{_number(row.coverage, 3):>9}{_number(row.winkler, 2):>9}"
            f"{_number(row.crps, 3):>8}{STRONGEST_MARK if name == strongest else ''}"
        )
    return "\n".join(lines)


#: Marks the anchor with the lowest Winkler score in a printed interval table.
STRONGEST_MARK = "  <- strongest anchor"


def format_backtest_headline(summary: BacktestSummary) -> list[str]:
    """What ``make backtest`` prints: rMAE by horizon beside persistence, each with the
    Diebold-Mariano test's word and p-value, then the intervals."""
    from stock_lstm.evaluation.verdicts import point_verdict

    lines = [
        f"backtest: {summary.n_origins} origins {summary.first_origin}.."
        f"{summary.last_origin}, {summary.fits} fit(s); rMAE (model MAE / "
        "persistence MAE; below 1 is lower) by horizon, and the Diebold-Mariano test of the "
        "difference:",
        *(
            f"  h={row.horizon}: {_number(row.rmae, 3)}  "
            f"{point_verdict(row.rmae, row.dm_p_value).short()}"
            for row in summary.horizons
        ),
    ]
    intervals = format_backtest_intervals(summary)
    return [*lines, intervals] if intervals else lines


def format_backtest_points(summary: BacktestSummary) -> str:
    """Notebook 05's point table (``BacktestSummary.point_table``: every recorded metric of
    ``evaluation.metrics.POINT_METRICS``) as the CLI prints it: the model and persistence per
    metric, then the ratios, the DM p-value, direction and coverage (the other baselines' own
    errors and rMAE's band stay in the notebook, for width)."""
    from stock_lstm.evaluation.baselines import BASELINE_CLASSES

    narrow = tuple(f"{name} " for name in BASELINE_CLASSES if name != "persistence")
    table = summary.point_table()
    table = table[[c for c in table.columns if not c.startswith((*narrow, "rMAE 95%"))]]
    table = table.rename(columns=_short_header)
    table.index.name = "h"
    digits = {c: 4 if c.startswith(("model ", "persist ")) else 3 for c in table.columns}
    formatters = {c: (lambda v, d=d: _number(v, d)) for c, d in digits.items()}
    return str(table.to_string(formatters=formatters, na_rep="-"))


def _short_header(column: str) -> str:
    baseline = re.fullmatch(r"rMAE \((\w+)\)", column)
    if column not in _SHORT_HEADERS and baseline:
        return f"{baseline.group(1)} rMAE"
    return _SHORT_HEADERS.get(column, column.replace("persistence", "persist"))


#: Terminal-width names of the point table's columns (the notebook keeps the long ones).
_SHORT_HEADERS = {
    "rMAE (model)": "rMAE",
    "DM p-value": "DM p",
    "direction hit rate": "direction",
}


def format_backtest_intervals(summary: BacktestSummary, level: float = 0.9) -> str:
    """A backtest's intervals by forecaster at h=1 and at its last horizon."""
    from stock_lstm.evaluation.intervals import best_anchor
    from stock_lstm.evaluation.results import scores_at

    probabilistic = summary.probabilistic
    if not probabilistic:
        return ""
    horizons = sorted({1, len(next(iter(probabilistic.values())))})
    width = max(len(label) for label in _interval_labels().values()) + 2
    lines = [
        f"{level:.0%} intervals (Winkler and CRPS in % of the close; lower is better):",
        f"{'':<{width}}{'h':>3}{'coverage':>9}{'Winkler':>9}{'CRPS':>8}{'Kupiec p':>10}",
    ]
    strongest = {h: best_anchor(probabilistic, h, level) for h in horizons}
    for name, label in _interval_labels().items():
        for h in horizons:
            row = scores_at(probabilistic, name, h)
            if row is None:
                continue
            scores = row.at(level)
            lines.append(
                f"{label if h == horizons[0] else '':<{width}}{h:>3}"
                f"{_number(scores.coverage, 3):>9}{_number(scores.winkler, 2):>9}"
                f"{_number(row.crps, 3):>8}{_number(scores.kupiec_p, 3):>10}"
                f"{STRONGEST_MARK if name == strongest[h] else ''}"
            )
    return "\n".join(lines)


def _number(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def combination_note(combined_with: list[str]) -> str:
    """One line saying which anchor each stretch of days' interval averages with."""
    from stock_lstm.evaluation.intervals import FORECASTER_LABELS

    stretches: list[str] = []
    start = 0
    for end in range(1, len(combined_with) + 1):
        if end == len(combined_with) or combined_with[end] != combined_with[start]:
            days = f"day {start + 1}" if end - start == 1 else f"days {start + 1}-{end}"
            stretches.append(f"{days}: {FORECASTER_LABELS.get(combined_with[start])}")
            start = end
    return (
        "intervals: the model's averaged with the anchor strongest on its test slice ("
        + "; ".join(stretches)
        + ")"
    )
