"""One universal fit: the default network trained on every ticker of the universe, one core.

The figure the universal-model issue asks for: one pooled fit (``models.pooled``) on all of
``../shared/data/universe`` (200 tickers x 2,518 days) with the project's default parameters
and one torch thread, its wall time also in tutorial-loop epochs (one epoch of the reference
Dataset + DataLoader loop on AAPL, batch 32, measured in the same process right after), so
the number travels between machines. The aim is at most 10 minutes.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import REPO, emit, figure_args, prices_dir, row
from bench.reference_trainer import train_reference

UNIVERSE = REPO.parent / "shared" / "data" / "universe"


def main() -> None:
    figure_args(__doc__ or "")
    from stock_lstm.data.preprocessing import prepare_data
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.models.pooled import prepare_universe, train_pooled
    from stock_lstm.models.training import TrainParams, set_torch_threads

    set_torch_threads(1)
    source = CsvSource(Path(UNIVERSE))
    frames = {t: source.fetch(t).frame for t in source.available_tickers()}
    params = TrainParams()
    began = time.perf_counter()
    data = prepare_universe(frames, params)
    prepared = time.perf_counter() - began
    result = train_pooled(data, params, threads=1)
    total = time.perf_counter() - began

    aapl = CsvSource(prices_dir()).fetch("AAPL").frame
    tutorial = params.replace(output="point", epochs=2, batch_size=32, patience=0)
    reference_data = prepare_data(
        aapl, sequence_length=60, target=tutorial.target, horizon=tutorial.training_horizon
    )
    ends: list[float] = []
    train_reference(reference_data, tutorial, ends)
    epoch = ends[-1] - ends[-2]
    rows = [
        row(
            f"universal fit, {len(result.tickers)} tickers, 1 thread",
            f"{total:.0f} s ({total / epoch:.0f} tutorial-loop epochs on AAPL)",
            f"{result.epochs_run} epochs (best {result.best_epoch}) over "
            f"{result.train_origins:,} origins; preparing the data {prepared:.0f} s",
        )
    ]
    emit(
        rows,
        {
            "seconds": total,
            "prepare_seconds": prepared,
            "tutorial_epoch_seconds": epoch,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "train_origins": result.train_origins,
            "tickers": len(result.tickers),
        },
    )


if __name__ == "__main__":
    main()
