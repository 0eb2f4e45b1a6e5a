"""Training job rows: the progress a notebook, the CLI and the API can all watch.

Each unfinished job names the process responsible for it (``owner_host``, ``owner_pid``): the
API process while the job waits in its pool, then the process that trains (the CLI, or the
notebook's kernel). ``reconcile_jobs`` uses that to fail only the jobs whose owner on this
host is gone (killed, crashed, machine rebooted), never a job another live process is still
running. A notebook kernel started by a runner (the API's pool, a Dask worker, ``stock-lstm
run``) leaves the job with that runner, which outlives it: the runner writes the report after
the kernel has exited, and only then is the job ``completed``.

A queued or running job can be cancelled (``cancel_job``): the training checks at every epoch
and stops, and a registration for a cancelled job is refused, so a cancelled job never
leaves a model behind.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update

from stock_lstm.clock import Clock, utc_now
from stock_lstm.db import Database, TrainingJob
from stock_lstm.db.pages import Page, newest_first_page
from stock_lstm.errors import ConflictError, JobCancelledError, JobNotFoundError
from stock_lstm.tickers import validate_ticker

QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
CANCELLED = "cancelled"
JOB_STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED)
UNFINISHED = (QUEUED, RUNNING)
#: Error text of a job cancelled by request.
CANCELLED_REASON = "cancelled by request"


@dataclass(frozen=True)
class JobRecord:
    """A job row as a plain value."""

    job_id: str
    ticker: str
    status: str
    progress: float
    current_epoch: int
    total_epochs: int
    train_loss: float | None
    val_loss: float | None
    losses: list[dict[str, float]]
    error: str | None
    params: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    version_id: str | None
    owner_host: str | None = None
    owner_pid: int | None = None

    @classmethod
    def from_row(cls, row: TrainingJob) -> JobRecord:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for key in ("created_at", "started_at", "finished_at"):
            values[key] = values[key].isoformat() if values[key] else None
        return values


def new_job_id() -> str:
    return uuid.uuid4().hex


def this_process() -> tuple[str, int]:
    """``(host name, pid)`` of the calling process, as recorded in ``owner_host/owner_pid``."""
    return socket.gethostname(), os.getpid()


def process_is_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host and has not exited.

    ``os.kill(pid, 0)`` sends nothing; it only asks whether the pid exists. A zombie (exited,
    not yet reaped by its parent) counts as gone. When we cannot tell (no permission, not
    POSIX) the answer is "alive": a job is never failed on a guess.

    Known limit: a pid reused by an unrelated process makes a dead owner look alive, so its
    job stays ``running`` until that process exits too; the error is always on the side of
    leaving a job alone, never of failing a live one.
    """
    if pid <= 0:
        return False
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = stat.rpartition(")")[2].split()
    return not fields or fields[0] not in ("Z", "X")


def create_job(
    db: Database,
    ticker: str,
    params: dict[str, Any],
    *,
    job_id: str | None = None,
    clock: Clock = utc_now,
) -> JobRecord:
    """A queued job row, owned by the calling process until a worker takes it."""
    owner_host, owner_pid = this_process()
    row = TrainingJob(
        job_id=job_id or new_job_id(),
        ticker=validate_ticker(ticker),
        status=QUEUED,
        progress=0.0,
        current_epoch=0,
        total_epochs=int(params.get("epochs", 0)),
        losses=[],
        params=dict(params),
        created_at=clock(),
        owner_host=owner_host,
        owner_pid=owner_pid,
    )
    with db.transaction() as session:
        session.add(row)
        session.flush()
        return JobRecord.from_row(row)


def get_job(db: Database, job_id: str) -> JobRecord:
    with db.session() as session:
        row = session.get(TrainingJob, job_id)
        if row is None:
            raise JobNotFoundError(
                f"no training job {job_id!r}: list jobs with GET /api/v1/training/jobs"
            )
        return JobRecord.from_row(row)


def ensure_job(db: Database, job_id: str, ticker: str, params: dict[str, Any]) -> JobRecord:
    """The job with this id, created queued if it does not exist yet (notebook runs)."""
    try:
        return get_job(db, job_id)
    except JobNotFoundError:
        return create_job(db, ticker, params, job_id=job_id)


