"""``stock-lstm run STAGE... --tickers A,B,C``: the runner for many tickers, one Dask task each.

Every ticker of a batch shares one ``run_id``, so its reports land in
``reports/<TICKER>/<run_id>/`` as a single-ticker run's do. A ticker's train stage records its
progress in a training job whose id is derived from ``(run_id, ticker)``
(``training_job_id``): a task that runs again (Dask re-runs it when its worker died) finds
that job completed and returns its model instead of training a second one, and the registry
refuses a second model for one job anyway (``register_model(job_id=...)``). Re-running a
batch with the same ``--run-id`` therefore trains only the tickers that have no model from
it yet.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stock_lstm.cluster import (
    settings_environment,
    settings_from_dict,
    worker_name,
    worker_settings,
)
from stock_lstm.config import Settings, temporary_environment
from stock_lstm.errors import InvalidParameterError, InvalidTickerError, StockLSTMError
from stock_lstm.evaluation.results import BacktestSummary
from stock_lstm.models.records import TrainingMetrics
from stock_lstm.pipeline.reports import RUN_MANIFEST, write_manifest
from stock_lstm.pipeline.run_index import build_index
from stock_lstm.pipeline.stages import (
    REGISTERING_STAGES,
    STAGES,
    default_notebooks_dir,
    resolve_stages,
)
from stock_lstm.tickers import ticker_file_stem, validate_ticker

if TYPE_CHECKING:
    from stock_lstm.cluster import Executor

#: Namespace of the job ids derived from (run_id, ticker); any fixed UUID would do.
_JOB_NAMESPACE = uuid.UUID("6f1d7c1e-3a52-4b8e-9a51-2f0c6f3b9d10")
#: Parameters the batch sets per ticker itself.
BATCH_PARAMETERS = ("job_id",)


def training_job_id(run_id: str, ticker: str) -> str:
    """The training job of ``ticker`` in batch ``run_id``: the same on every attempt."""
    return uuid.uuid5(_JOB_NAMESPACE, f"{run_id}/{ticker}").hex


def parse_tickers(
    text: str | None = None, file: Path | None = None, csv_dir: Path | None = None
) -> list[str]:
    """Tickers from ``A,B,C``, a file (one per line, ``#`` starts a comment) and/or every
    ``<TICKER>.csv`` of ``csv_dir`` (sorted), validated, upper-cased and de-duplicated in
    the order given."""
    names: list[str] = []
    if text:
        names.extend(part for part in text.split(","))
    if file is not None:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidParameterError(f"cannot read --tickers-file {file}: {exc}") from exc
        names.extend(line.split("#", 1)[0] for line in lines)
    if csv_dir is not None:
        if not Path(csv_dir).is_dir():
            raise InvalidParameterError(
                f"--csv-dir {csv_dir} is not a folder: give a folder of <TICKER>.csv files"
            )
        for path in sorted(Path(csv_dir).glob("*.csv"), key=lambda p: p.stem.upper()):
            try:
                validate_ticker(path.stem)
            except InvalidTickerError:
                raise InvalidParameterError(
                    f"{path} is not named like a ticker (e.g. AAPL.csv): rename or move it"
                ) from None
            names.append(path.stem)
    tickers: list[str] = []
    for name in names:
        if not name.strip():
            continue
        ticker = validate_ticker(name)
        if ticker not in tickers:
            tickers.append(ticker)
    if not tickers:
        raise InvalidParameterError(
            "no tickers given: --tickers AAPL,MSFT, --tickers-file FILE (one per line) or "
            "--csv-dir DIR (every <TICKER>.csv)"
        )
    return tickers


def _attempt_run_id(reports_dir: Path, ticker: str, run_id: str) -> str:
    """``run_id``, or ``run_id-attemptN`` when an earlier attempt left its folder behind.

    A folder still marked ``running`` belonged to an attempt whose worker died: it is marked
    failed, pointing at the new attempt, so the index does not show it running forever.
    """
    folder = reports_dir / ticker_file_stem(ticker)
    if not (folder / run_id).exists():
        return run_id
    attempt = 2
    while (folder / f"{run_id}-attempt{attempt}").exists():
        attempt += 1
    chosen = f"{run_id}-attempt{attempt}"
    previous = folder / (run_id if attempt == 2 else f"{run_id}-attempt{attempt - 1}")
    manifest_path = previous / RUN_MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return chosen
    if manifest.get("status") == "running":
        manifest["status"] = "failed"
        manifest["error"] = f"the worker running this attempt died; retried as {chosen}"
        write_manifest(previous, manifest)
    return chosen


def _completed_model(settings: Settings, job_id: str) -> dict[str, Any] | None:
    """The model an earlier attempt of ``job_id`` registered, as a row, or None.

    An attempt killed after its notebook registered the model but before its runner marked
    the job completed left the job running (then failed, once its dead owner was noticed)
    with a model that serves: this retry completes it, since the training did finish.
    """
    from stock_lstm.db import Database
    from stock_lstm.errors import JobNotFoundError
    from stock_lstm.models import jobs
    from stock_lstm.models.registry import get_model

    db = Database(settings.database_url, busy_timeout_seconds=settings.sqlite_busy_timeout_seconds)
    try:
        try:
            job = jobs.get_job(db, job_id)
        except JobNotFoundError:
            return None
        if not job.version_id:
            return None
        record = get_model(db, job.version_id)
        if job.status != jobs.COMPLETED:
            jobs.mark_completed(db, job_id, record.version_id)
        return {
            "version_id": record.version_id,
            "active": record.is_active,
            "metrics": record.metrics.to_json(),
            "report": record.report_path,
        }
    finally:
        db.dispose()


def _score(metrics: Mapping[str, Any] | None, run_dir: Path | None) -> dict[str, Any]:
    """The numbers a summary row shows: test rMAE at h=1 (test MAE / persistence MAE) and
    the gate for a training, else the backtest's rMAE at h=1 when one ran."""
    if metrics:
        recorded = TrainingMetrics.from_json(metrics)
        first = recorded.next_day
        return {
            "test_rmae_h1": recorded.rmae,
            "test_dm_p_h1": first.dm_p_value if first else None,
            "gate": recorded.gate.status if recorded.gate else None,
        }
    summary = BacktestSummary.read(run_dir / "summary.json") if run_dir else None
    first = summary.at_horizon(1) if summary else None
    if first is None:
        return {}
    return {"backtest_rmae_h1": first.rmae, "backtest_dm_p_h1": first.dm_p_value}


def run_stages_task(
    settings: dict[str, Any],
    ticker: str,
    stages: list[str],
    parameters: dict[str, Any],
    run_id: str,
    job_id: str | None = None,
    execution_timeout: float | None = None,
    whole_index: bool = False,
) -> dict[str, Any]:
    """One ticker's stages on a worker (a Dask task); returns its summary row.

    ``execution_timeout``: seconds any notebook cell may run (an API job's wall-clock limit).
    ``whole_index``: rebuild the whole reports index after the run (an API job, a task on
    its own), not only the ticker's page (a batch's task: the batch rebuilds it at its end).

    ``job_id`` (default: ``training_job_id(run_id, ticker)``) is the train stage's job; when
    an earlier attempt completed it, its model is reported and the train stage is not run
    again. Expected failures come back as ``status: failed``; others raise (Dask retries).
    """
    from stock_lstm.pipeline.runner import PipelineError, run_folder, run_pipeline

    began = time.perf_counter()
    config = settings_from_dict(settings)
    job_id = job_id or (training_job_id(run_id, ticker) if "train" in stages else None)
    row: dict[str, Any] = {"ticker": ticker, "run_id": run_id, "worker": worker_name()}
    try:
        run_folder(Path(config.reports_dir), ticker, run_id)  # before any folder is probed
    except StockLSTMError as exc:
        row.update(status="failed", error=str(exc), seconds=0.0)
        return row
    reused = _completed_model(config, job_id) if job_id else None
    row["reused"] = reused is not None
    to_run = [stage for stage in stages if not (reused and stage in REGISTERING_STAGES)]
    stage_parameters = dict(parameters)
    if job_id and any(stage in REGISTERING_STAGES for stage in to_run):
        stage_parameters["job_id"] = job_id
    run_dir: Path | None = None
    metrics = reused["metrics"] if reused else None
    if reused:
        row.update(version_id=reused["version_id"], report=reused["report"])
    if to_run:
        reports_dir = Path(config.reports_dir)
        attempt = _attempt_run_id(reports_dir, ticker, run_id)
        run_dir = reports_dir / ticker_file_stem(ticker) / attempt
        row["run_id"] = attempt
        try:
            with temporary_environment(settings_environment(config)):
                result = run_pipeline(
                    to_run,
                    ticker,
                    config,
                    stage_parameters,
                    run_id=attempt,
                    progress=False,
                    execution_timeout=execution_timeout,
                    whole_index=whole_index,
                )
        except PipelineError as exc:
            row.update(status="failed", error=str(exc), run_dir=str(run_dir))
            row["report"] = _last_report(run_dir)
            row["seconds"] = round(time.perf_counter() - began, 1)
            return row
        except StockLSTMError as exc:
            row.update(status="failed", error=str(exc))
            row["seconds"] = round(time.perf_counter() - began, 1)
            return row
        if result.version_id:
            row["version_id"] = result.version_id
            metrics = result.metrics
        row["run_dir"] = str(run_dir)
        train_html = run_dir / f"{STAGES['train']}.html"
        row["report"] = str(train_html) if train_html.is_file() else _last_report(run_dir)
    row.update(status="ok", **_score(metrics, run_dir))
    row["seconds"] = round(time.perf_counter() - began, 1)
    return row


def _last_report(run_dir: Path) -> str | None:
    """The newest HTML report of a run folder (the failing stage's, for a failed run)."""
    pages = sorted(run_dir.glob("*.html"), key=lambda path: path.name)
    return str(pages[-1]) if pages else None


@dataclass
class BatchResult:
    """Rows per ticker, in the order given, and the run they belong to."""

    run_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [row["ticker"] for row in self.rows if row.get("status") != "ok"]

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "results": self.rows, "failed": self.failed}


