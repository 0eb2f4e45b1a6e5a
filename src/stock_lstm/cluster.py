"""The one seam between many-ticker work and a Dask cluster (a local one by default).

Why: a ticker's training, one backtest and one sweep point each take one CPU core for
seconds to minutes and share nothing but the database and the folders, so they run as
independent Dask tasks. With ``STOCK_LSTM_DASK_SCHEDULER`` unset, each command starts a
``LocalCluster`` of worker processes (one per core, one thread each); set to
``tcp://host:port`` the same command sends the tasks to that cluster instead.

What every task obeys, so that it can run on any worker and run twice:

* arguments are plain data (the ticker, the settings as a dict from ``worker_settings``,
  parameters) and the result is a plain dict;
* every path is absolute: a worker's working folder is its own, not the caller's;
* expected failures (``StockLSTMError``: bad data, a failing notebook) come back as a row
  with ``status: failed``, because running them again would fail the same way; anything
  else raises, and Dask runs the task once more (``retries=1``);
* a worker process that dies mid-task is not an exception but a lost worker: the
  scheduler re-runs the task elsewhere until ``allowed-failures`` workers have died under
  it. The local cluster sets that to 1 (the task is tried twice, as with ``retries``); a
  remote scheduler keeps its own setting (``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES``,
  Dask's default 3). Tasks are idempotent (a training job registers at most one model), so
  a re-run costs time, never a duplicate.

The registry and the cache are shared through the database, so a remote cluster needs a
database server (PostgreSQL) and folders every worker mounts at the same absolute path;
``worker_settings`` refuses anything else with the fix in the message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from stock_lstm.config import Settings
from stock_lstm.errors import ClusterError
from stock_lstm.source_spec import SourceSpec, parse_source

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

SCHEDULER_ENV = "STOCK_LSTM_DASK_SCHEDULER"
#: Runs of a task that raised before its error is final (an exception is not a dead worker).
TASK_RETRIES = 1
#: Workers that may die under one task before it fails (local cluster only); see the module
#: docstring: with 1, a task whose worker died is run once more, like ``TASK_RETRIES``.
LOCAL_ALLOWED_FAILURES = 1
#: Tasks sent to a worker per thread. 1.0: a long training never queues behind another on
#: a busy worker while a free one waits, and a dying worker takes only its own task along.
WORKER_SATURATION = 1.0
#: The local dashboard; Dask picks a free port when this one is taken.
LOCAL_DASHBOARD_ADDRESS = "127.0.0.1:8787"
#: Seconds to reach a remote scheduler, and to wait for its first worker.
CONNECT_TIMEOUT_SECONDS = 30.0
#: Settings a worker never needs (the scheduler address is the caller's business).
_CALLER_ONLY_SETTINGS = ("dask_scheduler",)
_POSTGRES_HINT = "STOCK_LSTM_DATABASE_URL=postgresql+psycopg://USER:PASSWORD@HOST:5432/stock_lstm"


def shared_path(path: Path, name: str, scheduler: str | None) -> Path:
    """``path`` made absolute (local cluster) or refused when relative (remote scheduler)."""
    if path.is_absolute():
        return path
    if scheduler is None:
        return path.resolve()
    raise ClusterError(
        f"{name} is {str(path)!r}, a relative path, and STOCK_LSTM_DASK_SCHEDULER is set "
        f"({scheduler}): workers would resolve it in their own folders. Use absolute paths "
        f"on storage every worker mounts at the same place, e.g. {name}=/mnt/stock-lstm/"
        f"{path.name or 'data'}"
    )


def shared_source(source: str, scheduler: str | None) -> str:
    """A ``csv:DIR`` source with an absolute folder (``yahoo`` as it is)."""
    parsed = parse_source(source)
    if parsed.folder is None:
        return source
    return str(SourceSpec.csv(shared_path(parsed.folder, "STOCK_LSTM_SOURCE (csv:DIR)", scheduler)))


def check_shared_database(database_url: str, scheduler: str | None) -> str:
    """The database URL workers should open: SQLite paths made absolute on a local cluster;
    SQLite refused with a remote scheduler (its workers cannot share one file safely)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return database_url
    if scheduler is not None:
        raise ClusterError(
            f"STOCK_LSTM_DASK_SCHEDULER is set ({scheduler}) but the database is SQLite "
            f"({database_url}): workers on other hosts cannot share a SQLite file. Use a "
            f"PostgreSQL server every worker reaches: {_POSTGRES_HINT}"
        )
    if url.database in (None, "", ":memory:") or url.database.startswith("file:"):
        raise ClusterError(
            f"database {database_url} lives inside one process: worker processes need a "
            "file or a server (e.g. sqlite:////abs/path/stock_lstm.db)"
        )
    absolute = str(Path(url.database).expanduser().resolve())
    return url.set(database=absolute).render_as_string(hide_password=False)


