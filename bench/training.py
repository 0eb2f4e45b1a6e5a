"""Training throughput: the project's trainer against the tutorial loop, on AAPL.

Both sides run in this one process, alternating, on the same prepared data (AAPL closes,
60-day windows, log-return target, 30-day direct head, 2 x 64 LSTM, dropout 0.2), the same
seed, the same Adam + MSE and the same epochs: ``WARMUP_EPOCHS`` untimed, then
``TIMED_EPOCHS`` timed ones, each including its validation pass. A run's figure is the
timed seconds / ``TIMED_EPOCHS``; the table shows the median over the runs.

The headline comparison gives both loops the project's thread count
(``STOCK_LSTM_TORCH_THREADS``, 1), so the ratio is about how the loop is written. A tutorial
leaves torch at its default (one thread per core): that is measured once more, alone and
briefly (``DEFAULT_THREAD_EPOCHS``), because on a busy machine it can take a minute an epoch;
so is the project's trainer at that thread count (what ``STOCK_LSTM_TORCH_THREADS=2`` buys on
an idle machine).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.common import emit, figure_args, median, prices_dir, row
from bench.reference_trainer import train_reference

WARMUP_EPOCHS = 1
TIMED_EPOCHS = 3
DEFAULT_THREAD_EPOCHS = 1
BATCH_SIZES = (32, 256)
#: What a tutorial gets: torch's own default (one thread per core), read before anything sets it.
DEFAULT_THREADS = torch.get_num_threads()


def main() -> None:
    args = figure_args(__doc__ or "")
    from stock_lstm.config import Settings
    from stock_lstm.data.preprocessing import prepare_data
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.models.training import TrainParams, train_model

    repeats = 1 if args.quick else args.repeats
    prices = CsvSource(prices_dir()).fetch("AAPL").frame
    base = TrainParams(
        epochs=WARMUP_EPOCHS + TIMED_EPOCHS,
        patience=0,
        sequence_length=60,
        hidden_size=64,
        num_layers=2,
        batch_size=32,
    )
    data = prepare_data(
        prices, sequence_length=60, target=base.target, horizon=base.training_horizon
    )
    samples = int(data.X_train.shape[0])
    threads = Settings().torch_threads or (os.cpu_count() or 1)

    def per_epoch(ends: list[float], timed: int) -> float:
        return (ends[-1] - ends[WARMUP_EPOCHS - 1]) / timed

    def project(params: TrainParams, count: int = threads) -> tuple[float, dict[str, float]]:
        ends: list[float] = []
        result = train_model(
            data,
            params,
            threads=count,
            callbacks=[lambda _report: ends.append(time.perf_counter())],
        )
        last = result.history[-1]
        losses = {"train_loss": last["train_loss"], "val_loss": last["val_loss"]}
        return per_epoch(ends, params.epochs - WARMUP_EPOCHS), losses

    def reference(params: TrainParams, count: int = threads) -> tuple[float, dict[str, float]]:
        torch.set_num_threads(count)
        ends: list[float] = []
        losses = train_reference(data, params, ends)
        return per_epoch(ends, params.epochs - WARMUP_EPOCHS), losses

    def rate(seconds: float) -> str:
        return f"{seconds:.3f} s/epoch, {samples / seconds:,.0f} samples/s"

    plural = "s" if threads != 1 else ""
    rows: list[dict[str, str]] = []
    raw: dict[str, Any] = {"train_samples": samples, "val_samples": int(data.X_val.shape[0])}
    how = f"median of {repeats} runs x {TIMED_EPOCHS} epochs after {WARMUP_EPOCHS} warm-up"
    for batch in BATCH_SIZES:
        params = base.replace(batch_size=batch)
        sides: dict[str, Callable[[TrainParams], tuple[float, dict[str, float]]]] = {
            "project": project,
            "reference": reference,
        }
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        losses: dict[str, dict[str, float]] = {}
        for run in range(repeats):
            order = list(sides.items())
            for name, trainer in order if run % 2 == 0 else order[::-1]:
                took, losses[name] = trainer(params)
                seconds[name].append(took)
        default_params = params.replace(epochs=WARMUP_EPOCHS + DEFAULT_THREAD_EPOCHS)
        default_s, _ = reference(default_params, DEFAULT_THREADS)
        project_default_s, _ = project(default_params, DEFAULT_THREADS)
        project_s, reference_s = median(seconds["project"]), median(seconds["reference"])
        raw[f"batch_{batch}"] = {
            "seconds_per_epoch": seconds,
            "reference_default_threads_seconds_per_epoch": default_s,
            "project_default_threads_seconds_per_epoch": project_default_s,
            "last_losses": losses,
        }
        rows += [
            row(
                f"training AAPL, batch {batch}: stock_lstm `train_model`",
                f"{rate(project_s)} ({threads} thread{plural})",
                how,
            ),
            row(
                f"training AAPL, batch {batch}: tutorial loop (Dataset + DataLoader)",
                f"{rate(reference_s)} ({threads} thread{plural})",
                how,
            ),
            row(
                f"training AAPL, batch {batch}: speed-up",
                f"{reference_s / project_s:.2f}x",
                "ratio of the two medians above",
            ),
            row(
                f"training AAPL, batch {batch}: tutorial loop at torch's default threads",
                f"{rate(default_s)} ({DEFAULT_THREADS} threads)",
                f"1 run x {DEFAULT_THREAD_EPOCHS} epoch after {WARMUP_EPOCHS} warm-up",
            ),
            row(
                f"training AAPL, batch {batch}: stock_lstm `train_model` at torch's default "
                "threads",
                f"{rate(project_default_s)} ({DEFAULT_THREADS} threads)",
                f"1 run x {DEFAULT_THREAD_EPOCHS} epoch after {WARMUP_EPOCHS} warm-up",
            ),
        ]
    emit(rows, raw)


if __name__ == "__main__":
    main()
