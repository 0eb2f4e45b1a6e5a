"""The answer a report opens with: a few sentences computed from the run, shown first.

Why: 03's verdict sat 2,700 px down, after the how-to, the parameter table and the loss
curves; MLflow's run page shows the metrics first. A notebook can only state its answer
once it has computed it, so the answer cell is the notebook's last and is tagged
``summary``; :func:`lead_with_summary` moves such cells to just after the title when the
report is rendered, so the HTML answers in its first screen while the notebook still reads
top to bottom in JupyterLab. The words "better", "worse" and "no difference" come from
``evaluation.verdicts``, never from a ratio.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from stock_lstm.evaluation.verdicts import point_verdict

if TYPE_CHECKING:
    from stock_lstm.evaluation.results import BacktestSummary

#: The cell tag of an answer cell.
SUMMARY_TAG = "summary"


def lead_with_summary(notebook: Any) -> None:
    """Move the cells tagged ``summary`` to just after the first (title) cell, in order."""
    cells = list(notebook.cells)
    tagged = [c for c in cells if SUMMARY_TAG in (c.get("metadata", {}).get("tags") or [])]
    if not tagged or not cells:
        return
    rest = [c for c in cells if c not in tagged]
    notebook.cells = rest[:1] + tagged + rest[1:]


def _pct(value: float | None) -> str:
    return f"{value:.0%}" if value is not None and math.isfinite(value) else "–"


def _num(value: float | None, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "–"


def training_answer(metrics: Any, registry_line: str) -> str:
    """03's answer: the test verdict against persistence, the interval beside the strongest
    anchor, and what the registry now serves."""
    from stock_lstm.evaluation.anchors import ANCHORS
    from stock_lstm.evaluation.intervals import FORECASTER_LABELS

    first = metrics.next_day
    parts = [registry_line + "."]
    if first is not None:
        tested = point_verdict(first.rmae, first.dm_p_value)
        parts.append(
            f"On the {first.n} test days the next-day forecast is "
            f"{tested.phrase('persistence')}, rMAE {_num(first.rmae, 3)}."
        )
    rows = metrics.intervals_h1
    model = rows.get("model")
    anchors = {n: rows[n].winkler for n in ANCHORS if n in rows and rows[n].winkler is not None}
    if model is not None and anchors:
        strongest = min(anchors, key=anchors.__getitem__)
        parts.append(
            f"Its 90% interval held {_pct(model.coverage)} of the closes, Winkler score "
            f"{_num(model.winkler)}% of the close against {_num(anchors[strongest])}% for "
            f"{FORECASTER_LABELS[strongest]}, the strongest anchor here (one test slice: a "
            "look; the backtest is the claim)."
        )
    return " ".join(parts)


def backtest_answer(summary: BacktestSummary) -> str:
    """05's answer: per scored horizon, the verdict against persistence, and the interval
    beside the strongest anchor."""
    from stock_lstm.evaluation.backtest import headline
    from stock_lstm.evaluation.intervals import FORECASTER_LABELS

    last = max((row.horizon for row in summary.horizons), default=1)
    steps = sorted({1, last})
    numbers = headline(summary, tuple(steps))
    clauses = []
    for h in steps:
        row = summary.at_horizon(h)
        rmae = row.rmae if row else None
        tested = point_verdict(rmae, row.dm_p_value if row else None)
        phrase = tested.phrase("persistence")
        clauses.append(f"at h={h} the model is {phrase}, rMAE {_num(rmae, 3)}")
    text = f"Over {summary.n_origins} walk-forward origins, " + "; ".join(clauses) + "."
    strongest = numbers.get("best_anchor_h1")
    if strongest and numbers.get("model_winkler90_h1") is not None:
        text += (
            f" At h=1 its 90% interval held {_pct(numbers.get('model_coverage90_h1'))} of the "
            f"closes, Winkler {_num(numbers.get('model_winkler90_h1'))}% of the close against "
            f"{_num(numbers.get('best_anchor_winkler90_h1'))}% for {FORECASTER_LABELS[strongest]},"
            " the strongest anchor on these origins."
        )
    return text


#: A last close older than this (calendar days) is said to be old in 04's answer.
STALE_CLOSE_DAYS = 7


def sync_answer(result: Any, status: Any, now: Any = None) -> str:
    """01's answer: what the cache holds now, where it came from, what was dropped."""
    from stock_lstm.clock import utc_now

    how = (
        "read from the cache (fresh, nothing downloaded)"
        if result.from_cache
        else f"{result.downloaded_rows:,} rows written from {result.source}"
        + (" (only the missing tail)" if result.incremental else "")
    )
    parts = [
        f"{result.ticker}: {status.rows:,} daily rows cached, {status.first_date} to "
        f"{status.last_date}; {how}."
    ]
    parts.append(
        f"{result.dropped_rows:,} rows dropped (see below)."
        if result.dropped_rows
        else "Nothing was dropped."
    )
    if result.stale:
        parts.append("The source failed: these are older cached rows (see the warning).")
    if status.last_date is not None:
        age = ((now or utc_now()).date() - status.last_date).days
        if age > STALE_CLOSE_DAYS:
            parts.append(f"The last close is {age:,} days old.")
    return " ".join(parts)