def check_parameters(
    stages: Sequence[str], parameters: Mapping[str, Any], notebooks_dir: Path | None = None
) -> list[str]:
    """Resolved stages, after checking every ``-p`` name against their notebooks (here, before
    any worker starts) and refusing the ones the batch sets itself."""
    from stock_lstm.pipeline.runner import split_parameters

    resolved = resolve_stages(list(stages))
    for name in parameters:
        if name in BATCH_PARAMETERS:
            raise InvalidParameterError(
                f"parameter {name!r} is set per ticker by a --tickers run: drop it"
            )
    split_parameters(resolved, dict(parameters), notebooks_dir or default_notebooks_dir())
    return resolved


def run_tickers(
    executor: Executor,
    stages: Sequence[str],
    tickers: Sequence[str],
    settings: Settings,
    parameters: Mapping[str, Any] | None = None,
    *,
    run_id: str | None = None,
    progress: bool = True,
) -> BatchResult:
    """Run ``stages`` for every ticker as one task each on ``executor``; see the module
    docstring. Returns when every ticker has finished or failed."""
    from stock_lstm.pipeline.runner import check_kernel, new_run_id, validate_run_id

    if run_id is not None:
        validate_run_id(run_id)  # one line now, not a failed task per ticker
    parameters = dict(parameters or {})
    resolved = check_parameters(stages, parameters)
    if not executor.remote:
        check_kernel()  # the local workers use this machine's kernel
    shared = worker_settings(settings)
    run_id = run_id or new_run_id()
    calls = {
        validate_ticker(ticker): (shared, validate_ticker(ticker), resolved, parameters, run_id)
        for ticker in tickers
    }
    results = executor.map(run_stages_task, calls, desc="tickers", unit="ticker", progress=progress)
    rows = [{"ticker": ticker, "run_id": run_id, **results[ticker]} for ticker in calls]
    reports_dir = Path(shared["reports_dir"])
    if reports_dir.is_dir():  # once, after every task: each task rebuilt its ticker's page
        build_index(reports_dir, shared.get("database_url"))
    return BatchResult(run_id, rows)


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "–"


