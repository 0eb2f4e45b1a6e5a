"""Training job rows: the progress a notebook, the CLI and the API can all watch."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from stock_lstm.clock import Clock, utc_now
from stock_lstm.db import Database, TrainingJob
from stock_lstm.errors import JobNotFoundError
from stock_lstm.tickers import validate_ticker

QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
JOB_STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED)
UNFINISHED = (QUEUED, RUNNING)


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


def create_job(
    db: Database,
    ticker: str,
    params: dict[str, Any],
    *,
    job_id: str | None = None,
    clock: Clock = utc_now,
) -> JobRecord:
    """A queued job row."""
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


def mark_running(db: Database, job_id: str, *, clock: Clock = utc_now) -> None:
    with db.transaction() as session:
        row = session.get(TrainingJob, job_id)
        if row is None:
            raise JobNotFoundError(f"no training job {job_id!r}")
        row.status, row.started_at, row.error = RUNNING, clock(), None


def record_epoch(
    db: Database,
    job_id: str,
    *,
    epoch: int,
    total_epochs: int,
    train_loss: float,
    val_loss: float,
) -> None:
    """Write one epoch's progress (progress is a percentage of the epoch budget)."""
    with db.transaction() as session:
        row = session.get(TrainingJob, job_id)
        if row is None:
            return
        row.current_epoch = epoch
        row.total_epochs = total_epochs
        row.progress = round(100.0 * epoch / max(total_epochs, 1), 2)
        row.train_loss, row.val_loss = train_loss, val_loss
        row.losses = [
            *row.losses,
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss},
        ]


def mark_completed(db: Database, job_id: str, version_id: str, *, clock: Clock = utc_now) -> None:
    with db.transaction() as session:
        row = session.get(TrainingJob, job_id)
        if row is None:
            raise JobNotFoundError(f"no training job {job_id!r}")
        row.status, row.progress, row.finished_at = COMPLETED, 100.0, clock()
        row.version_id = version_id


def mark_failed(db: Database, job_id: str, error: str, *, clock: Clock = utc_now) -> None:
    with db.transaction() as session:
        row = session.get(TrainingJob, job_id)
        if row is None:
            return
        row.status, row.error, row.finished_at = FAILED, error[:2000], clock()


def fail_unfinished_jobs(
    db: Database, reason: str = "interrupted by restart", *, clock: Clock = utc_now
) -> int:
    """Mark jobs a dead process left queued/running as failed; returns how many."""
    with db.transaction() as session:
        result = session.execute(
            update(TrainingJob)
            .where(TrainingJob.status.in_(UNFINISHED))
            .values(status=FAILED, error=reason, finished_at=clock())
        )
        return int(result.rowcount or 0)
