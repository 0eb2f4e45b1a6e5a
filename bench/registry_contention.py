"""Registry write contention: 1 and 2 writer processes on SQLite and on PostgreSQL.

Why: on a cluster every worker writes the same registry. A training task's writes are its
prices into the cache (ten years, ``ROWS`` rows, on a first sync), a job row, its start,
one progress row per epoch and the registration (model row, the old version deactivated and
the job completed in one transaction). Each writer process here
replays ``TASKS`` such tasks with ``EPOCHS`` progress writes each, as fast as it can, so the
figure is the database's capacity, not a training's pace: transactions per second in all,
each transaction's p50/p99 time, and the writes that failed (SQLite's lock wait running
out would show here). The two writers start together; PostgreSQL is the throw-away server
of ``make test-postgres``.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench.common import emit, figure_args, percentile, postgres_server, row

TASKS = 60
EPOCHS = 30
ROWS = 2516
#: The ticker a writer's task ``n`` registers: writers never share a ticker, as workers do not.
TICKER = "W{writer}T{task}"


def _replay(
    url: str, prices: Path, writer: int, tasks: int, epochs: int, go: Any, out: Any
) -> None:
    """One writer: ``tasks`` training tasks' writes, each transaction timed."""
    from stock_lstm.data.cache import PriceStore
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.db import Database
    from stock_lstm.models import jobs
    from stock_lstm.models.artifacts import SavedArtifacts
    from stock_lstm.models.registry import TrainingDataSummary, register_model

    db = Database(url)
    store = PriceStore(db, CsvSource(prices), expiry_hours=24)
    summary = TrainingDataSummary(date(2011, 1, 3), date(2020, 12, 31), 2516, "0" * 64)
    seconds: list[float] = []
    failures: list[str] = []

    def timed(call: Any, *args: Any, **kwargs: Any) -> None:
        began = time.perf_counter()
        try:
            call(*args, **kwargs)
        except Exception as exc:  # counted, not raised: a lost write is the finding
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
        seconds.append(time.perf_counter() - began)

    go.wait()
    began = time.perf_counter()
    for task in range(tasks):
        ticker = TICKER.format(writer=writer, task=task)
        job_id = f"bench-{writer}-{task}"
        timed(store.sync, ticker)
        timed(jobs.create_job, db, ticker, {"epochs": epochs}, job_id=job_id)
        timed(jobs.mark_running, db, job_id)
        for epoch in range(1, epochs + 1):
            timed(
                jobs.record_epoch,
                db,
                job_id,
                epoch=epoch,
                total_epochs=epochs,
                train_loss=0.1,
                val_loss=0.1,
            )
        files = Path("/nowhere") / job_id
        artifacts = SavedArtifacts(job_id, files / "m.pt", files / "s.json", "m" * 64, "s" * 64)
        timed(
            register_model,
            db,
            ticker=ticker,
            artifacts=artifacts,
            params={"epochs": epochs},
            metrics={"mae": 1.0, "persistence": {"mae": 1.0}},
            data=summary,
            code_version="bench",
            job_id=job_id,
        )
    out.put({"wall": time.perf_counter() - began, "seconds": seconds, "failures": failures})
    db.dispose()


def contend(url: str, prices: Path, writers: int, tasks: int, epochs: int) -> dict[str, Any]:
    """``writers`` processes replaying at once on a new schema at ``url``."""
    from stock_lstm.db import Database

    Database(url).dispose()  # the schema, made once before the writers race
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters, no inherited engine
    go, out = spawn.Event(), spawn.Queue()
    processes = [
        spawn.Process(target=_replay, args=(url, prices, w, tasks, epochs, go, out))
        for w in range(writers)
    ]
    for process in processes:
        process.start()
    time.sleep(3)  # every writer has imported and connected before the start
    began = time.perf_counter()
    go.set()
    results = [out.get(timeout=600) for _ in processes]
    wall = time.perf_counter() - began
    for process in processes:
        process.join()
    syncs = [s for r in results for s in r["seconds"][:: epochs + 4]]
    seconds = [s for r in results for s in r["seconds"]]
    failures = [f for r in results for f in r["failures"]]
    return {
        "writers": writers,
        "transactions": len(seconds),
        "wall_seconds": wall,
        "per_second": len(seconds) / wall,
        "tasks_per_second": writers * tasks / wall,
        "p50_ms": percentile(seconds, 50) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "price_sync_p50_ms": percentile(syncs, 50) * 1000,
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
    }


def write_prices(folder: Path, tasks: int) -> Path:
    """A CSV source with ten years of generated prices for every ticker a writer registers."""
    from stock_lstm.data.synthetic import synthetic_prices, write_flat_csv

    frame = synthetic_prices("BENCH", rows=ROWS, start="2011-01-03")
    for writer in (0, 1):
        for task in range(tasks):
            write_flat_csv(frame, folder / f"{TICKER.format(writer=writer, task=task)}.csv")
    return folder


def main() -> None:
    args = figure_args(__doc__.splitlines()[0])
    tasks = 10 if args.quick else TASKS
    raw: dict[str, Any] = {"tasks_per_writer": tasks, "epochs": EPOCHS}
    rows = []
    with tempfile.TemporaryDirectory(prefix="stock-lstm-bench-contention-") as tmp:
        prices = write_prices(Path(tmp) / "prices", tasks)
        urls = {"SQLite": lambda n: f"sqlite:///{Path(tmp) / f'registry-{n}.db'}"}
        with postgres_server() as server:
            urls["PostgreSQL"] = server.new_database_url
            for backend, make_url in urls.items():
                for writers in (1, 2):
                    figures = contend(make_url(writers), prices, writers, tasks, EPOCHS)
                    raw[f"{backend} {writers}"] = figures
                    lost = (
                        f"; {figures['failures']} failed ({figures['first_failure']})"
                        if figures["failures"]
                        else "; none failed"
                    )
                    rows.append(
                        row(
                            f"Registry writes, {backend}, {writers} writer(s)",
                            f"{figures['tasks_per_second']:.1f} tasks' writes/s "
                            f"({figures['per_second']:.0f} transactions/s), p50 "
                            f"{figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms "
                            f"(a {ROWS}-row price sync: p50 {figures['price_sync_p50_ms']:.0f}"
                            f" ms){lost}",
                            f"{writers} process(es) at once, each {tasks} training tasks' "
                            f"writes (prices, job, start, {EPOCHS} epochs, registration)",
                        )
                    )
    emit(rows, raw)


if __name__ == "__main__":
    main()
