"""Run notebook stages for a ticker with papermill and keep every executed copy as a report.

A run writes ``reports/<TICKER>/<run_id>/<NN_stage>.ipynb`` and ``.html`` per stage plus a
``run.json`` manifest, then rebuilds ``reports/index.html``. A failing stage is still saved
and rendered (the failing cell is visible), later stages are skipped, and the error's first
line is raised as ``PipelineError``. The train notebook registers its model only in its last
cell, so a failed run never registers or activates anything.

A run started for a training job (``job_id`` among the parameters) owns that job while its
kernel trains, and completes it only after the report is rendered, so a client that sees
``completed`` can fetch the report. ``execution_timeout`` bounds every cell (the training
cell is the long one): a job's wall-clock limit. The manifest names the running process, so
a run whose process dies is marked failed later (``run_recovery.reconcile_runs``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from stock_lstm.clock import Clock, utc_now
from stock_lstm.config import Settings, load_settings, temporary_environment
from stock_lstm.errors import InvalidParameterError, StockLSTMError
from stock_lstm.pipeline.reports import render_html, write_manifest
from stock_lstm.pipeline.run_index import build_index
from stock_lstm.pipeline.stages import (
    KERNEL_NAME,
    REGISTERING_STAGES,
    STAGES,
    default_notebooks_dir,
    resolve_stages,
)
from stock_lstm.tickers import ticker_file_stem, validate_ticker

log = logging.getLogger(__name__)

#: Parameters the runner fills in itself; users cannot override them with ``-p``.
RUNNER_PARAMETERS = ("ticker", "report_path", "output_dir", "trained_version")


class PipelineError(StockLSTMError):
    """A stage's notebook failed; the message carries the error's first line and the report."""


@dataclass
class StageResult:
    stage: str
    status: str
    notebook: str
    html: str | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class RunResult:
    run_id: str
    ticker: str
    run_dir: Path
    started_at: str
    status: str = "running"
    stages: list[StageResult] = field(default_factory=list)
    version_id: str | None = None
    metrics: dict[str, Any] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    owner_host: str = field(default_factory=socket.gethostname)
    owner_pid: int = field(default_factory=os.getpid)

    def manifest(self) -> dict[str, Any]:
        values = asdict(self)
        values["run_dir"] = str(self.run_dir)
        return values


def coerce_parameter(text: str) -> Any:
    """``-p NAME VALUE`` text to a Python value: bool, None, int, float, else the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


#: A run id names a folder under ``reports/<TICKER>/``: letters, digits, ``_``, ``-`` and
#: ``.`` only, starting with a letter or digit, so it can never be ``..``, hold a separator
#: or need escaping in a URL or a shell.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def new_run_id(clock: Clock = utc_now) -> str:
    return f"{clock().strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:6]}"


