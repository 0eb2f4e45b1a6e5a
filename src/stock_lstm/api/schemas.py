"""Request and response bodies of the HTTP API, all in one place.

Requests forbid unknown fields and take numbers strictly (``true`` or ``"5"`` is not an epoch
count), so a typo is a 422 that names the field instead of a silently ignored value. Ranges
come from the package (``PARAM_RANGES``, ``MIN_DAYS``/``MAX_DAYS``): the CLI, the notebooks
and the API accept exactly the same values.

Responses about a domain record (a registry row, a job, a forecast, a cache status or sync)
are read from it by pydantic (``Response.model_validate(record)``, see ``RecordResponse``), so
a field the record and the response share is written once; only a field the record does not
hold (a URL, a second record's state) has a small adapter that says where it comes from.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    create_model,
    model_validator,
)

from stock_lstm.errors import InvalidTickerError
from stock_lstm.models.forecasting import MAX_DAYS, MIN_DAYS
from stock_lstm.models.jobs import JobRecord
from stock_lstm.models.params import PARAM_CHOICES, PARAM_RANGES, PARAMETERS
from stock_lstm.models.records import GateDecision, TrainingMetrics
from stock_lstm.models.registry import ModelRecord
from stock_lstm.tickers import validate_ticker

API_PREFIX = "/api/v1"
#: Tickers one batch prediction may ask for.
MAX_BATCH_TICKERS = 50
#: Characters of a raw ticker a batch accepts before validating it (longer is never a symbol).
MAX_RAW_TICKER_CHARS = 32


def report_url(version_id: str) -> str:
    return f"{API_PREFIX}/reports/{version_id}"


def job_status_url(job_id: str) -> str:
    return f"{API_PREFIX}/training/status/{job_id}"


def _canonical_ticker(value: str) -> str:
    try:
        return validate_ticker(value)
    except InvalidTickerError as exc:
        raise ValueError(str(exc)) from None


#: A ticker validated and upper-cased by ``stock_lstm.tickers.validate_ticker``.
Ticker = Annotated[str, AfterValidator(_canonical_ticker)]


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong and what to do about it.")


class RecordResponse(BaseModel):
    """Base of responses read from a domain record's attributes (pydantic's
    ``from_attributes``): ``Response.model_validate(record)`` takes each field from the
    attribute of the same name, so no field is copied by hand and none can be forgotten."""

    model_config = ConfigDict(from_attributes=True)


class _WithDerived:
    """A record seen with a few extra attributes, for ``model_validate``.

    Why: a response field the record does not hold (``report_url`` is built from the version
    id) is still required in the OpenAPI schema, so it cannot take a default and be filled in
    afterwards; this view lets pydantic read it like the record's own fields, and the adapter
    that builds it names exactly what is derived.
    """

    def __init__(self, record: object, **derived: Any) -> None:
        self._record = record
        self._derived = derived

    def __getattr__(self, name: str) -> Any:
        if name in self._derived:
            return self._derived[name]
        return getattr(self._record, name)


# --- training -------------------------------------------------------------------------------


#: What each training parameter means, from its one declaration (``models.params``); the
#: ranges and choices are added where the fields are made.
HYPERPARAMETER_HELP = {name: spec.help for name, spec in PARAMETERS.items()}


def _hyperparameter_fields() -> dict[str, Any]:
    """One optional field per ``PARAM_RANGES``/``PARAM_CHOICES`` entry, so a parameter added
    to ``TrainParams`` is accepted here with the same bounds, and nothing else is."""
    fields: dict[str, Any] = {}
    for name, (low, high) in PARAM_RANGES.items():
        kind = StrictFloat if isinstance(low, float) else StrictInt
        text = HYPERPARAMETER_HELP.get(name, "training parameter")
        fields[name] = (
            kind | None,
            Field(None, ge=low, le=high, description=f"{text} ({low}..{high})"),
        )
    for name, choices in PARAM_CHOICES.items():
        text = HYPERPARAMETER_HELP.get(name, "training parameter")
        fields[name] = (
            Literal[choices] | None,  # type: ignore[valid-type]
            Field(None, description=f"{text}: one of {', '.join(choices)}"),
        )
    return fields


HYPERPARAMETERS = (*PARAM_RANGES, *PARAM_CHOICES)


class _TrainingStartBase(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"ticker": "AAPL", "epochs": 20, "seed": 7}]},
    )

    ticker: Ticker = Field(description="Yahoo Finance symbol, e.g. AAPL or PETR4.SA.")
    start: date | None = Field(None, description="First price date to use (YYYY-MM-DD).")
    end: date | None = Field(None, description="Last price date to use (YYYY-MM-DD).")

    @model_validator(mode="after")
    def _start_before_end(self) -> _TrainingStartBase:
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}: swap them")
        return self

    def hyperparameters(self) -> dict[str, Any]:
        """Only the hyperparameters the caller set (the notebook's defaults fill the rest)."""
        given = {name: getattr(self, name) for name in HYPERPARAMETERS}
        return {name: value for name, value in given.items() if value is not None}


#: Train a model for ``ticker``; unset hyperparameters keep the notebook's defaults.
TrainingStartRequest = create_model(
    "TrainingStartRequest",
    __base__=_TrainingStartBase,
    __doc__="Train a model for `ticker`; unset hyperparameters keep the notebook's defaults.",
    **_hyperparameter_fields(),
)


#: A pooled epoch reads every universe ticker (about 160 per-ticker epochs' work), so a
#: universal job may ask for at most the design's default budget; early stopping (3 epochs
#: without improvement) usually ends it within ten.
UNIVERSE_MAX_EPOCHS = 100


class UniverseTrainingRequest(RequestModel):
    """Train the universal model on the server's universe folder (``STOCK_LSTM_UNIVERSE_DIR``,
    never a path from the request) and serve it for ``ticker``, as ``make universe`` does."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"ticker": "KO", "until": "2020-01-01", "seed": 1}]},
    )

    ticker: Ticker = Field(description="The ticker the universal model is activated for.")
    until: date | None = Field(
        None, description="Read no universe row dated on or after this day (YYYY-MM-DD)."
    )
    held_out: StrictInt = Field(
        40, ge=0, le=1000, description="Universe tickers never trained on (at most a fifth)."
    )
    epochs: StrictInt = Field(
        UNIVERSE_MAX_EPOCHS,
        ge=1,
        le=UNIVERSE_MAX_EPOCHS,
        description=f"Maximum pooled epochs (1..{UNIVERSE_MAX_EPOCHS}).",
    )
    seed: StrictInt = Field(42, ge=PARAM_RANGES["seed"][0], le=PARAM_RANGES["seed"][1])

    def notebook_parameters(self) -> dict[str, Any]:
        """The parameters of notebook 06 this request sets."""
        values: dict[str, Any] = {
            "held_out": self.held_out,
            "epochs": self.epochs,
            "seed": self.seed,
        }
        if self.until is not None:
            values["until"] = self.until.isoformat()
        return values


class TrainingStarted(BaseModel):
    job_id: str
    ticker: str
    status: Literal["queued"] = "queued"
    status_url: str = Field(description="Poll this for progress.")


class EpochLoss(BaseModel):
    """One epoch's losses; a loss that was not finite (a diverging epoch) is stored as null."""

    epoch: int
    train_loss: float | None
    val_loss: float | None


def generic_job_error(job_id: str) -> str:
    """The error text of a failed job for a client that may not see server details."""
    return (
        f"the job did not complete: the reason is in the server log (job {job_id}); clients "
        "that send the server's API token see it here"
    )


class JobResponse(RecordResponse):
    """A training job; ``report_url`` is set once it completed and registered a model."""

    job_id: str
    ticker: str
    status: Literal["queued", "running", "completed", "failed", "cancelled"]
    progress: float = Field(description="Percent of the epoch budget done (0..100).")
    current_epoch: int
    total_epochs: int
    train_loss: float | None
    val_loss: float | None
    losses: list[EpochLoss]
    error: str | None
    params: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    version_id: str | None
    report_url: str | None
    model_active: bool | None = Field(
        None, description="Whether the job's model serves its ticker now (set once completed)."
    )
    gate: GateDecision | None = Field(
        None,
        description="The promotion gate's verdict on the job's model: status (passed, failed, "
        "forced), value and reason, e.g. why it was registered inactive.",
    )

    def for_client(self, show_details: bool) -> JobResponse:
        """This job as a client may see it: without ``show_details`` a failure's text (which
        names the CSV folder and its files, a host and a pid) becomes a generic sentence."""
        if show_details or not self.error:
            return self
        return self.model_copy(update={"error": generic_job_error(self.job_id)})

    @classmethod
    def from_record(cls, job: JobRecord, model: ModelRecord | None = None) -> JobResponse:
        """The job's own fields one to one, plus three it does not hold: ``report_url`` (an
        API path, only once the job completed with a version) and ``model_active``/``gate``
        (read from ``model``, the job's registered version when the caller looked it up).
        """
        completed = job.status == "completed" and job.version_id
        derived = _WithDerived(
            job,
            report_url=report_url(job.version_id) if completed else None,
            model_active=model.is_active if model is not None else None,
            gate=model.metrics.gate if model is not None else None,
        )
        return cls.model_validate(derived)


class JobList(BaseModel):
    jobs: list[JobResponse]
    total: int = Field(description="Jobs matching the filters, on every page.")
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last one."
    )


