"""Training jobs off the event loop: a small pool of worker threads and a bounded queue.

A job is the same notebook ``make train`` runs (``run_pipeline(["train"], ...)``), or for a
universal training the one ``make universe`` runs (stage ``universe``: a pooled fit served for
the job's ticker); the notebook's kernel is a separate process and torch releases the GIL,
so a thread per worker is enough. The worker marks the job running when it takes it; the
notebook records each epoch and marks the job completed when it registers the model. The
worker makes sure a job that ends any other way is marked failed with the reason.

Workers are daemon threads: stopping the server does not wait for a training that may take
an hour. Such a job stays "running" in the database, owned by the process that trains it; the
next start-up (or any CLI command) marks it failed once that process is gone
(``jobs.reconcile_jobs``). Jobs still waiting in the queue are marked failed at shutdown.

With ``STOCK_LSTM_DASK_SCHEDULER`` set, ``ClusterTrainingPool`` sends each job to that Dask
cluster instead (the same notebook, run by ``pipeline.batch.run_stages_task`` on a worker),
so a server's trainings spread over the cluster's machines.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from stock_lstm.errors import ConflictError, StockLSTMError
from stock_lstm.models import jobs
from stock_lstm.models.jobs import JobRecord
from stock_lstm.monitoring.metrics import ApiMetrics
from stock_lstm.workflows import AppContext

if TYPE_CHECKING:
    from distributed import Future

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 1
#: Seconds shutdown waits for idle workers to exit (busy ones are daemons and left running).
SHUTDOWN_JOIN_SECONDS = 2.0


@dataclass(frozen=True)
class TrainingTask:
    """One queued training: the job row's id and what the caller asked for."""

    job_id: str
    ticker: str
    hyperparameters: dict[str, Any]
    start: date | None = None
    end: date | None = None
    #: The pipeline stage that trains: ``train`` (one ticker) or ``universe`` (pooled).
    stage: str = "train"


#: Runs one training to the end; raises on failure. Injectable so tests can train in-process.
RunTraining = Callable[[AppContext, TrainingTask], Any]


def run_notebook_training(ctx: AppContext, task: TrainingTask) -> None:
    """The train notebook through the pipeline runner, exactly as ``make train`` runs it."""
    from stock_lstm.pipeline.runner import run_pipeline

    parameters: dict[str, Any] = {"job_id": task.job_id, **task.hyperparameters}
    if task.start is not None:
        parameters["start"] = task.start.isoformat()
    if task.end is not None:
        parameters["end"] = task.end.isoformat()
    run_pipeline(
        [task.stage],
        task.ticker,
        ctx.settings,
        parameters,
        progress=False,
        execution_timeout=job_timeout_seconds(ctx),
    )


def job_timeout_seconds(ctx: AppContext) -> float:
    """A job's wall-clock limit (``STOCK_LSTM_JOB_TIMEOUT_HOURS``) in seconds."""
    return ctx.settings.job_timeout_hours * 3600.0


class TrainingUnavailableError(StockLSTMError):
    """The pool takes no job now: the queue is full or the server is shutting down."""

    http_status = 503
    retry_after_seconds = 60


class TooManyJobsError(StockLSTMError):
    """This client already has as many unfinished jobs as one client may."""

    http_status = 429
    retry_after_seconds = 60


