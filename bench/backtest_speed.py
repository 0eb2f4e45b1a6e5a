"""One honest backtest's cost: KO, 500 origins, refit every 100, horizon 5 (five fits).

Timed as ``stock-lstm backtest KO --horizon 5 --origins 500 --refit-every 100`` runs it
(``walk_forward`` with the default model, one torch thread), and once more the way it ran
before warm starts and chunked training (``warm_start=False``, ``chunk_length=0``). Both are
also given as a number of epochs of the tutorial-style loop (``bench.reference_trainer``, a
per-sample ``Dataset`` + ``DataLoader``) measured in this same process on KO's full history,
so the figure holds on a busy machine: a noisy neighbour slows both sides alike. The aim of
the fast-fits issue is at most 15 such epochs.
"""

from __future__ import annotations

import time
from dataclasses import replace

from bench.common import emit, figure_args, median, prices_dir, row
from bench.reference_trainer import train_reference

WARMUP_EPOCHS = 1
TIMED_EPOCHS = 2
#: The issue's aim: one backtest in at most this many tutorial-loop epochs of time.
AIM_EPOCHS = 15


def main() -> None:
    args = figure_args(__doc__ or "")
    from stock_lstm.data.preprocessing import prepare_data
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.evaluation.backtest import BacktestConfig, walk_forward
    from stock_lstm.models.training import TrainParams, set_torch_threads

    set_torch_threads(1)
    repeats = 1 if args.quick else args.repeats
    prices = CsvSource(prices_dir()).fetch("KO").frame
    params = TrainParams(horizon=5)
    config = BacktestConfig(horizon=5, origins=500, refit_every=100)
    before = replace(config, warm_start=False)

    reference_params = params.replace(epochs=WARMUP_EPOCHS + TIMED_EPOCHS, patience=0)
    data = prepare_data(
        prices, sequence_length=params.sequence_length, target=params.target, horizon=5
    )

    def reference_epoch() -> float:
        ends: list[float] = []
        train_reference(data, reference_params, ends)
        return (ends[-1] - ends[WARMUP_EPOCHS - 1]) / TIMED_EPOCHS

    def backtest(run_params: TrainParams, run_config: BacktestConfig) -> tuple[float, list[int]]:
        began = time.perf_counter()
        result = walk_forward(prices, run_params, run_config, threads=1)
        return time.perf_counter() - began, list(result.summary.epochs_per_fit)

    epochs: list[float] = []
    now: list[float] = []
    now_fits: list[int] = []
    for _ in range(repeats):
        epochs.append(reference_epoch())
        seconds, now_fits = backtest(params, config)
        now.append(seconds)
    old_seconds, old_fits = backtest(params.replace(chunk_length=0), before)
    epoch = median(epochs)
    seconds = median(now)
    how = (
        f"median of {repeats} runs; one tutorial-loop epoch on KO's full history "
        f"{epoch:.2f} s in the same process"
    )
    rows = [
        row(
            "backtest KO, 500 origins, refit every 100: warm-started, chunked (default)",
            f"{seconds:.1f} s = {seconds / epoch:.1f} tutorial-loop epochs (aim <= {AIM_EPOCHS}); "
            f"epochs per fit {'/'.join(map(str, now_fits))}",
            how,
        ),
        row(
            "backtest KO, 500 origins, refit every 100: cold fits, window by window (before)",
            f"{old_seconds:.1f} s = {old_seconds / epoch:.1f} tutorial-loop epochs; epochs per "
            f"fit {'/'.join(map(str, old_fits))}",
            "1 run (`--cold-start`, `--chunk-length 0`)",
        ),
        row(
            "backtest KO: speed-up",
            f"{old_seconds / seconds:.1f}x",
            "ratio of the two rows above",
        ),
    ]
    raw = {
        "reference_epoch_seconds": epochs,
        "backtest_seconds": now,
        "epochs_per_fit": now_fits,
        "before_seconds": old_seconds,
        "before_epochs_per_fit": old_fits,
    }
    emit(rows, raw)


if __name__ == "__main__":
    main()
