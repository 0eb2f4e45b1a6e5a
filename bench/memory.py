"""Peak memory: a ``stock-lstm train`` process, and the API once it holds 20 models.

* train: ``stock-lstm train AAPL --epochs 3`` from an empty database (sync from the CSV,
  prepare, train, evaluate, register), in a fresh process per run; its peak RSS is the
  ``ru_maxrss`` that ``os.wait4`` reports for exactly that child. Three epochs because the
  peak is set by imports, data and the network, not by how many epochs run.
* API: ``stock-lstm serve`` over the bench world (one active model per shared ticker); its
  ``VmHWM`` (peak RSS) from ``/proc/<pid>/status`` after start-up, then after one
  ``POST /api/v1/predict`` per ticker, which loads every model into the model cache.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from bench.common import (
    STOCK_LSTM,
    ApiServer,
    World,
    emit,
    figure_args,
    http_json,
    median,
    row,
    world_from,
)

TRAIN_EPOCHS = 3


def train_peak_kib(scratch: Path) -> int:
    """Peak RSS (KiB) of one ``stock-lstm train`` in an empty temporary world."""
    env = World(scratch, ()).env
    process = subprocess.Popen(
        [STOCK_LSTM, "train", "AAPL", "--epochs", str(TRAIN_EPOCHS), "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    errors = process.stderr.read()
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"bench: stock-lstm train failed: {errors.decode()[-500:]}")
    return int(usage.ru_maxrss)  # KiB on Linux


def api_peaks_kib(world: World, scratch: Path) -> tuple[int, int]:
    """(VmHWM after start-up, VmHWM after predicting once per ticker) in KiB."""
    with ApiServer(world, scratch / "api.log") as server:
        idle = server.status_kib("VmHWM")
        for ticker in world.tickers:
            status, body = http_json(
                "POST", server.url + "/api/v1/predict", {"ticker": ticker, "days_ahead": 5}
            )
            if status != 200:
                raise RuntimeError(f"bench: predicting {ticker} answered {status}: {body}")
        return idle, server.status_kib("VmHWM")


def main() -> None:
    args = figure_args(__doc__ or "")
    repeats = 1 if args.quick else args.repeats
    train, idle, loaded = [], [], []
    with world_from(args.world) as world, tempfile.TemporaryDirectory() as tmp:
        for run in range(repeats):
            train.append(train_peak_kib(Path(tmp) / f"train{run}"))
            before, after = api_peaks_kib(world, Path(tmp))
            idle.append(before)
            loaded.append(after)
    mib = 1024
    how = f"median of {repeats} fresh processes"
    emit(
        [
            row(
                f"peak RSS: `stock-lstm train AAPL --epochs {TRAIN_EPOCHS}`",
                f"{median(train) / mib:.0f} MiB",
                how + " (ru_maxrss via wait4)",
            ),
            row("peak RSS: API after start-up", f"{median(idle) / mib:.0f} MiB", how + " (VmHWM)"),
            row(
                f"peak RSS: API after loading {len(world.tickers)} models",
                f"{median(loaded) / mib:.0f} MiB",
                how + " (VmHWM after one predict per ticker)",
            ),
        ],
        {"train_kib": train, "api_idle_kib": idle, "api_loaded_kib": loaded},
    )


if __name__ == "__main__":
    main()