def list_jobs(
    db: Database, *, ticker: str | None = None, status: str | None = None, limit: int = 50
) -> list[JobRecord]:
    query = select(TrainingJob).order_by(TrainingJob.created_at.desc()).limit(limit)
    if ticker:
        query = query.where(TrainingJob.ticker == validate_ticker(ticker))
    if status:
        query = query.where(TrainingJob.status == status)
    with db.session() as session:
        return [JobRecord.from_row(row) for row in session.scalars(query)]


def list_jobs_page(
    db: Database,
    *,
    ticker: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[JobRecord]:
    """One page of the jobs, newest first (``db.pages``); ``cursor`` is the previous page's
    ``next_cursor``."""
    query = select(TrainingJob)
    if ticker:
        query = query.where(TrainingJob.ticker == validate_ticker(ticker))
    if status:
        query = query.where(TrainingJob.status == status)
    return newest_first_page(
        db,
        query,
        model=TrainingJob,
        key=TrainingJob.job_id,
        limit=limit,
        cursor=cursor,
        convert=JobRecord.from_row,
    )


def _runs_us(host: str | None, pid: int | None) -> bool:
    """Whether ``(host, pid)`` is the process that started this one (a kernel's runner)."""
    return host == socket.gethostname() and pid is not None and pid == os.getppid()


def mark_running(db: Database, job_id: str, *, clock: Clock = utc_now) -> None:
    """Mark the job running, owned by the calling process: the one that trains (the CLI, a
    notebook run in JupyterLab) or the runner that started this notebook's kernel (it writes
    the report after the kernel exits, so the job stays its own). A cancelled job stays
    cancelled and ``JobCancelledError`` stops the training before it starts."""
    owner_host, owner_pid = this_process()
    with db.transaction() as session:
        row = session.get(TrainingJob, job_id)
        if row is None:
            raise JobNotFoundError(f"no training job {job_id!r}")
        if row.status == CANCELLED:
            raise JobCancelledError(f"training job {job_id} was cancelled: nothing trained")
        row.status, row.started_at, row.error = RUNNING, clock(), None
        if not _runs_us(row.owner_host, row.owner_pid):
            row.owner_host, row.owner_pid = owner_host, owner_pid


def record_epoch(
    db: Database,
    job_id: str,
    *,
    epoch: int,
    total_epochs: int,
    train_loss: float,
    val_loss: float,
) -> None:
    """Write one epoch's progress (progress is a percentage of the epoch budget); raise
    ``JobCancelledError`` if the job was cancelled, which stops the training loop."""
    with db.transaction() as session:
        row = session.get(TrainingJob, job_id)
        if row is None:
            return
        if row.status == CANCELLED:
            raise JobCancelledError(
                f"training job {job_id} was cancelled after epoch {row.current_epoch}: "
                "stopped, nothing registered"
            )
        if row.status not in UNFINISHED:  # failed by reconcile_jobs: its runner is gone
            raise ConflictError(
                f"training job {job_id} was marked {row.status} by another process: stopped"
            )
        row.current_epoch = epoch
        row.total_epochs = total_epochs
        row.progress = round(100.0 * epoch / max(total_epochs, 1), 2)
        row.train_loss, row.val_loss = train_loss, val_loss
        row.losses = [
            *row.losses,
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss},
        ]


def mark_completed(db: Database, job_id: str, version_id: str, *, clock: Clock = utc_now) -> None:
    """Completed with ``version_id``: called once the model is registered *and* its report
    (if the run writes one) exists. A cancelled job stays cancelled."""
    with db.transaction() as session:
        row = session.get(TrainingJob, job_id)
        if row is None:
            raise JobNotFoundError(f"no training job {job_id!r}")
        if row.status == CANCELLED:
            return
        row.status, row.progress, row.finished_at = COMPLETED, 100.0, clock()
        row.version_id, row.error = version_id, None