# --- models ---------------------------------------------------------------------------------


class ModelResponse(RecordResponse):
    """A registered model version (file paths stay on the server)."""

    version_id: str
    ticker: str
    created_at: datetime
    is_active: bool
    params: dict[str, Any]
    metrics: TrainingMetrics = Field(
        description="Test-set scores per horizon beside persistence (the next day's repeated "
        "at the top), the promotion gate, interval calibration and the training run."
    )
    first_date: date
    last_date: date
    rows: int
    data_sha256: str
    code_version: str
    report_url: str | None

    @classmethod
    def from_record(cls, record: ModelRecord) -> ModelResponse:
        """The record's fields one to one, plus ``report_url``: an API path built from the
        version id when a report exists (the record holds the report's file path, which stays
        on the server)."""
        url = report_url(record.version_id) if record.report_path else None
        return cls.model_validate(_WithDerived(record, report_url=url))

    def for_client(self, show_details: bool, settings: Any) -> ModelResponse:
        """This version as a client may see it: without ``show_details`` its parameters
        name no server folder (``csv:/abs/dir`` becomes ``csv:[folder]``; see
        ``api.redaction``)."""
        if show_details:
            return self
        from stock_lstm.api.redaction import redact_value

        return self.model_copy(update={"params": redact_value(self.params, settings)})


