"""Training throughput: the project's trainer against the tutorial loop, on AAPL.

Both sides run in this one process, alternating, on the same prepared data (AAPL closes,
60-day windows, log-return target, 30-day direct head, 2 x 64 LSTM), the same seed and the
same number of epochs: one warm-up epoch, then ``TIMED_EPOCHS`` timed ones, each including
its validation pass. A run's figure is the timed seconds / ``TIMED_EPOCHS``; the table shows
the median over the runs.
"""

from __future__ import annotations

import os
from dataclasses import replace

import torch

from bench.common import emit, figure_args, median, prices_dir, row
from bench.reference_trainer import train_reference

WARMUP_EPOCHS = 1
TIMED_EPOCHS = 3
BATCH_SIZES = (32, 256)
#: What a tutorial gets: torch's own default (one thread per core), read before anything sets it.
DEFAULT_THREADS = torch.get_num_threads()


def main() -> None:
    args = figure_args(__doc__ or "")
    import time

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
    project_threads = Settings().torch_threads or (os.cpu_count() or 1)

    def project(params: TrainParams) -> tuple[float, dict[str, float]]:
        ends: list[float] = []
        result = train_model(
            data,
            params,
            threads=project_threads,
            callbacks=[lambda _report: ends.append(time.perf_counter())],
        )
        last = result.history[-1]
        losses = {"train_loss": last["train_loss"], "val_loss": last["val_loss"]}
        return (ends[-1] - ends[WARMUP_EPOCHS - 1]) / TIMED_EPOCHS, losses

    def reference(params: TrainParams) -> tuple[float, dict[str, float]]:
        torch.set_num_threads(DEFAULT_THREADS)
        ends: list[float] = []
        losses = train_reference(data, params, ends)
        return (ends[-1] - ends[WARMUP_EPOCHS - 1]) / TIMED_EPOCHS, losses

    rows, raw = [], {"train_samples": samples, "val_samples": int(data.X_val.shape[0])}
    how = f"median of {repeats} runs x {TIMED_EPOCHS} epochs after {WARMUP_EPOCHS} warm-up"
    for batch in BATCH_SIZES:
        params = replace(base, batch_size=batch)
        seconds: dict[str, list[float]] = {"project": [], "reference": []}
        losses: dict[str, dict[str, float]] = {}
        for run in range(repeats):
            order = (("project", project), ("reference", reference))
            for name, trainer in order if run % 2 == 0 else order[::-1]:
                took, losses[name] = trainer(params)
                seconds[name].append(took)
        project_s, reference_s = median(seconds["project"]), median(seconds["reference"])
        raw[f"batch_{batch}"] = {"seconds_per_epoch": seconds, "last_losses": losses}
        rows += [
            row(
                f"training AAPL, batch {batch}: stock_lstm `train_model`",
                f"{project_s:.3f} s/epoch, {samples / project_s:,.0f} samples/s "
                f"({project_threads} thread{'s' if project_threads != 1 else ''})",
                how,
            ),
            row(
                f"training AAPL, batch {batch}: tutorial loop (Dataset + DataLoader)",
                f"{reference_s:.3f} s/epoch, {samples / reference_s:,.0f} samples/s "
                f"({DEFAULT_THREADS} threads, torch default)",
                how,
            ),
            row(
                f"training AAPL, batch {batch}: speed-up",
                f"{reference_s / project_s:.1f}x",
                "ratio of the two medians above",
            ),
        ]
    emit(rows, raw)


if __name__ == "__main__":
    main()
