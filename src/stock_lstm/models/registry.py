"""The model registry: which versions exist per ticker and which one serves.

Activation is one transaction that first deactivates the ticker's current model and then
activates the new one; a partial unique index makes a second active row impossible even
under concurrent writers (on PostgreSQL the activation that loses such a race is retried, so
the last writer wins as it does on SQLite). A registration made for a training job
completes that job in the same transaction, and a job registers at most one model: a retried
task (its first worker died after registering) gets the first model back instead of adding a
second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stock_lstm.clock import Clock, utc_now
from stock_lstm.db import CalibrationStateRow, Database, ModelRegistry, TrainingJob
from stock_lstm.db.pages import DEFAULT_PAGE_SIZE, Page, newest_first_page
from stock_lstm.errors import ConflictError, JobCancelledError, ModelNotFoundError
from stock_lstm.models.artifacts import SavedArtifacts
from stock_lstm.models.jobs import CANCELLED, COMPLETED
from stock_lstm.models.records import TrainingMetrics
from stock_lstm.tickers import validate_ticker

logger = logging.getLogger(__name__)

#: The index a concurrent activation of the same ticker meets on a server with row locks
#: (PostgreSQL: both transactions deactivate, then the second insert collides). SQLite
#: serializes writers at BEGIN IMMEDIATE, so there it only guards against bugs.
ONE_ACTIVE_INDEX = "uq_model_registry_one_active"
#: Attempts at an activation that lost that race; the retry sees the winner and replaces it.
ACTIVATION_ATTEMPTS = 3
_T = TypeVar("_T")


@dataclass(frozen=True)
class ModelRecord:
    """A registry row as a plain value (safe to use after its session closed)."""

    version_id: str
    ticker: str
    created_at: datetime
    model_path: str
    scaler_path: str
    model_sha256: str
    scaler_sha256: str
    params: dict[str, Any]
    metrics: TrainingMetrics
    first_date: date
    last_date: date
    rows: int
    data_sha256: str
    code_version: str
    report_path: str | None
    is_active: bool

    @classmethod
    def from_row(cls, row: ModelRegistry) -> ModelRecord:
        values = {name: getattr(row, name) for name in cls.__dataclass_fields__}
        values["metrics"] = TrainingMetrics.from_json(row.metrics)
        return cls(**values)

    @property
    def network(self) -> str:
        """The version's network (``lstm`` for versions saved before networks had names)."""
        return str(self.params.get("network", "lstm"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (dates as ISO strings), with the version's ``network``."""
        values = asdict(self)
        values["metrics"] = self.metrics.to_json()
        values["network"] = self.network
        for key in ("created_at", "first_date", "last_date"):
            values[key] = values[key].isoformat()
        return values


class AlreadyRegisteredError(ConflictError):
    """The training job already registered a model (``version_id``); nothing was added."""

    def __init__(self, job_id: str, version_id: str) -> None:
        super().__init__(
            f"training job {job_id} already registered model {version_id}: nothing added"
        )
        self.job_id = job_id
        self.version_id = version_id


@dataclass(frozen=True)
class TrainingDataSummary:
    """What a model was trained on, recorded for reproducibility."""

    first_date: date
    last_date: date
    rows: int
    data_sha256: str


def _deactivate_ticker(session: Session, ticker: str) -> None:
    session.execute(
        update(ModelRegistry)
        .where(ModelRegistry.ticker == ticker, ModelRegistry.is_active.is_(True))
        .values(is_active=False)
    )
    session.flush()


def _retry_lost_activation(action: Callable[[], _T], what: str) -> _T:
    """Run one activation transaction, again if a concurrent one activated first.

    The last writer wins, as it does on SQLite where the writers simply queue.
    """
    for attempt in range(1, ACTIVATION_ATTEMPTS + 1):
        try:
            return action()
        except IntegrityError as error:
            if ONE_ACTIVE_INDEX not in str(error.orig) or attempt == ACTIVATION_ATTEMPTS:
                raise
            logger.info("%s: a concurrent activation won; retrying (%d)", what, attempt)
    raise AssertionError("unreachable")


def register_model(
    db: Database,
    *,
    ticker: str,
    artifacts: SavedArtifacts,
    params: dict[str, Any],
    metrics: TrainingMetrics | Mapping[str, Any],
    data: TrainingDataSummary,
    code_version: str,
    activate: bool = True,
    report_path: str | None = None,
    clock: Clock = utc_now,
    job_id: str | None = None,
    complete_job: bool = True,
) -> ModelRecord:
    """Insert a version; when ``activate``, it replaces the ticker's active model atomically.

    With ``job_id`` the job records this version in the same transaction (its row locked
    while checked, on databases that lock rows), so either both happen or neither, and is
    marked completed unless ``complete_job`` is false (a run whose report is still to be
    written: its runner completes the job once the report exists). If that job already has
    a model, ``AlreadyRegisteredError`` names it; if it was cancelled, ``JobCancelledError``;
    either way nothing is written. ``metrics`` is stored in its one JSON form (a mapping is
    read as a stored row would be).
    """
    ticker = validate_ticker(ticker)
    if not isinstance(metrics, TrainingMetrics):
        metrics = TrainingMetrics.from_json(metrics)
    values: dict[str, Any] = dict(
        version_id=artifacts.version_id,
        ticker=ticker,
        created_at=clock(),
        model_path=str(artifacts.model_path),
        scaler_path=str(artifacts.scaler_path),
        model_sha256=artifacts.model_sha256,
        scaler_sha256=artifacts.scaler_sha256,
        params=params,
        metrics=metrics.to_json(),
        first_date=data.first_date,
        last_date=data.last_date,
        rows=data.rows,
        data_sha256=data.data_sha256,
        code_version=code_version,
        report_path=report_path,
        is_active=activate,
    )

    def insert() -> ModelRecord:
        with db.transaction() as session:
            job = session.get(TrainingJob, job_id, with_for_update=True) if job_id else None
            if job is not None and job.version_id:
                raise AlreadyRegisteredError(job.job_id, job.version_id)
            if job is not None and job.status == CANCELLED:
                raise JobCancelledError(
                    f"training job {job.job_id} was cancelled: its model is not registered"
                )
            if activate:
                _deactivate_ticker(session, ticker)
            row = ModelRegistry(**values)
            session.add(row)
            if job is not None:
                job.progress, job.version_id, job.error = 100.0, row.version_id, None
                if complete_job:
                    job.status, job.finished_at = COMPLETED, row.created_at
            session.flush()
            return ModelRecord.from_row(row)

    return _retry_lost_activation(insert, f"registering {artifacts.version_id}")


def _row(session: Session, version_id: str) -> ModelRegistry:
    row = session.get(ModelRegistry, version_id)
    if row is None:
        raise ModelNotFoundError(
            f"no model version {version_id!r}: list versions with `stock-lstm models`"
        )
    return row


def activate_version(db: Database, version_id: str) -> ModelRecord:
    """Make ``version_id`` its ticker's active model (the previous one becomes inactive)."""

    def activate() -> ModelRecord:
        with db.transaction() as session:
            row = _row(session, version_id)
            _deactivate_ticker(session, row.ticker)
            row.is_active = True
            session.flush()
            return ModelRecord.from_row(row)

    return _retry_lost_activation(activate, f"activating {version_id}")


def get_model(db: Database, version_id: str) -> ModelRecord:
    """One version by id, or ``ModelNotFoundError``."""
    with db.session() as session:
        return ModelRecord.from_row(_row(session, version_id))


def _no_active_model(ticker: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"no active model for {ticker}: train one with `make train TICKER={ticker}` "
        f"or `stock-lstm train {ticker}`"
    )


def get_active_model(db: Database, ticker: str) -> ModelRecord:
    """The ticker's active version, or ``ModelNotFoundError`` telling how to train one."""
    ticker = validate_ticker(ticker)
    with db.session() as session:
        row = session.scalars(
            select(ModelRegistry).where(
                ModelRegistry.ticker == ticker, ModelRegistry.is_active.is_(True)
            )
        ).one_or_none()
        if row is None:
            raise _no_active_model(ticker)
        return ModelRecord.from_row(row)


#: Built once, run on a plain connection: ``active_version_id`` is on every forecast's path.
_ACTIVE_VERSION_ID = select(ModelRegistry.version_id).where(
    ModelRegistry.ticker == bindparam("ticker"), ModelRegistry.is_active.is_(True)
)


def active_version_id(db: Database, ticker: str) -> str:
    """Just the id of the ticker's active version (``ModelNotFoundError`` as above).

    Why: a forecast looks the active version up on every request, so an activation is seen
    at once; when that version is already loaded, its id is all it needs, and reading one
    indexed column skips decoding the row's JSON metrics (most of the lookup's cost).
    """
    ticker = validate_ticker(ticker)
    with db.engine.connect() as connection:
        version_id = connection.execute(_ACTIVE_VERSION_ID, {"ticker": ticker}).scalar_one_or_none()
    if version_id is None:
        raise _no_active_model(ticker)
    return version_id


def list_models(db: Database, ticker: str | None = None) -> list[ModelRecord]:
    """All versions (of one ticker if given), newest first."""
    query = select(ModelRegistry).order_by(
        ModelRegistry.created_at.desc(), ModelRegistry.version_id.desc()
    )
    if ticker is not None:
        query = query.where(ModelRegistry.ticker == validate_ticker(ticker))
    with db.session() as session:
        return [ModelRecord.from_row(row) for row in session.scalars(query)]


def list_models_page(
    db: Database,
    ticker: str | None = None,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> Page[ModelRecord]:
    """One page of the versions (of one ticker if given), newest first; ``cursor`` is the
    previous page's ``next_cursor`` (``db.pages``: stable while new versions arrive)."""
    query = select(ModelRegistry)
    if ticker is not None:
        query = query.where(ModelRegistry.ticker == validate_ticker(ticker))
    return newest_first_page(
        db,
        query,
        model=ModelRegistry,
        key=ModelRegistry.version_id,
        limit=limit,
        cursor=cursor,
        convert=ModelRecord.from_row,
    )


def active_universal_sources(db: Database) -> dict[str, str]:
    """``{ticker: universal version}`` for every active model made from a universal one.

    Why: ``models`` shows which tickers each universal version serves whatever page it
    lists, so it reads the active rows' parameters only, not every version.
    """
    query = select(ModelRegistry.ticker, ModelRegistry.params).where(
        ModelRegistry.is_active.is_(True)
    )
    with db.session() as session:
        return {
            ticker: str(params["universal_version"])
            for ticker, params in session.execute(query)
            if (params or {}).get("universal_version")
        }


def find_by_report_path(db: Database, report_path: str) -> ModelRecord | None:
    """The version whose training report is the file ``report_path``, or None.

    Why: a pipeline run knows the report it rendered, not the version id its notebook
    registered; the report path is what links the two.
    """
    query = select(ModelRegistry).where(ModelRegistry.report_path == report_path)
    with db.session() as session:
        row = session.scalars(query).first()
        return ModelRecord.from_row(row) if row is not None else None


def count_active(db: Database) -> int:
    """How many versions serve now (one per ticker that can be predicted).

    Why: ``/metrics`` reads it at every scrape, so a count query instead of loading rows.
    """
    query = select(func.count()).select_from(ModelRegistry)
    with db.session() as session:
        return int(session.scalar(query.where(ModelRegistry.is_active.is_(True))) or 0)


def registry_outcome(db: Database, version_id: str) -> str:
    """One line on what a registration left serving, read from the registry (not inferred):
    ``KO: KO_... is now the active model (gate passed: ...)``, or registered inactive and
    which version keeps serving (or that none does)."""
    record = get_model(db, version_id)
    gate = record.metrics.gate
    why = f"gate {gate.status}: {gate.reason}" if gate else "no gate recorded"
    if record.is_active:
        return f"{record.ticker}: {version_id} is now the active model ({why})"
    try:
        serving = active_version_id(db, record.ticker)
        now = f"{serving} keeps serving {record.ticker}"
    except ModelNotFoundError:
        now = f"no model serves {record.ticker}"
    return f"{record.ticker}: {version_id} was registered inactive ({why}); {now}"


def active_tickers(db: Database) -> list[str]:
    """Every ticker with an active model, sorted: what ``predict --all`` forecasts.

    Why: one indexed column, not the rows' JSON, so listing 6,000 serving tickers stays cheap.
    """
    query = select(ModelRegistry.ticker).where(ModelRegistry.is_active.is_(True))
    with db.session() as session:
        return sorted(session.scalars(query.order_by(ModelRegistry.ticker)))


def active_version_ids(db: Database) -> set[str]:
    """The ids of the versions that serve now, all tickers.

    Why: the reports index marks which runs' models are active; it needs only the ids, so
    it reads one column instead of every row's JSON params and metrics.
    """
    query = select(ModelRegistry.version_id).where(ModelRegistry.is_active.is_(True))
    with db.session() as session:
        return set(session.scalars(query))


def set_report_path(db: Database, version_id: str, report_path: str) -> None:
    """Link a version to its rendered training report."""
    with db.transaction() as session:
        _row(session, version_id).report_path = report_path


def load_calibration_state(db: Database, version_id: str) -> dict[str, Any] | None:
    """A version's saved online calibration state, or None before its first update."""
    with db.session() as session:
        row = session.get(CalibrationStateRow, version_id)
        return dict(row.state) if row is not None else None


def save_calibration_state(
    db: Database,
    version_id: str,
    through: date,
    state: dict[str, Any],
    *,
    clock: Clock = utc_now,
) -> bool:
    """Store a newer state for a version; never replaces one that has seen later closes.

    Two processes that carry the same version forward compute the same state from the same
    closes, so a lost race (the other inserted first) is not an error. Returns whether this
    state was written.
    """
    try:
        with db.transaction() as session:
            row = session.get(CalibrationStateRow, version_id)
            if row is None:
                session.add(
                    CalibrationStateRow(
                        version_id=version_id, through=through, state=state, updated_at=clock()
                    )
                )
                return True
            if row.through >= through:
                return False
            row.through, row.state, row.updated_at = through, state, clock()
            return True
    except IntegrityError:
        return False