def format_summary(result: BatchResult) -> str:
    """One line per ticker: status, the score beside persistence, the report to read."""
    from stock_lstm.evaluation.verdicts import point_verdict

    lines = [f"run {result.run_id}", f"  {'ticker':<10}{'status':<8}{'score':<62}report"]
    for row in result.rows:
        if "test_rmae_h1" in row:
            tested = point_verdict(row["test_rmae_h1"], row.get("test_dm_p_h1"))
            score = f"test rMAE h=1 {_number(row['test_rmae_h1'])} {tested.short()}"
            if row.get("gate"):
                score += f", gate {row['gate']}"
        elif "backtest_rmae_h1" in row:
            tested = point_verdict(row["backtest_rmae_h1"], row.get("backtest_dm_p_h1"))
            score = f"backtest rMAE h=1 {_number(row['backtest_rmae_h1'])} {tested.short()}"
        else:
            score = "–"
        report = row.get("report") or "–"
        if row.get("status") != "ok":
            report = f"{row.get('error', 'failed')} ({report})"
        status = "reused" if row.get("status") == "ok" and row.get("reused") else row.get("status")
        lines.append(f"  {row['ticker']:<10}{status or '?':<8}{score:<61} {report}")
    lines.append(
        "  (rMAE = model MAE / persistence MAE; the word is the Diebold-Mariano test's: better "
        "or worse only when p < 0.05)"
    )
    lines.append(_counts(result.rows))
    return "\n".join(lines)


def _counts(rows: list[dict[str, Any]]) -> str:
    """What the batch did, in one line: a resumed nightly run says how much it skipped."""
    ok = [row for row in rows if row.get("status") == "ok"]
    reused = sum(1 for row in ok if row.get("reused"))
    failed = len(rows) - len(ok)
    return (
        f"{len(rows)} ticker(s): {len(ok) - reused} run now, {reused} reused (their model was "
        f"registered by an earlier attempt of this run id), {failed} failed"
    )