class TrainingPool:
    """Accepts jobs (one unfinished job per ticker) and runs them on ``workers`` threads."""

    def __init__(
        self,
        ctx: AppContext,
        run_training: RunTraining,
        metrics: ApiMetrics,
        *,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.ctx = ctx
        self.run_training = run_training
        self.metrics = metrics
        # Bounded by ``submit`` rather than ``maxsize``, so shutdown sentinels never block.
        self._queue: queue.Queue[TrainingTask | None] = queue.Queue()
        # Serializes "is this ticker busy?" with "create its job", so two concurrent starts
        # for one ticker cannot both pass the check.
        self._submit_lock = threading.Lock()
        self._closed = False
        self._clients: dict[str, str] = {}  # unfinished job id -> the client that started it
        self._threads = [
            threading.Thread(target=self._work, name=f"training-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self,
        ticker: str,
        hyperparameters: dict[str, Any],
        job_params: dict[str, Any],
        *,
        start: date | None = None,
        end: date | None = None,
        stage: str = "train",
        client: str | None = None,
    ) -> JobRecord:
        """Create the queued job row and hand it to a worker.

        Raises ``ConflictError`` (409) when the ticker already has a queued or running job,
        ``TooManyJobsError`` (429) when ``client`` has ``STOCK_LSTM_MAX_JOBS_PER_CLIENT``
        unfinished jobs and ``TrainingUnavailableError`` (503) when
        ``STOCK_LSTM_MAX_QUEUED_JOBS`` wait already; none of them writes anything.
        """
        with self._submit_lock:
            if self._closed:
                raise TrainingUnavailableError(
                    "the server is shutting down: start the training again"
                )
            busy = self._unfinished_job(ticker)
            if busy is not None:
                raise ConflictError(
                    f"{ticker} is already training in job {busy.job_id} ({busy.status}): follow "
                    f"it with GET /api/v1/training/status/{busy.job_id} and start again when "
                    "it has finished"
                )
            per_client = self.ctx.settings.max_jobs_per_client
            if client is not None and self._client_jobs(client) >= per_client:
                raise TooManyJobsError(
                    f"this client already has {per_client} unfinished training jobs "
                    "(STOCK_LSTM_MAX_JOBS_PER_CLIENT): wait for one to finish"
                )
            queued = self.ctx.settings.max_queued_jobs
            if self._pending() >= queued:
                raise TrainingUnavailableError(
                    f"{queued} training jobs are already waiting (STOCK_LSTM_MAX_QUEUED_JOBS): "
                    "retry later"
                )
            job = jobs.create_job(self.ctx.db, ticker, job_params, clock=self.ctx.clock)
            if client is not None:
                self._clients[job.job_id] = client
            self._dispatch(TrainingTask(job.job_id, ticker, hyperparameters, start, end, stage))
        return job

    def _client_jobs(self, client: str) -> int:
        """Unfinished jobs ``client`` started (finished ones are forgotten here)."""
        for job_id in list(self._clients):
            try:
                finished = jobs.get_job(self.ctx.db, job_id).status not in jobs.UNFINISHED
            except StockLSTMError:
                finished = True
            if finished:
                del self._clients[job_id]
        return sum(owner == client for owner in self._clients.values())

    def _pending(self) -> int:
        """Jobs accepted but not taken by a worker yet."""
        return self._queue.qsize()

    def cancel(self, job_id: str) -> None:
        """The job's row is already ``cancelled``: a worker that takes it skips it (its
        ``mark_running`` refuses), and a running training stops at its next epoch."""

    def _dispatch(self, task: TrainingTask) -> None:
        """Hand a new job to the workers."""
        self._queue.put(task)

    def _unfinished_job(self, ticker: str) -> JobRecord | None:
        for status in jobs.UNFINISHED:
            found = jobs.list_jobs(self.ctx.db, ticker=ticker, status=status, limit=1)
            if found:
                return found[0]
        return None

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            self._run(task)

    def _run(self, task: TrainingTask) -> None:
        self.metrics.training_running.inc()
        began = time.perf_counter()
        try:
            # "running" from the moment a worker has it, not only once the notebook's kernel
            # is up and reaches its training cell (which marks it running again).
            jobs.mark_running(self.ctx.db, task.job_id, clock=self.ctx.clock)
            self.run_training(self.ctx, task)
        except Exception as exc:
            log.warning("training job %s (%s) failed: %s", task.job_id, task.ticker, exc)
            self._fail_unless_failed(task.job_id, str(exc) or type(exc).__name__)
        else:
            self._fail_unless_completed(task.job_id)
        finally:
            self.metrics.training_running.dec()
            self.metrics.training_duration.observe(time.perf_counter() - began)
            self.metrics.training_jobs.labels(self._final_status(task.job_id)).inc()

    def _fail_unless_failed(self, job_id: str, error: str) -> None:
        try:
            if jobs.get_job(self.ctx.db, job_id).status != jobs.FAILED:
                jobs.mark_failed(self.ctx.db, job_id, error, clock=self.ctx.clock)
        except Exception:
            log.exception("could not mark training job %s failed", job_id)

    def _fail_unless_completed(self, job_id: str) -> None:
        """A run that returned without registering a model did not succeed either; one that
        registered (an earlier attempt's model, reused by a retried task) is complete."""
        try:
            job = jobs.get_job(self.ctx.db, job_id)
            if job.status in jobs.UNFINISHED and job.version_id:
                jobs.mark_completed(self.ctx.db, job_id, job.version_id, clock=self.ctx.clock)
            elif job.status in jobs.UNFINISHED:
                jobs.mark_failed(
                    self.ctx.db,
                    job_id,
                    "training finished without registering a model: see the run's report "
                    "under the reports folder",
                    clock=self.ctx.clock,
                )
        except Exception:
            log.exception("could not check training job %s", job_id)

    def _final_status(self, job_id: str) -> str:
        try:
            return jobs.get_job(self.ctx.db, job_id).status
        except Exception:
            return jobs.FAILED

    def shutdown(self) -> None:
        """Stop accepting jobs, fail the ones still queued, let idle workers exit."""
        with self._submit_lock:
            self._closed = True
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                self._fail_unless_failed(
                    task.job_id, "the server shut down before the job started: start it again"
                )
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + SHUTDOWN_JOIN_SECONDS
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


class ClusterTrainingPool(TrainingPool):
    """The same rules as ``TrainingPool`` (one unfinished job per ticker, a bounded backlog),
    but each job runs as a Dask task on the cluster at ``scheduler``.

    The task is ``run_stages_task`` (injectable for tests): the train notebook with the job's
    id, so the job's progress, its owner (the worker's kernel) and its model are written by
    the worker, and a task Dask runs again finds the job's model instead of training twice.
    Here, when the task ends, a job it did not complete is marked failed with the reason.
    The settings go to the workers as data: a SQLite database or relative folders are
    refused when the pool starts (``cluster.worker_settings``).

    At shutdown, jobs still queued are cancelled and failed; jobs already running finish
    on their workers (as the local pool's daemon threads do) and record their own end.
    """

    def __init__(
        self,
        ctx: AppContext,
        metrics: ApiMetrics,
        *,
        scheduler: str,
        task: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        from stock_lstm.cluster import connect_scheduler, worker_settings
        from stock_lstm.pipeline.batch import run_stages_task

        # No threads and no queue of our own (no super().__init__): the cluster is both.
        self.ctx = ctx
        self.metrics = metrics
        self._submit_lock = threading.Lock()
        self._closed = False
        self._clients = {}
        self._worker_settings = worker_settings(ctx.settings)
        self._task = task or run_stages_task
        self._futures: dict[Future, TrainingTask] = {}
        self._futures_lock = threading.Lock()
        self._client = connect_scheduler(scheduler)
        log.info("training jobs go to the Dask scheduler at %s", scheduler)

    def _pending(self) -> int:
        """Jobs on the cluster that have not finished (queued there or running)."""
        with self._futures_lock:
            return sum(not future.done() for future in self._futures)

    def _dispatch(self, task: TrainingTask) -> None:
        from stock_lstm.cluster import TASK_RETRIES
        from stock_lstm.pipeline.runner import new_run_id

        parameters: dict[str, Any] = dict(task.hyperparameters)
        if task.start is not None:
            parameters["start"] = task.start.isoformat()
        if task.end is not None:
            parameters["end"] = task.end.isoformat()
        future = self._client.submit(
            self._task,
            self._worker_settings,
            task.ticker,
            [task.stage],
            parameters,
            new_run_id(self.ctx.clock),
            task.job_id,
            execution_timeout=job_timeout_seconds(self.ctx),
            whole_index=True,
            key=f"{task.stage}-{task.ticker}-{task.job_id}",
            retries=TASK_RETRIES,
            pure=False,
        )
        began = time.perf_counter()
        with self._futures_lock:
            self._futures[future] = task
        self.metrics.training_running.inc()
        future.add_done_callback(lambda done: self._finished(done, task, began))

    def _finished(self, future: Future, task: TrainingTask, began: float) -> None:
        """Runs in the Dask client's thread when a job's task ends, however it ended."""
        from stock_lstm.cluster import failure_row

        try:
            row = future.result()
        except BaseException as exc:  # raised twice, all its workers died, or cancelled
            row = failure_row(exc)
        try:
            if row.get("status") == "ok":
                self._fail_unless_completed(task.job_id)
            else:
                log.warning("training job %s (%s) failed: %s", task.job_id, task.ticker, row)
                self._fail_unless_failed(task.job_id, str(row.get("error") or "failed"))
        finally:
            with self._futures_lock:
                self._futures.pop(future, None)
            self.metrics.training_running.dec()
            self.metrics.training_duration.observe(time.perf_counter() - began)
            self.metrics.training_jobs.labels(self._final_status(task.job_id)).inc()

    def cancel(self, job_id: str) -> None:
        """Cancel the job's task if the cluster has not started it (a running one stops at
        its next epoch, reading the job's status)."""
        with self._futures_lock:
            futures = [future for future, task in self._futures.items() if task.job_id == job_id]
        for future in futures:
            future.cancel()

    def shutdown(self) -> None:
        """Stop accepting jobs, cancel and fail the queued ones, disconnect from the cluster."""
        with self._submit_lock:
            self._closed = True
        with self._futures_lock:
            waiting = list(self._futures.items())
        for future, task in waiting:
            try:
                queued = jobs.get_job(self.ctx.db, task.job_id).status == jobs.QUEUED
            except Exception:
                queued = False
            if queued:
                future.cancel()
                self._fail_unless_failed(
                    task.job_id, "the server shut down before the job started: start it again"
                )
        self._client.close()


def make_training_pool(
    ctx: AppContext, metrics: ApiMetrics, run_training: RunTraining | None = None
) -> TrainingPool:
    """The cluster pool when ``STOCK_LSTM_DASK_SCHEDULER`` is set (and no ``run_training``
    is injected), else the local pool of threads running ``run_training`` (default: the
    train notebook)."""
    if run_training is None and ctx.settings.dask_scheduler:
        return ClusterTrainingPool(ctx, metrics, scheduler=ctx.settings.dask_scheduler)
    return TrainingPool(ctx, run_training or run_notebook_training, metrics)
