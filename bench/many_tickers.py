"""Many tickers: ``stock-lstm evaluate`` over the 20 shared tickers with 1 and 2 workers.

The full ``make evaluate`` (3 seeds plus the original design, default epochs with early
stopping) takes about 40 minutes per run, so this figure runs a reduced configuration
through the same code (``evaluation.evaluate.build_tasks`` +
``pipeline.experiments.run_tasks``): one seed, no
original-design model, ``EPOCHS`` epochs without early stopping (so every run does the same
work), one fit and ``ORIGINS`` origins per ticker at horizon 5. Each measurement is a new
process (a fork-based worker pool must not inherit a parent that already ran torch); 1 and 2
workers alternate, and each figure is the median of the runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench.common import emit, median, prices_dir, row

EPOCHS = 3
ORIGINS = 100
HORIZON = 5
SEED = 1
WORKER_COUNTS = (1, 2)


def run_once(workers: int) -> float:
    """Seconds ``run_tasks`` takes for every shared ticker in this process (imports excluded)."""
    from stock_lstm.evaluation.evaluate import build_tasks, default_params
    from stock_lstm.pipeline.experiments import run_tasks

    tasks = build_tasks(
        prices_dir(),
        None,
        [SEED],
        horizon=HORIZON,
        origins=ORIGINS,
        refit_every=None,
        base_params=default_params({"horizon": HORIZON, "epochs": EPOCHS, "patience": 0}),
        include_original=False,
    )
    began = time.perf_counter()
    rows = run_tasks(tasks, workers=workers)
    took = time.perf_counter() - began
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"bench: {len(failed)} backtests failed, e.g. {failed[0]}")
    print(f"{len(tasks)} {took}")
    return took


def measure(workers: int) -> tuple[int, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.many_tickers", "--run", str(workers)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    count, seconds = done.stdout.split()[-2:]
    return int(count), float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=int, help="(internal) one measurement with N workers")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--world", type=Path, help="unused: this figure needs no models")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.run is not None:
        run_once(args.run)
        return
    repeats = 1 if args.quick else args.repeats
    seconds: dict[int, list[float]] = {n: [] for n in WORKER_COUNTS}
    tickers = 0
    for _ in range(repeats):
        for workers in WORKER_COUNTS:
            tickers, took = measure(workers)
            seconds[workers].append(took)
    one, two = median(seconds[1]), median(seconds[2])
    how = (
        f"median of {repeats} runs; {tickers} tickers x 1 seed, {EPOCHS} epochs, "
        f"{ORIGINS} origins, no original model"
    )
    emit(
        [
            row("evaluate (reduced), 1 worker", f"{one:.1f} s", how),
            row("evaluate (reduced), 2 workers", f"{two:.1f} s", how),
            row("evaluate: 1 -> 2 workers speed-up", f"{one / two:.2f}x", "ratio of the medians"),
        ],
        {"seconds": seconds, "tickers": tickers},
    )


if __name__ == "__main__":
    main()