def validate_run_id(run_id: str) -> str:
    """``run_id`` if it has ``RUN_ID_PATTERN``'s shape, else ``InvalidParameterError``."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        shown = repr(run_id)[:80]
        raise InvalidParameterError(
            f"run id {shown} is not accepted: use 1 to 100 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (e.g. 20260105_120000_ab12cd)"
        )
    return run_id


def run_folder(reports_dir: Path, ticker: str, run_id: str) -> Path:
    """``<reports_dir>/<TICKER>/<run_id>`` resolved, or ``InvalidParameterError`` when it
    would lie outside the reports folder (a bad shape, or a symlinked ticker folder):
    reports are served and pruned from that folder, so nothing may be written elsewhere."""
    root = Path(reports_dir).resolve()
    folder = (root / ticker_file_stem(ticker) / validate_run_id(run_id)).resolve()
    if not folder.is_relative_to(root) or folder.parent == root or folder == root:
        raise InvalidParameterError(
            f"run id {run_id!r} resolves to {folder}, outside the reports folder {root}: "
            "pick another run id"
        )
    return folder


def check_kernel_settings(settings: Settings) -> None:
    """Refuse, as one ``SettingsError`` line, a setting a notebook kernel would choke on.

    A kernel reads its settings again: ``kernel_environment(settings)`` on top of this
    process's environment, plus the ``.env`` of the folder ``setup_notebook`` moves to (the
    project root). A bad value there would otherwise be a traceback in every report.
    """
    from stock_lstm.pipeline.notebook import find_project_root

    folder = find_project_root() or Path.cwd()
    with temporary_environment(kernel_environment(settings)):
        load_settings(env_file=folder / ".env")


def check_sources(ticker: str, settings: Settings, per_stage: Mapping[str, Any]) -> None:
    """Every price source the stages will read (a ``source`` parameter, else the setting)
    exists, and a CSV folder holds the ticker's file: seconds here, not a kernel later."""
    from stock_lstm.data.sources import source_from_spec

    specs = {params.get("source") or settings.source for params in per_stage.values()}
    for spec in sorted(specs or {settings.source}, key=str):
        source_from_spec(spec).check_ticker(ticker)


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """The names (and defaults) a notebook's ``parameters`` cell declares."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def check_kernel(name: str = KERNEL_NAME) -> None:
    """Fail early, with the fix, when the Jupyter kernel is not installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel as exc:
        raise StockLSTMError(
            f"Jupyter kernel {name!r} is not installed: run `make setup` (it registers it)"
        ) from exc


def split_parameters(
    stages: list[str], parameters: Mapping[str, Any], notebooks_dir: Path
) -> dict[str, dict[str, Any]]:
    """Give each stage the parameters its notebook declares; a name no stage declares is an
    error (papermill itself would only warn and silently ignore it)."""
    for name in parameters:
        if name in RUNNER_PARAMETERS:
            raise InvalidParameterError(f"parameter {name!r} is set by the runner: drop it")
    per_stage: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    declared_any: set[str] = set()
    for stage in stages:
        notebook = notebooks_dir / f"{STAGES[stage]}.ipynb"
        if not notebook.is_file():
            raise StockLSTMError(f"notebook {notebook} is missing: restore it from git")
        declared = declared_parameters(notebook)
        declared_any.update(declared)
        per_stage[stage] = {k: v for k, v in parameters.items() if k in declared}
        used.update(per_stage[stage])
    unknown = sorted(set(parameters) - used)
    if unknown:
        raise InvalidParameterError(
            f"parameter {unknown[0]!r} is not declared by the notebooks of stage(s) "
            f"{', '.join(stages)}; they declare: {', '.join(sorted(declared_any))}"
        )
    return per_stage


def _absolute_database_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(
            hide_password=False
        )
    return url


def kernel_environment(settings: Settings) -> dict[str, str]:
    """The ``STOCK_LSTM_*`` variables a notebook kernel needs to see this run's settings."""
    env = {
        "STOCK_LSTM_DATABASE_URL": _absolute_database_url(settings.database_url),
        "STOCK_LSTM_SOURCE": settings.source,
        "STOCK_LSTM_MODELS_DIR": str(Path(settings.models_dir).resolve()),
        "STOCK_LSTM_REPORTS_DIR": str(Path(settings.reports_dir).resolve()),
        "STOCK_LSTM_UNIVERSE_DIR": str(Path(settings.universe_dir).resolve()),
        "STOCK_LSTM_CACHE_EXPIRY_HOURS": str(settings.cache_expiry_hours),
        "STOCK_LSTM_HISTORY_YEARS": str(settings.history_years),
    }
    if settings.torch_threads:
        env["STOCK_LSTM_TORCH_THREADS"] = str(settings.torch_threads)
    return env