class ModelList(BaseModel):
    models: list[ModelResponse]
    total: int = Field(description="Versions matching the filter, on every page.")
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last one."
    )


# --- predictions ----------------------------------------------------------------------------

DaysAhead = Annotated[
    StrictInt, Field(ge=MIN_DAYS, le=MAX_DAYS, description="Trading days to forecast.")
]


class PredictRequest(RequestModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"ticker": "AAPL", "days_ahead": 5}]}
    )

    ticker: Ticker = Field(description="A ticker with an active model.")
    days_ahead: DaysAhead = 5


class BatchPredictRequest(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"tickers": ["AAPL", "MSFT"], "days_ahead": 5}]},
    )

    tickers: list[Annotated[str, StringConstraints(max_length=MAX_RAW_TICKER_CHARS)]] = Field(
        min_length=1,
        max_length=MAX_BATCH_TICKERS,
        description="Each one is answered on its own; a bad ticker does not fail the others.",
    )
    days_ahead: DaysAhead = 5


class ForecastPoint(RecordResponse):
    date: date
    close: float = Field(description="Forecast close, in price units.")
    lower: float | None = Field(None, description="Lower bound of the prediction interval.")
    upper: float | None = Field(None, description="Upper bound of the prediction interval.")
    quantiles: dict[str, float] | None = Field(
        None,
        description="Calibrated quantiles of the close by level ('0.025' ... '0.975'): the "
        "50/80/90/95% intervals of a fan chart and the median.",
    )


class ForecastResponse(RecordResponse):
    ticker: str
    version_id: str
    last_date: date = Field(description="Last cached close the forecast starts from.")
    last_close: float
    predictions: list[ForecastPoint]
    interval_level: float | None = Field(
        None,
        description="Coverage the bounds aim for (e.g. 0.9); calibrated online as closes arrive.",
    )
    gate: GateDecision | None = Field(
        None, description="The promotion gate's verdict on this model (status, value, reason)."
    )
    warnings: list[str]
    combined_with: list[str] = Field(
        default_factory=list,
        description="Per day, the classical anchor (e.g. 'har_range') the interval and "
        "quantiles average with the model's, in log space with equal weights: the anchor "
        "strongest at that horizon on the model's test slice. Empty: the model's own.",
    )


class BatchError(BaseModel):
    status: int = Field(description="The HTTP status a single prediction would have answered.")
    detail: str


class BatchItem(BaseModel):
    ticker: str
    ok: bool
    forecast: ForecastResponse | None = None
    error: BatchError | None = None


class BatchPredictResponse(BaseModel):
    results: list[BatchItem]


# --- cache ----------------------------------------------------------------------------------


class CacheStatusResponse(RecordResponse):
    ticker: str
    rows: int
    first_date: date | None
    last_date: date | None
    updated_at: datetime | None = Field(description="Oldest download time of the rows (UTC).")
    fresh: bool = Field(description="True while younger than STOCK_LSTM_CACHE_EXPIRY_HOURS.")


class SyncResponse(RecordResponse):
    ticker: str
    rows: int
    first_date: date | None
    last_date: date | None
    from_cache: bool = Field(description="True when the fresh cache answered (a cache hit).")
    dropped_rows: int
    drop_reasons: dict[str, int]
    downloaded_rows: int
    incremental: bool
    stale: bool
    warning: str | None
    updated_at: datetime | None
    source: str


class CacheDeleted(BaseModel):
    ticker: str
    deleted_rows: int


# --- health ---------------------------------------------------------------------------------


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    version: str
    database: str = Field(description="'ok' or what failed.")
    models_dir: str = Field(description="'ok' or what failed.")