def eda_answer(returns: dict[str, Any], returns_acf: Any, squared_acf: Any, gaps: Any) -> str:
    """02's answer: the return distribution, memory in returns and in their size, gaps."""

    def outside(frame: Any) -> int:
        return int(((frame["acf"] < frame["lower"]) | (frame["acf"] > frame["upper"])).sum())

    lags = len(returns_acf)
    expected = max(1, round(0.05 * lags))
    parts = [
        f"{returns['n']:,} daily log-returns: standard deviation {returns['std']:.2%}, excess "
        f"kurtosis {_num(returns['excess_kurtosis'], 1)}"
        + (
            " (fat tails: big moves are more common than a normal gives)."
            if returns["excess_kurtosis"] > 1
            else "."
        ),
        f"{outside(returns_acf)} of {lags} return lags fall outside the robust band (about "
        f"{expected} by chance), {outside(squared_acf)} of {lags} squared-return lags outside "
        "theirs"
        + (
            ": the size of moves clusters, their direction barely does."
            if outside(squared_acf) > 2 * expected
            else "."
        ),
        f"{len(gaps)} calendar finding(s)." if len(gaps) else "No calendar gaps.",
    ]
    return " ".join(parts)


def forecast_answer(forecast: Any, record: Any, trained: Any = None, now: Any = None) -> str:
    """04's answer: the last day's forecast and its interval, which version made it
    (``record``, the active one), whether it is the version this run trained (``trained``,
    its registry record, in a pipeline), how its interval is served, and an old last close."""
    from stock_lstm.clock import utc_now

    last = forecast.predictions[-1]
    level = getattr(forecast, "interval_level", None)
    band = (
        f", {level:.0%} interval {last.lower:,.2f} to {last.upper:,.2f}"
        if level and last.lower is not None and last.upper is not None
        else ""
    )
    parts = [
        f"{record.ticker} on {last.date}: {last.close:,.2f}{band} (from the last close "
        f"{forecast.last_close:,.2f} on {forecast.last_date}, {len(forecast.predictions)} "
        f"trading days ahead), forecast by {forecast.version_id}, {record.ticker}'s active "
        f"model (trained on {record.first_date}..{record.last_date})."
    ]
    age = ((now or utc_now()).date() - forecast.last_date).days
    if age > STALE_CLOSE_DAYS:
        parts.append(
            f"The last close is {age:,} days old: the source has nothing newer, so this "
            "forecasts days that may be long past."
        )
    if trained is not None and trained.version_id != forecast.version_id:
        gate = trained.metrics.gate
        why = f"{gate.status}: {gate.reason}" if gate else "no gate recorded"
        parts.append(
            f"Not this run's model: this run trained {trained.version_id}, which was "
            f"registered inactive (gate {why}), so the version that already served forecasts."
        )
    elif trained is not None:
        parts.append("It is the model this run trained.")
    if forecast.combined_with:
        from stock_lstm.evaluation.intervals import FORECASTER_LABELS

        names = dict.fromkeys(FORECASTER_LABELS.get(n, n) for n in forecast.combined_with)
        parts.append(
            f"Each day's interval averages the model's with {' / '.join(names)} (the serving "
            "rule in docs/evaluation.md)."
        )
    return " ".join(parts)


__all__ = [
    "SUMMARY_TAG",
    "backtest_answer",
    "eda_answer",
    "forecast_answer",
    "lead_with_summary",
    "sync_answer",
    "training_answer",
]