def _first_line(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = str(getattr(exc, "evalue", None) or exc).strip().splitlines()
    return f"{ename}: {evalue[0] if evalue else ''}".strip()


def _job_database(settings: Settings) -> Any:
    from stock_lstm.db import Database

    return Database(
        settings.database_url, busy_timeout_seconds=settings.sqlite_busy_timeout_seconds
    )


def _take_job(db: Any, job_id: str, ticker: str, parameters: Mapping[str, Any]) -> None:
    """Create (if the API did not) and own the job: this process renders its report after
    the kernel has exited, so the job must not die with the kernel."""

    from stock_lstm.models import jobs
    from stock_lstm.models.params import TrainParams

    names = set(TrainParams.model_fields)
    try:
        params = TrainParams.from_dict({k: v for k, v in parameters.items() if k in names})
    except StockLSTMError:
        return  # the notebook reports the bad parameter, and fails the job
    jobs.ensure_job(db, job_id, ticker, params.to_dict())
    jobs.mark_running(db, job_id)


def _finish_job(db: Any, job_id: str, html: Path | None, error: str | None) -> None:
    """Complete the job once its model is registered and its report exists; else say why not
    (the kernel marks most failures itself; this covers a timeout or a dead kernel)."""
    from stock_lstm.errors import JobNotFoundError
    from stock_lstm.models import jobs

    try:
        job = jobs.get_job(db, job_id)
        if job.status not in jobs.UNFINISHED:
            return
        if job.version_id and html is not None:
            jobs.mark_completed(db, job_id, job.version_id)
        elif job.version_id:
            jobs.mark_failed(
                db,
                job_id,
                f"model {job.version_id} was registered but its report could not "
                "be rendered: see the server log",
            )
        elif error:
            jobs.mark_failed(db, job_id, error)
    except JobNotFoundError:
        pass


def _registered_version(db: Any, report_path: str) -> tuple[str | None, dict | None]:
    """The version (and its metrics, in their JSON form: they go into run.json) the train
    notebook registered with this report."""
    from stock_lstm.models.registry import find_by_report_path

    record = find_by_report_path(db, report_path)
    return (record.version_id, record.metrics.to_json()) if record else (None, None)


def check_training_parameters(parameters: Mapping[str, Any]) -> None:
    """The training parameters among a run's, checked as the notebook will check them
    (``TrainParams``): a value out of range is one line in milliseconds, not a failed run
    after a kernel's start."""

    from stock_lstm.models.params import TrainParams

    names = set(TrainParams.model_fields)
    given = {name: value for name, value in parameters.items() if name in names}
    if given:
        TrainParams.from_dict(given)


def _runner_parameters(stage: str, html_path: Path, result: RunResult) -> dict[str, Any]:
    """What the runner tells a stage besides the user's parameters: where its report goes
    (a registering stage records it), the version this run trained (04 says whether it
    forecast with it: a gate may have kept the previous one active), the run folder (05
    writes its CSV and summary there)."""
    extra: dict[str, Any] = {}
    if stage in REGISTERING_STAGES:
        extra["report_path"] = str(html_path)
    if stage == "predict" and result.version_id:
        extra["trained_version"] = result.version_id
    if stage == "backtest":
        extra["output_dir"] = str(result.run_dir)
    return extra


def _execute_stage(
    stage: str,
    notebook: Path,
    output: Path,
    parameters: Mapping[str, Any],
    *,
    progress: bool,
    log_output: bool,
    execution_timeout: float | None,
) -> StageResult:
    """Run one stage's notebook with papermill and render its HTML; a failure is the
    stage's status and first error line, never an exception."""
    import papermill
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError

    began = time.perf_counter()
    stage_result = StageResult(stage, "ok", output.name)
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=dict(parameters),
            kernel_name=KERNEL_NAME,
            progress_bar=progress,
            log_output=log_output,
            cwd=os.getcwd(),
            execution_timeout=execution_timeout,
        )
    except PapermillExecutionError as exc:
        stage_result.status, stage_result.error = "failed", _first_line(exc)
    except CellTimeoutError:
        stage_result.status = "failed"
        stage_result.error = (
            f"stopped: a cell ran past the limit of {(execution_timeout or 0) / 3600:g} h "
            "(STOCK_LSTM_JOB_TIMEOUT_HOURS)"
        )
    except Exception as exc:  # kernel died, could not start, ...
        stage_result.status, stage_result.error = "failed", _first_line(exc)
    stage_result.seconds = round(time.perf_counter() - began, 2)
    if output.exists():
        try:
            stage_result.html = render_html(output).name
        except Exception as exc:
            log.warning("could not render %s: %s", output, exc)
    return stage_result


