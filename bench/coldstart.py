"""Cold start: wall time of ``stock-lstm predict AAPL --days 5`` as a new process.

Import cost included: each run is a fresh ``stock-lstm`` process against the bench world's
database (an AAPL model trained on the shared CSV, its prices cached and fresh). ``--help``
is timed the same way. One extra run under ``python -X importtime`` records which top-level
imports the predict command pays for (raw numbers in ``results.json``).
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import STOCK_LSTM, World, emit, figure_args, median, row, world_from

RUNS = 5
PREDICT = ["predict", "AAPL", "--days", "5"]


def wall_seconds(command: list[str], world: World) -> float:
    began = time.perf_counter()
    subprocess.run(command, env=world.env, check=True, capture_output=True)
    return time.perf_counter() - began


def top_imports(world: World, limit: int = 12) -> list[tuple[str, float]]:
    """The slowest imports of one predict run, cumulative seconds, outermost names only."""
    code = f"from stock_lstm.cli import main; main({PREDICT!r})"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=world.env,
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _self, cumulative, name = line.removeprefix("import time:").split("|")
        if not cumulative.strip().isdigit():
            continue
        depth = (len(name) - len(name.lstrip())) // 2
        if depth == 0:
            found[name.strip()] = int(cumulative) / 1e6
    return sorted(found.items(), key=lambda item: -item[1])[:limit]


def main() -> None:
    args = figure_args(__doc__ or "")
    runs = 2 if args.quick else RUNS
    with world_from(args.world) as world:
        wall_seconds([STOCK_LSTM, *PREDICT], world)  # warm the page cache, not measured
        predict = [wall_seconds([STOCK_LSTM, *PREDICT], world) for _ in range(runs)]
        help_ = [wall_seconds([STOCK_LSTM, "--help"], world) for _ in range(runs)]
        imports = top_imports(world)
    how = f"median of {runs} new processes"
    emit(
        [
            row("cold start: `stock-lstm predict AAPL --days 5`", f"{median(predict):.2f} s", how),
            row("cold start: `stock-lstm --help`", f"{median(help_):.2f} s", how),
        ],
        {"predict_s": predict, "help_s": help_, "predict_top_imports_s": imports},
    )


if __name__ == "__main__":
    main()
