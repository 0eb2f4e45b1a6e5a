"""Two or more runs side by side: parameters, point metrics per horizon and interval scores,
with the differences a test confirms marked (``stock-lstm compare RUN...``).

Why a test decides here too: two trainings of the same ticker that differ only by their
seed routinely differ by 1-2% in MAE, which is noise. A difference is marked "better" or
"worse" only when the Diebold-Mariano test of the two runs' errors on the *same target
dates* says so (``evaluation.verdicts``); runs without shared dates (other tickers, other
test slices) are shown side by side and said to be untested, never ranked.

The per-date forecasts a test needs are ``backtest.csv`` (backtest runs) and
``forecasts.csv`` (train runs: the test slice's next-day forecasts, written by notebook 03
through :func:`write_test_forecasts`).
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stock_lstm.errors import InvalidParameterError
from stock_lstm.evaluation.results import BacktestSummary, intervals_at
from stock_lstm.evaluation.verdicts import Verdict, point_verdict, verdict
from stock_lstm.models.records import HorizonScores, IntervalScores, TrainingMetrics
from stock_lstm.pipeline.notebook import readable

#: The per-date forecasts of a train run (beside its report).
FORECASTS_FILE = "forecasts.csv"
#: Columns both per-date files share (``backtest.csv`` has more).
FORECAST_COLUMNS = ("target_date", "horizon", "actual", "model", "persistence", "lower", "upper")
#: Horizons the comparison shows (when the runs have them).
COMPARED_HORIZONS = (1, 5, 10, 20, 30)
#: Fewer shared dates than this and a difference is not tested.
MIN_SHARED_DATES = 20
COMPARE_DIR = "compare"
#: Parameters that name the run itself, not how it forecasts: always different, never shown.
PER_RUN_PARAMETERS = frozenset({"job_id", "report_path", "output_dir", "trained_version"})


@dataclass
class ComparedRun:
    """What a comparison shows of one run, read from its folder."""

    run_id: str
    ticker: str
    folder: Path
    started: str
    status: str
    stages: list[str]
    #: (stage, rendered HTML file in the run folder) of the stages that have a report.
    reports: list[tuple[str, str]]
    version_id: str | None
    parameters: dict[str, Any]
    horizons: dict[int, HorizonScores]
    intervals: dict[str, IntervalScores]
    interval_level: float
    forecasts: pd.DataFrame | None = field(default=None, repr=False)


def write_test_forecasts(
    evaluation: Any, report_path: str | os.PathLike[str] | None
) -> Path | None:
    """Write a train run's next-day test forecasts beside its report (``forecasts.csv``),
    so ``compare`` can test it against another run on the same dates; ``None`` (nothing
    written) outside a pipeline run."""
    if not report_path:
        return None
    frame = pd.DataFrame(
        {
            "target_date": pd.DatetimeIndex(evaluation.dates).strftime("%Y-%m-%d"),
            "horizon": 1,
            "actual": evaluation.actual,
            "model": evaluation.predicted,
            "persistence": evaluation.persistence,
            "lower": evaluation.lower[:, 0] if evaluation.lower is not None else np.nan,
            "upper": evaluation.upper[:, 0] if evaluation.upper is not None else np.nan,
        }
    )
    path = Path(report_path).parent / FORECASTS_FILE
    frame.to_csv(path, index=False, float_format="%.6f")
    return path


def find_run(reports_dir: Path, reference: str) -> Path:
    """The folder of ``TICKER/RUN_ID`` (as the index's checkboxes name runs) or of a plain
    ``RUN_ID`` that holds one ticker; both parts are checked before they are part of a path
    (a batch's run id holds every ticker of the batch, so it alone can be ambiguous)."""
    from stock_lstm.pipeline.reports import RUN_DIR_NAME, RUN_MANIFEST
    from stock_lstm.tickers import validate_ticker

    ticker, _, run_id = reference.rpartition("/")
    if not RUN_DIR_NAME.match(run_id):
        raise InvalidParameterError(
            f"{reference!r} is not a run (like KO/20261207_062333_af9ad0); "
            "tick the runs in reports/index.html and it writes the command"
        )
    pattern = f"{validate_ticker(ticker)}/{run_id}" if ticker else f"*/{run_id}"
    found = sorted(reports_dir.glob(f"{pattern}/{RUN_MANIFEST}"))
    if not found:
        raise InvalidParameterError(
            f"no run {reference} under {reports_dir}; the index lists the runs there"
        )
    if len(found) > 1:
        tickers = ", ".join(path.parent.parent.name for path in found[:5])
        raise InvalidParameterError(
            f"run {run_id} holds {len(found)} tickers ({tickers}...): say which, e.g. "
            f"{found[0].parent.parent.name}/{run_id}"
        )
    return found[0].parent


def load_run(folder: Path) -> ComparedRun:
    """A run's manifest, scores and per-date forecasts."""
    from stock_lstm.pipeline.reports import RUN_MANIFEST

    manifest = json.loads((folder / RUN_MANIFEST).read_text(encoding="utf-8"))
    backtest = BacktestSummary.read(folder / "summary.json")
    horizons: dict[int, HorizonScores] = {}
    intervals: dict[str, IntervalScores] = {}
    level = 0.9
    parameters: dict[str, Any] = dict(manifest.get("parameters") or {})
    if manifest.get("metrics"):
        metrics = TrainingMetrics.from_json(manifest["metrics"])
        horizons = {row.horizon: row for row in metrics.horizons}
        intervals = dict(metrics.intervals_h1)
        level = metrics.interval_level or level
    elif backtest:
        horizons, intervals, level = _backtest_scores(backtest)
        parameters = {**backtest.params, **parameters}
    forecasts = _read_forecasts(folder)
    return ComparedRun(
        run_id=str(manifest.get("run_id") or folder.name),
        ticker=str(manifest.get("ticker") or folder.parent.name),
        folder=folder,
        started=str(manifest.get("started_at", ""))[:16].replace("T", " "),
        status=str(manifest.get("status", "?")),
        stages=[str(stage.get("stage")) for stage in manifest.get("stages", [])],
        reports=[
            (str(stage.get("stage")), str(stage["html"]))
            for stage in manifest.get("stages", [])
            if stage.get("html")
        ],
        version_id=manifest.get("version_id"),
        parameters=parameters,
        horizons=horizons,
        intervals=intervals,
        interval_level=level,
        forecasts=forecasts,
    )


def _backtest_scores(
    summary: BacktestSummary,
) -> tuple[dict[int, HorizonScores], dict[str, IntervalScores], float]:
    """A backtest's summary as the typed rows a train run's metrics have."""
    level = summary.interval_level
    horizons = {row.horizon: row for row in summary.horizons}
    return horizons, intervals_at(summary.probabilistic, level), level


def _read_forecasts(folder: Path) -> pd.DataFrame | None:
    for name in ("backtest.csv", FORECASTS_FILE):
        path = folder / name
        if not path.exists():
            continue
        try:
            frame = pd.read_csv(path, usecols=list(FORECAST_COLUMNS))
        except (OSError, ValueError):
            return None
        return frame.dropna(subset=["actual", "model"])
    return None


@dataclass(frozen=True)
class Difference:
    """One run's scores against the first run's on the dates both forecast."""

    point: Verdict
    interval: Verdict
    shared: int


def untestable(first: ComparedRun, other: ComparedRun) -> str | None:
    """Why ``other`` cannot be tested against ``first`` at all (``None``: it can)."""
    if first.ticker != other.ticker:
        return f"{other.ticker} is another ticker than {first.ticker}"
    missing = [run.run_id for run in (first, other) if run.forecasts is None]
    if missing:
        return f"{' and '.join(missing)} kept no per-date forecasts"
    return None


def compare_with_first(first: ComparedRun, other: ComparedRun, horizon: int) -> Difference | None:
    """The paired tests of ``other`` against ``first`` at ``horizon`` (``None``: not
    testable, e.g. other tickers or fewer than :data:`MIN_SHARED_DATES` shared dates)."""
    from stock_lstm.evaluation.significance import diebold_mariano

    if untestable(first, other) or first.forecasts is None or other.forecasts is None:
        return None
    a = first.forecasts[first.forecasts["horizon"] == horizon]
    b = other.forecasts[other.forecasts["horizon"] == horizon]
    # A backtest has one row per (origin, horizon): its target dates are unique per horizon.
    both = a.merge(b, on="target_date", suffixes=("_a", "_b"))
    if len(both) < MIN_SHARED_DATES:
        return None
    error_a = (both["actual_a"] - both["model_a"]).to_numpy(float)
    error_b = (both["actual_b"] - both["model_b"]).to_numpy(float)
    dm = diebold_mariano(error_b, error_a, horizon)
    ratio = float(np.mean(np.abs(error_b)) / np.mean(np.abs(error_a)))
    point = verdict(ratio, dm.p_value, test="Diebold-Mariano")
    interval = Verdict("no difference", None, None, "Diebold-Mariano")
    winkler_a = _winkler(both, "_a", first.interval_level)
    winkler_b = _winkler(both, "_b", other.interval_level)
    valid = np.isfinite(winkler_a) & np.isfinite(winkler_b)
    if first.interval_level == other.interval_level and valid.sum() >= MIN_SHARED_DATES:
        test = diebold_mariano(winkler_b[valid], winkler_a[valid], horizon)
        interval = verdict(
            float(winkler_b[valid].mean() / winkler_a[valid].mean()),
            test.p_value,
            test="Diebold-Mariano",
        )
    return Difference(point=point, interval=interval, shared=len(both))


def _winkler(both: pd.DataFrame, suffix: str, level: float) -> np.ndarray:
    """Per-date interval (Winkler) scores in percent of the last close (scoringrules)."""
    import scoringrules as sr

    last = both[f"persistence{suffix}"].to_numpy(float)
    y = 100.0 * both[f"actual{suffix}"].to_numpy(float) / last
    low = 100.0 * both[f"lower{suffix}"].to_numpy(float) / last
    high = 100.0 * both[f"upper{suffix}"].to_numpy(float) / last
    return np.asarray(sr.interval_score(y, low, high, 1.0 - level, backend="numpy"), float)


def comparison_path(reports_dir: Path, runs: list[ComparedRun]) -> Path:
    """Where ``compare`` writes: ``reports/compare/<TICKER>-<run>__<TICKER>-<run>.html``
    (the index's checkbox bar names the same file)."""
    names = [f"{run.ticker}-{run.run_id}" for run in runs]
    return reports_dir / COMPARE_DIR / ("__".join(names) + ".html")


def registered_parameters(runs: list[ComparedRun], database_url: str | None) -> None:
    """Give runs that registered a model the full parameters their registry row records (a
    run's manifest holds only the ones it was given)."""
    if not database_url or not any(run.version_id for run in runs):
        return
    from stock_lstm.db import Database
    from stock_lstm.errors import ModelNotFoundError
    from stock_lstm.models.registry import get_model

    db = Database(database_url)
    try:
        for run in runs:
            if not run.version_id:
                continue
            try:
                recorded = get_model(db, run.version_id).params
            except ModelNotFoundError:  # deleted since: the manifest's values stay
                continue
            run.parameters = {**recorded, **run.parameters}
    finally:
        db.dispose()


def build_comparison(
    reports_dir: Path, run_ids: list[str], database_url: str | None = None
) -> Path:
    """Render the comparison of ``run_ids`` (the first is the reference) to its page."""
    if len(run_ids) < 2:
        raise InvalidParameterError("compare needs two or more run ids, e.g. compare A B")
    if len(set(run_ids)) != len(run_ids):
        raise InvalidParameterError("each run id once: the first is the reference")
    runs = [load_run(find_run(reports_dir, run_id)) for run_id in run_ids]
    if len({run.folder for run in runs}) != len(runs):
        raise InvalidParameterError("each run once: the first is the reference")
    registered_parameters(runs, database_url)
    path = comparison_path(reports_dir, runs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_comparison(runs, path.parent), encoding="utf-8")
    os.replace(tmp, path)
    return path


# -- the page ---------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    """Every number of the page to the same ``digits`` decimals, so columns line up."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def _cell_verdict(tested: Verdict | None) -> str:
    if tested is None:
        return ""
    return f"<br><small class='{tested.css}'>{html.escape(tested.short())}</small>"


def render_comparison(runs: list[ComparedRun], page_dir: Path) -> str:
    """The comparison page: the answer first, then runs, parameters, metrics, intervals."""
    from stock_lstm.pipeline.reports import REPORT_CSP

    first = runs[0]
    horizons = [h for h in COMPARED_HORIZONS if any(h in run.horizons for run in runs)]
    tests = {
        (run.run_id, h): compare_with_first(first, run, h) for run in runs[1:] for h in horizons
    }
    head = "".join(
        f"<th>{html.escape(run.run_id)}<br><small>{html.escape(run.ticker)} · "
        f"{html.escape(' + '.join(run.stages) or '–')}</small></th>"
        for run in runs
    )
    sections = [
        f"<h1>Comparing {len(runs)} runs</h1>",
        f"<p class='answer'><b>In short.</b> {html.escape(_answer(first, runs[1:], tests))}</p>",
        _runs_table(runs, page_dir, head),
        _parameters_table(runs, head),
        _metrics_table(runs, horizons, tests, head),
        _intervals_table(runs, tests, head),
    ]
    return _PAGE.format(csp=REPORT_CSP, body="\n".join(sections))


def _answer(
    first: ComparedRun, others: list[ComparedRun], tests: dict[tuple[str, int], Difference | None]
) -> str:
    parts = []
    for run in others:
        tested = tests.get((run.run_id, 1))
        if tested is None:
            why = untestable(first, run) or (
                f"fewer than {MIN_SHARED_DATES} of their next-day forecasts share a date"
            )
            parts.append(f"{run.run_id} is not tested against {first.run_id} ({why})")
            continue
        parts.append(
            f"at h=1 the errors of {run.run_id} are "
            f"{tested.point.phrase(first.run_id)} over {tested.shared} shared dates, and its "
            f"interval scores are {tested.interval.phrase(first.run_id)}"
        )
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + ". The first run is the reference of every test."


def _runs_table(runs: list[ComparedRun], page_dir: Path, head: str) -> str:
    rows: dict[str, list[str]] = {
        "started (UTC)": [],
        "status": [],
        "reports": [],
        "model version": [],
    }
    for run in runs:
        rows["started (UTC)"].append(html.escape(run.started))
        rows["status"].append(
            f"<span class='{html.escape(run.status)}'>{html.escape(run.status)}</span>"
        )
        links = [
            f"<a href='{html.escape(os.path.relpath(run.folder / name, page_dir))}'>"
            f"{html.escape(stage)}</a>"
            for stage, name in run.reports
        ]
        rows["reports"].append(" · ".join(links) or "–")
        rows["model version"].append(html.escape(run.version_id or "–"))
    return _table("Runs", head, [(label, cells, False) for label, cells in rows.items()])


def _parameters_table(runs: list[ComparedRun], head: str) -> str:
    names = sorted({name for run in runs for name in run.parameters} - PER_RUN_PARAMETERS)
    rows = []
    for name in names:
        values = [readable(run.parameters.get(name)) for run in runs]
        # A run that does not record a parameter (a failed one) does not make it differ.
        given = {value for value, run in zip(values, runs, strict=True) if name in run.parameters}
        rows.append((name.replace("_", " "), [html.escape(v) for v in values], len(given) > 1))
    note = (
        "<p>A run that registered a model shows every parameter its registry row records; "
        "any other shows the ones it was given (the rest were the defaults of its day). "
        "Rows that differ are highlighted.</p>"
    )
    return _table("Parameters", head, rows, note=note)


def _metrics_table(
    runs: list[ComparedRun],
    horizons: list[int],
    tests: dict[tuple[str, int], Difference | None],
    head: str,
) -> str:
    rows = []
    for h in horizons:
        mae, rmae = [], []
        for index, run in enumerate(runs):
            row = run.horizons.get(h)
            against_first = tests.get((run.run_id, h)) if index else None
            model_mae = row.model.get("mae") if row else None
            if against_first is not None:
                mark = _cell_verdict(against_first.point)
            elif index and model_mae is not None:
                mark = "<br><small>not tested</small>"  # e.g. a train run keeps h=1 only
            else:
                mark = ""
            mae.append(_num(model_mae) + mark)
            if row is None:
                rmae.append("–")
                continue
            tested = point_verdict(row.rmae, row.dm_p_value)
            rmae.append(f"{_num(row.rmae)}{_cell_verdict(tested)}")
        rows.append((f"h={h} · MAE (vs first run)", mae, False))
        rows.append((f"h={h} · rMAE (vs persistence)", rmae, False))
    note = (
        "<p>MAE in the ticker's currency per share; under it, the test of this run's errors "
        "against the first run's on the dates both forecast. rMAE is MAE / persistence MAE "
        'on the run\'s own dates, with its Diebold-Mariano test. "better" and "worse" '
        "only when p &lt; 0.05.</p>"
    )
    return _table("Point forecasts per horizon", head, rows, note=note)


def _intervals_table(
    runs: list[ComparedRun], tests: dict[tuple[str, int], Difference | None], head: str
) -> str:
    from stock_lstm.evaluation.intervals import FORECASTER_LABELS

    coverage, winkler, crps, anchor = [], [], [], []
    for index, run in enumerate(runs):
        served = run.intervals.get("model")
        against_first = tests.get((run.run_id, 1)) if index else None
        coverage.append(_num(served.coverage if served else None, 3))
        winkler.append(
            _num(served.winkler if served else None)
            + _cell_verdict(against_first.interval if against_first else None)
        )
        crps.append(_num(served.crps if served else None))
        anchors = {
            name: score.winkler
            for name, score in run.intervals.items()
            if not name.startswith("model") and score.winkler is not None
        }
        best = min(anchors, key=anchors.__getitem__) if anchors else None
        label = FORECASTER_LABELS.get(best, best) if best else ""
        anchor.append(f"{html.escape(label)}: {_num(anchors[best])}" if best else "–")
    rows = [
        ("coverage", coverage, False),
        ("Winkler score (vs first run)", winkler, False),
        ("CRPS", crps, False),
        ("best anchor's Winkler", anchor, False),
    ]
    note = (
        "<p>The served next-day interval at each run's level (90% unless set): coverage "
        "should be near the level; Winkler (width plus penalties for misses) and CRPS are in "
        "percent of the last close, lower is better.</p>"
    )
    return _table("Intervals at h=1", head, rows, note=note)


def _table(
    title: str, head: str, rows: list[tuple[str, list[str], bool]], *, note: str = ""
) -> str:
    body = "\n".join(
        f"<tr{' class=diff' if differs else ''}><th scope=row>{html.escape(label)}</th>"
        + "".join(f"<td>{cell}</td>" for cell in cells)
        + "</tr>"
        for label, cells, differs in rows
    )
    empty = "<tr><td>–</td></tr>" if not rows else ""
    return (
        f"<h2>{html.escape(title)}</h2>{note}<table><thead><tr><th></th>{head}</tr></thead>"
        f"<tbody>{body or empty}</tbody></table>"
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stock-lstm: runs compared</title>
<meta http-equiv="Content-Security-Policy" content="{csp}">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 80rem; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .35rem .7rem; text-align: left;
  vertical-align: top; }}
thead th {{ background: #f4f4f4; }} tbody th {{ font-weight: normal; color: #444; }}
tr.diff {{ background: #fff6d6; }} .better {{ color: #1a7f37; }} .worse {{ color: #b35900; }}
.same {{ color: #555; }} .failed {{ color: #c62828; font-weight: bold; }}
p.answer {{ font-size: 1.05rem; background: #f4f8ff; padding: .8rem 1rem; }}
</style></head><body>
{body}
</body></html>
"""