def run_pipeline(
    stages: list[str],
    ticker: str,
    settings: Settings,
    parameters: Mapping[str, Any] | None = None,
    *,
    notebooks_dir: Path | None = None,
    run_id: str | None = None,
    progress: bool = True,
    log_output: bool = False,
    clock: Clock = utc_now,
    execution_timeout: float | None = None,
    whole_index: bool = True,
) -> RunResult:
    """Execute ``stages`` for ``ticker`` and render their reports; see the module docstring.

    ``execution_timeout``: seconds any one cell may run (``None``: no limit).
    ``whole_index``: False rebuilds only the ticker's own runs page (a batch task: the batch
    rebuilds the whole index once at its end).
    """
    ticker = validate_ticker(ticker)
    stages = resolve_stages(stages)
    check_training_parameters(parameters or {})  # before a kernel starts or a run is listed

    notebooks_dir = notebooks_dir or default_notebooks_dir()
    per_stage = split_parameters(stages, dict(parameters or {}), notebooks_dir)
    reports_dir = Path(settings.reports_dir).resolve()
    run_id = run_id or new_run_id(clock)
    run_dir = run_folder(reports_dir, ticker, run_id)
    check_kernel_settings(settings)
    check_sources(ticker, settings, per_stage)
    check_kernel()

    run_dir.mkdir(parents=True, exist_ok=False)
    result = RunResult(
        run_id, ticker, run_dir, clock().isoformat(), parameters=dict(parameters or {})
    )
    write_manifest(run_dir, result.manifest())

    failure: str | None = None
    # One database handle for the train stage's bookkeeping (its job, its registered
    # version), opened only when a train stage needs it and closed after the last stage.
    opened: list[Any] = []

    def database() -> Any:
        if not opened:
            opened.append(_job_database(settings))
        return opened[0]

    with contextlib.ExitStack() as cleanup, temporary_environment(kernel_environment(settings)):
        cleanup.callback(lambda: opened and opened[0].dispose())
        for stage in stages:
            stem = STAGES[stage]
            output = run_dir / f"{stem}.ipynb"
            html_path = output.with_suffix(".html")
            stage_parameters = {"ticker": ticker, **per_stage[stage]}
            job_id = stage_parameters.get("job_id") if stage in REGISTERING_STAGES else None
            if job_id:
                _take_job(database(), str(job_id), ticker, stage_parameters)
            stage_parameters.update(_runner_parameters(stage, html_path, result))
            log.info("running %s for %s -> %s", stem, ticker, output)
            stage_result = _execute_stage(
                stage,
                notebooks_dir / f"{stem}.ipynb",
                output,
                stage_parameters,
                progress=progress,
                log_output=log_output,
                execution_timeout=execution_timeout,
            )
            result.stages.append(stage_result)
            if stage in REGISTERING_STAGES and stage_result.status == "ok":
                result.version_id, result.metrics = _registered_version(database(), str(html_path))
            if job_id:
                rendered = html_path if stage_result.html else None
                _finish_job(database(), str(job_id), rendered, stage_result.error)
            write_manifest(run_dir, result.manifest())
            if stage_result.status == "failed":
                failure = f"stage {stage} failed: {stage_result.error}"
                break

    result.status = "failed" if failure else "ok"
    write_manifest(run_dir, result.manifest())
    only = None if whole_index else run_dir.parent.name
    build_index(reports_dir, settings.database_url, ticker_folder=only)
    if failure:
        report = run_dir / (result.stages[-1].html or result.stages[-1].notebook)
        raise PipelineError(f"{failure} (report: {report})")
    return result
