"""The price cache: a cold sync into an empty database, and a warm read of the same series.

* cold: a new SQLite database (schema created before the clock starts), then
  ``workflows.sync_ticker`` of AAPL from the CSV source: read and normalize the CSV, insert
  every row in one transaction. rows/s = rows written / seconds, median over the runs.
* warm: ``workflows.load_prices`` of the same ticker right after (the rows are fresh, so the
  cache rule answers from the database: its summary query, then the frame kept in memory):
  p50/p99 over every call, with ``price_recheck_seconds`` 0 (every call asks the database,
  as a CLI or notebook process does) and 1 (the API's default: a summary read within the
  last second is trusted).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import World, emit, figure_args, median, percentile, row

RUNS = 5
WARM_CALLS = 200


def main() -> None:
    args = figure_args(__doc__ or "")
    from stock_lstm.workflows import AppContext, load_prices, sync_ticker

    runs = 2 if args.quick else RUNS
    rates: list[float] = []
    rows_written = 0
    warm: dict[float, list[float]] = {0.0: [], 1.0: []}
    with tempfile.TemporaryDirectory(prefix="stock-lstm-bench-cache-") as tmp:
        for run in range(runs):
            settings = World(Path(tmp) / f"run{run}", ()).settings()
            ctx = AppContext.create(settings)
            began = time.perf_counter()
            result = sync_ticker(ctx, "AAPL")
            took = time.perf_counter() - began
            rows_written = result.downloaded_rows
            rates.append(rows_written / took)
            ctx.db.dispose()
            for recheck, timings in warm.items():
                update = {"price_recheck_seconds": recheck}
                ctx = AppContext.create(settings.model_copy(update=update))
                for _ in range(WARM_CALLS // runs):
                    began = time.perf_counter()
                    _prices, sync = load_prices(ctx, "AAPL")
                    timings.append(time.perf_counter() - began)
                    assert sync.from_cache
                ctx.db.dispose()
    emit(
        [
            row(
                f"cache: cold sync of AAPL ({rows_written} rows, CSV -> empty SQLite)",
                f"{median(rates):,.0f} rows/s ({rows_written / median(rates) * 1e3:.0f} ms)",
                f"median of {runs} new databases",
            ),
            *(
                row(
                    f"cache: warm read of the same series (cache hit), recheck {recheck:g} s",
                    f"p50 {percentile(timings, 50) * 1e3:.2f} ms, "
                    f"p99 {percentile(timings, 99) * 1e3:.2f} ms",
                    f"{len(timings)} calls over {runs} databases (the first loads the frame)",
                )
                for recheck, timings in warm.items()
            ),
        ],
        {
            "cold_rows_per_s": rates,
            "rows": rows_written,
            "warm_s": {f"recheck_{k:g}": v for k, v in warm.items()},
        },
    )


if __name__ == "__main__":
    main()
