"""Dask's cost per task: ``TASKS`` near-empty tasks through the cluster seam vs a plain loop.

Why: every ticker, backtest and sweep point is one Dask task (``stock_lstm.cluster``). A task
that trains for seconds can afford a few milliseconds of scheduling; this figure says how
many. The tasks go through ``Executor.map`` exactly as real ones do (``retries=1``, one
unique key each, results gathered as they complete) on a local cluster of ``WORKERS``
processes started once; the plain loop calls the same function in this process. Each figure
is the median of ``--repeats`` rounds; the cluster's start-up is reported on its own.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import emit, figure_args, median, row

TASKS = 200
WORKERS = 2


def tiny_task(number: int) -> dict[str, Any]:
    """Near-empty work with the shape of a real task: plain data in, a small dict out."""
    return {"status": "ok", "value": sum(range(number % 100))}


def loop_seconds_per_task(tasks: int) -> float:
    began = time.perf_counter()
    for number in range(tasks):
        tiny_task(number)
    return (time.perf_counter() - began) / tasks


def dask_seconds_per_task(executor: Any, tasks: int, task: Any = tiny_task) -> float:
    calls = {f"t{number}": (number,) for number in range(tasks)}
    began = time.perf_counter()
    rows = executor.map(task, calls, desc="tiny", progress=False)
    took = time.perf_counter() - began
    failed = [label for label, result in rows.items() if result.get("status") != "ok"]
    if failed:
        raise SystemExit(f"bench: {len(failed)} tiny tasks failed, e.g. {rows[failed[0]]}")
    return took / tasks


def measure(repeats: int = 5, tasks: int = TASKS, workers: int = WORKERS) -> dict[str, Any]:
    """The figures as plain numbers (seconds): per task through Dask and in a plain loop,
    each the median of ``repeats`` rounds, and the local cluster's start-up time."""
    from stock_lstm.cluster import open_executor

    began = time.perf_counter()
    with open_executor(None, workers=workers, dashboard=False, echo=None) as executor:
        startup = time.perf_counter() - began
        dask_seconds_per_task(executor, 10)  # warm-up: workers import this module once
        dask_rounds = [dask_seconds_per_task(executor, tasks) for _ in range(repeats)]
    loop_rounds = [loop_seconds_per_task(tasks) for _ in range(repeats)]
    return {
        "tasks": tasks,
        "workers": workers,
        "repeats": repeats,
        "dask_seconds_per_task": median(dask_rounds),
        "loop_seconds_per_task": median(loop_rounds),
        "dask_rounds": dask_rounds,
        "loop_rounds": loop_rounds,
        "cluster_startup_seconds": startup,
    }


def main() -> None:
    args = figure_args(__doc__.splitlines()[0])
    figures = measure(repeats=2 if args.quick else max(args.repeats, 3))
    per_task_ms = figures["dask_seconds_per_task"] * 1000
    loop_us = figures["loop_seconds_per_task"] * 1e6
    how = (
        f"{figures['tasks']} near-empty tasks through stock_lstm.cluster (local cluster, "
        f"{figures['workers']} worker processes, retries=1) vs the same calls in a loop; "
        f"median of {figures['repeats']} rounds"
    )
    emit(
        [
            row(
                "Dask overhead per task",
                f"{per_task_ms:.1f} ms (plain loop: {loop_us:.1f} µs)",
                how,
            ),
            row(
                "Local Dask cluster start-up",
                f"{figures['cluster_startup_seconds']:.1f} s",
                f"{figures['workers']} worker processes, once per command",
            ),
        ],
        figures,
    )


if __name__ == "__main__":
    main()