def worker_settings(settings: Settings) -> dict[str, Any]:
    """``settings`` as the plain dict tasks receive, valid in any worker's folder.

    On the local cluster relative paths are resolved against the caller's folder; with
    ``dask_scheduler`` set, SQLite and relative models/reports/CSV folders raise
    ``ClusterError`` saying what to use instead.
    """
    scheduler = settings.dask_scheduler
    values = settings.model_dump(mode="json", exclude=set(_CALLER_ONLY_SETTINGS))
    values["database_url"] = check_shared_database(settings.database_url, scheduler)
    values["models_dir"] = str(
        shared_path(Path(settings.models_dir), "STOCK_LSTM_MODELS_DIR", scheduler)
    )
    values["reports_dir"] = str(
        shared_path(Path(settings.reports_dir), "STOCK_LSTM_REPORTS_DIR", scheduler)
    )
    values["source"] = shared_source(settings.source, scheduler)
    return values


def settings_from_dict(values: Mapping[str, Any]) -> Settings:
    """The worker side of ``worker_settings``: every field given, none read from the
    worker's environment (which may belong to another deployment)."""
    return Settings(**{**values, **dict.fromkeys(_CALLER_ONLY_SETTINGS)})


def settings_environment(settings: Settings) -> dict[str, str]:
    """Every set ``STOCK_LSTM_*`` variable of ``settings``, for a notebook kernel started on
    a worker: the kernel reads its settings from the environment, and a remote worker's
    environment is not the caller's."""
    environment = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None or name in _CALLER_ONLY_SETTINGS:
            continue
        environment[f"STOCK_LSTM_{name.upper()}"] = str(value)
    return environment


def failure_row(error: BaseException) -> dict[str, Any]:
    """The row of a task that raised even after its retry, or whose workers all died."""
    text = str(error).strip().splitlines()
    return {"status": "failed", "error": f"{type(error).__name__}: {text[0] if text else ''}"}


def worker_name() -> str:
    """``host:pid`` of the process running a task (shown in results, useful in faults)."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Executor:
    """A connected Dask client (and the local cluster it owns, if any)."""

    client: Client
    cluster: LocalCluster | None
    description: str

    @property
    def remote(self) -> bool:
        """True when tasks go to a scheduler given by address (not one we started)."""
        return self.cluster is None

    @property
    def dashboard_link(self) -> str | None:
        try:
            return self.client.dashboard_link
        except Exception:  # no dashboard (bokeh missing, or disabled)
            return None

    def submit(self, function: Callable[..., dict[str, Any]], *args: Any, label: str) -> Future:
        """One task; ``label`` names it in the dashboard (a unique key is derived)."""
        key = f"{function.__name__}-{label}-{uuid.uuid4().hex[:8]}"
        return self.client.submit(function, *args, key=key, retries=TASK_RETRIES, pure=False)

    def map(
        self,
        function: Callable[..., dict[str, Any]],
        calls: Mapping[str, tuple[Any, ...]],
        *,
        desc: str,
        unit: str = "task",
        progress: bool = True,
    ) -> dict[str, dict[str, Any]]:
        """Run ``function(*args)`` for every ``label: args``; ``{label: result row}`` in the
        order given. A task that still raises after its retry, or whose workers all died,
        becomes a ``failure_row``: one failure never stops the others."""
        futures = {
            self.submit(function, *args, label=label): label for label, args in calls.items()
        }
        results = self.gather(futures, desc=desc, unit=unit, progress=progress)
        return {label: results[label] for label in calls}

    def gather(
        self,
        futures: Mapping[Future, str],
        *,
        desc: str,
        unit: str = "task",
        progress: bool = True,
    ) -> dict[str, dict[str, Any]]:
        """Wait for ``futures`` (future -> label) as they finish, with a progress bar."""
        from distributed import as_completed
        from tqdm import tqdm

        results: dict[str, dict[str, Any]] = {}
        with tqdm(
            total=len(futures), desc=desc, unit=unit, disable=not progress, file=sys.stderr
        ) as bar:
            for future in as_completed(list(futures)):
                label = futures[future]
                try:
                    row = future.result()
                except Exception as exc:
                    row = failure_row(exc)
                results[label] = row
                bar.set_postfix_str(f"{label}: {row.get('status', '?')}", refresh=False)
                bar.update(1)
        return results

    def close(self) -> None:
        """Close the client and a local cluster. Worker processes that imported torch often
        take longer to exit than the nanny's 4 s grace on a busy machine; it then kills them,
        the intended end anyway, so neither that warning nor the heartbeat errors such a
        worker logs meanwhile are shown. A remote cluster's workers are left as they are."""
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.client.run(_quiet_for_shutdown)
        self.client.close()
        if self.cluster is not None:
            nanny_log = logging.getLogger("distributed.nanny")
            level = nanny_log.level
            nanny_log.setLevel(logging.ERROR)
            try:
                self.cluster.close()
            finally:
                nanny_log.setLevel(level)