def mark_failed(db: Database, job_id: str, error: str, *, clock: Clock = utc_now) -> None:
    """Failed with ``error``, if it has not ended already: a cancelled job stays cancelled
    and a failed one keeps its first reason (a kernel stopped because its job was failed
    elsewhere must not replace why)."""
    with db.transaction() as session:
        row = session.get(TrainingJob, job_id)
        if row is None or row.status not in UNFINISHED:
            return
        row.status, row.error, row.finished_at = FAILED, error[:2000], clock()


def cancel_job(db: Database, job_id: str, *, clock: Clock = utc_now) -> JobRecord:
    """Cancel a queued or running job; ``ConflictError`` (409) if it has already finished.

    A queued job never starts; a running one stops at its next epoch (its training reads the
    status) and can no longer register a model, whatever cell it is in: registration checks
    the status in the transaction that activates. Once the job has registered its model
    (and its runner is writing the report) the cancel is a 409 naming that version: the one
    row lock orders the two, so a cancel is either before registration (nothing registered)
    or refused (never "cancelled" with a live model).
    """
    with db.transaction() as session:
        row = session.get(TrainingJob, job_id, with_for_update=True)
        if row is None:
            raise JobNotFoundError(
                f"no training job {job_id!r}: list jobs with GET /api/v1/training/jobs"
            )
        if row.status not in UNFINISHED:
            raise ConflictError(
                f"training job {job_id} has already finished ({row.status}): nothing to cancel"
            )
        if row.version_id:
            raise ConflictError(
                f"training job {job_id} has already registered model {row.version_id} (its "
                "report is being written): nothing to cancel; to stop it serving, activate "
                "another version"
            )
        row.status, row.error, row.finished_at = CANCELLED, CANCELLED_REASON, clock()
        session.flush()
        return JobRecord.from_row(row)


def interrupted_reason(pid: int, host: str) -> str:
    return f"interrupted: its process {pid} on {host} is gone; start the training again"


#: Error of unfinished jobs without an owner, failed when the API starts (see reconcile_jobs).
UNOWNED_REASON = (
    "interrupted by restart: no live process owned this job (it was left by an earlier "
    "server); start the training again"
)


def reconcile_jobs(
    db: Database,
    *,
    include_unowned: bool = False,
    host: str | None = None,
    is_alive: Callable[[int], bool] = process_is_alive,
    clock: Clock = utc_now,
) -> list[str]:
    """Fail the unfinished jobs whose owner process on this host is gone; return their ids.

    Jobs owned on another host are left alone (we cannot see its processes), and so are jobs
    whose owner is alive. ``include_unowned`` (the API at start-up) also fails unfinished
    jobs with no owner: rows written before owners were recorded, which no process will ever
    finish and which would otherwise block that ticker's next training forever.

    Cheap enough to run at the start of every command: one indexed query, and an update only
    when something is stale. Each update re-checks status and owner, so a job that finished
    or changed hands in the meantime is not touched.
    """
    host = host or socket.gethostname()
    owned_here = TrainingJob.owner_host == host
    if include_unowned:
        owned_here = or_(owned_here, TrainingJob.owner_pid.is_(None))
    query = select(TrainingJob.job_id, TrainingJob.owner_pid).where(
        TrainingJob.status.in_(UNFINISHED), owned_here
    )
    with db.session() as session:
        candidates = session.execute(query).all()
    stale = [(job_id, pid) for job_id, pid in candidates if pid is None or not is_alive(pid)]
    if not stale:
        return []
    failed: list[str] = []
    now = clock()
    with db.transaction() as session:
        for job_id, pid in stale:
            same_owner = (
                TrainingJob.owner_pid.is_(None) if pid is None else TrainingJob.owner_pid == pid
            )
            reason = UNOWNED_REASON if pid is None else interrupted_reason(pid, host)
            result = session.execute(
                update(TrainingJob)
                .where(
                    TrainingJob.job_id == job_id,
                    TrainingJob.status.in_(UNFINISHED),
                    same_owner,
                )
                .values(status=FAILED, error=reason, finished_at=now)
            )
            if result.rowcount:
                failed.append(job_id)
    return failed
