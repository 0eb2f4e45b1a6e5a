"""Start training jobs and follow them (``/api/v1/training``)."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status

from stock_lstm.api.deps import (
    ContextDep,
    CursorQuery,
    PoolDep,
    ServerDetailsDep,
    TokenRequired,
    client_address,
    id_path,
)
from stock_lstm.api.schemas import (
    ErrorResponse,
    JobList,
    JobResponse,
    TrainingStarted,
    TrainingStartRequest,
    UniverseTrainingRequest,
    job_status_url,
)
from stock_lstm.db.pages import MAX_PAGE_SIZE
from stock_lstm.errors import InvalidParameterError, ModelNotFoundError
from stock_lstm.models import jobs
from stock_lstm.models.registry import get_model
from stock_lstm.models.training import TrainParams

router = APIRouter(prefix="/training", tags=["training"])


def check_job_cost(params: TrainParams, limit: float) -> None:
    """Refuse a request whose training could hold the worker for days (422, the bound named)."""
    cost = params.relative_cost
    if cost > limit:
        raise InvalidParameterError(
            f"this training would cost {cost:.3g}x the default's compute (epochs, "
            "num_layers, hidden_size, sequence_length, and small chunk_length or batch_size "
            f"multiply it); one job may cost at most {limit:g}x (STOCK_LSTM_MAX_JOB_COST): "
            "lower epochs or the network's size, or keep chunk_length and batch_size at "
            "their defaults"
        )


JobId = Annotated[str, id_path("The id POST /training/start returned.")]

#: What both routes that queue a job declare: a 202, the token, the refusals.
_STARTS_A_JOB: dict[str, Any] = {
    "status_code": status.HTTP_202_ACCEPTED,
    "dependencies": [TokenRequired],
    "responses": {
        401: {"model": ErrorResponse},
        409: {"model": ErrorResponse, "description": "The ticker is already training."},
        422: {"model": ErrorResponse},
        429: {"model": ErrorResponse, "description": "This client has too many jobs."},
        503: {"model": ErrorResponse, "description": "The training queue is full."},
    },
}


def _queued(job: Any, response: Response) -> TrainingStarted:
    """The 202 answer to a queued job, its status URL also in ``Location``."""
    response.headers["Location"] = job_status_url(job.job_id)
    return TrainingStarted(
        job_id=job.job_id, ticker=job.ticker, status_url=job_status_url(job.job_id)
    )


@router.post("/start", **_STARTS_A_JOB)
def start_training(
    body: TrainingStartRequest, pool: PoolDep, request: Request, response: Response
) -> TrainingStarted:
    """Queue a training of the train notebook (the same run as `make train`).

    Poll `status_url`; a completed job names the new model version, which is already the
    ticker's active model, and links its report.
    """
    hyperparameters = body.hyperparameters()
    resolved = TrainParams.from_dict(hyperparameters)
    check_job_cost(resolved, pool.ctx.settings.max_job_cost)
    job = pool.submit(
        body.ticker,
        hyperparameters,
        resolved.to_dict(),
        start=body.start,
        end=body.end,
        client=client_address(request),
    )
    return _queued(job, response)


@router.post("/universe", **_STARTS_A_JOB)
def start_universe_training(
    body: UniverseTrainingRequest, pool: PoolDep, request: Request, response: Response
) -> TrainingStarted:
    """Queue a universal training (notebook 06, the same run as `make universe`): one network
    fitted on the server's universe folder, then activated for `ticker` under the promotion
    gate. The job is the ticker's: poll `status_url`; once completed it names the ticker's
    new version (built from the universal one) and links the report."""
    params = TrainParams(epochs=body.epochs, seed=body.seed).validate()
    job = pool.submit(
        body.ticker,
        body.notebook_parameters(),
        params.to_dict(),
        stage="universe",
        client=client_address(request),
    )
    return _queued(job, response)


@router.get("/status/{job_id}", responses={404: {"model": ErrorResponse}})
def training_status(job_id: JobId, ctx: ContextDep, details: ServerDetailsDep) -> JobResponse:
    """A job's status, progress per epoch, losses, error and, once completed, its model
    version, whether that model is active and the promotion gate's verdict."""
    job = jobs.get_job(ctx.db, job_id)
    model = None
    if job.status == "completed" and job.version_id:
        try:
            model = get_model(ctx.db, job.version_id)
        except ModelNotFoundError:  # deleted since: the job still reports what it made
            model = None
    return JobResponse.from_record(job, model).for_client(details)


@router.post(
    "/{job_id}/cancel",
    dependencies=[TokenRequired],
    responses={
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
        409: {"model": ErrorResponse, "description": "The job has already finished."},
    },
)
def cancel_training(
    job_id: JobId, ctx: ContextDep, pool: PoolDep, details: ServerDetailsDep
) -> JobResponse:
    """Cancel a queued or running job: a queued one never starts, a running one stops at its
    next epoch; either way it registers no model and its status is `cancelled`."""
    job = jobs.cancel_job(ctx.db, job_id, clock=ctx.clock)
    pool.cancel(job_id)
    return JobResponse.from_record(job).for_client(details)


@router.get("/jobs", responses={422: {"model": ErrorResponse}})
def list_training_jobs(
    ctx: ContextDep,
    details: ServerDetailsDep,
    ticker: Annotated[str | None, Query(description="Only this ticker's jobs.")] = None,
    status: Annotated[
        Literal["queued", "running", "completed", "failed", "cancelled"] | None,
        Query(description="Only jobs in this state."),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="At most this many jobs.")
    ] = 50,
    cursor: CursorQuery = None,
) -> JobList:
    """Jobs, newest first, a page at a time (``total`` in all; follow ``next_cursor``)."""
    page = jobs.list_jobs_page(ctx.db, ticker=ticker, status=status, limit=limit, cursor=cursor)
    return JobList(
        jobs=[JobResponse.from_record(job).for_client(details) for job in page.items],
        total=page.total,
        next_cursor=page.next_cursor,
    )