def _local_cluster(workers: int | None, dashboard: bool) -> tuple[Client, LocalCluster]:
    import dask
    from distributed import Client, LocalCluster

    n_workers = workers or os.cpu_count() or 1
    if n_workers < 1:
        raise ClusterError(f"--workers must be at least 1, got {n_workers}")
    config = {
        "distributed.scheduler.allowed-failures": LOCAL_ALLOWED_FAILURES,
        "distributed.scheduler.worker-saturation": WORKER_SATURATION,
        # torch, numpy and the notebook kernels they start: one thread per worker process.
        "distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": 1,
        "distributed.nanny.pre-spawn-environ.MKL_NUM_THREADS": 1,
    }
    with dask.config.set(config):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=LOCAL_DASHBOARD_ADDRESS if dashboard else "127.0.0.1:0",
        )
    try:
        client = Client(cluster)
    except BaseException:
        cluster.close()
        raise
    return client, cluster


def connect_scheduler(address: str) -> Client:
    """A client of the scheduler at ``address`` that has at least one worker, or a
    ``ClusterError`` saying what to start."""
    from distributed import Client

    _quiet_dask_logs()

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_SECONDS)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} ({exc}): start it with "
            f"`dask scheduler`, or unset {SCHEDULER_ENV} to run on a local cluster"
        ) from exc
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_SECONDS)
    except TimeoutError as exc:
        client.close()
        raise ClusterError(
            f"the Dask scheduler at {address} has no workers after "
            f"{CONNECT_TIMEOUT_SECONDS:.0f} s: start some with `dask worker {address} "
            "--nthreads 1`"
        ) from exc
    return client


def _quiet_for_shutdown() -> None:
    """Run on each local worker before the cluster closes: nothing it logs now matters."""
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def _quiet_dask_logs() -> None:
    """Keep Dask's INFO chatter (workers starting and stopping) out of a command's output
    unless the caller logs at INFO or below itself (``-v``); importing ``distributed``
    resets its loggers to INFO, so this runs after that import."""
    import distributed  # noqa: F401

    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("distributed").setLevel(logging.WARNING)


@contextlib.contextmanager
def open_executor(
    scheduler: str | None,
    *,
    workers: int | None = None,
    dashboard: bool = True,
    echo: IO[str] | None = sys.stderr,
) -> Iterator[Executor]:
    """Connect to ``scheduler`` (``tcp://host:port``) or start a local cluster of ``workers``
    processes (default: one per core); says which, with the dashboard link, on ``echo``.
    The client, and a local cluster with its processes, are closed on exit."""
    began = time.perf_counter()
    _quiet_dask_logs()
    if scheduler:
        client = connect_scheduler(scheduler)
        cluster = None
        n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        description = f"Dask scheduler {scheduler} ({n} worker(s) now)"
        if workers:
            description += f"; --workers {workers} ignored: the cluster decides"
    else:
        client, cluster = _local_cluster(workers, dashboard)
        n = len(cluster.workers)
        description = f"local Dask cluster of {n} worker process(es), 1 thread each"
    executor = Executor(client, cluster, description)
    try:
        if echo is not None:
            link = executor.dashboard_link if dashboard or scheduler else None
            suffix = f"; dashboard: {link}" if link else ""
            seconds = time.perf_counter() - began
            print(f"{description}{suffix} (ready in {seconds:.1f} s)", file=echo, flush=True)
        yield executor
    finally:
        executor.close()
