"""Forecast latency: ``workflows.predict_ticker`` in-process with the model already cached.

That is the call behind ``POST /api/v1/predict`` (the route adds metrics around it): the
active-model lookup, the cache rule on the ticker's prices, the forward pass, the conformal
bounds and the trading calendar. One process, one ``AppContext`` (the API's settings), 20
warm-up calls, then 5-day and 30-day forecasts alternate; p50/p99 are over every timed call.

Two cases: *computed*, the version's remembered forecasts cleared before each call (the
first time a question is asked: forward pass, bounds and calendar), and *remembered*, the
same question again (what the API mostly answers: a ticker's prices change once a day).
"""

from __future__ import annotations

import time

from bench.common import emit, figure_args, percentile, row, world_from

WARMUP = 20
CALLS = 600


def main() -> None:
    args = figure_args(__doc__ or "")
    from stock_lstm.workflows import AppContext, predict_ticker

    calls = 100 if args.quick else CALLS
    timings: dict[str, list[float]] = {}
    with world_from(args.world) as world:
        ctx = AppContext.create(world.settings())
        forecast = predict_ticker(ctx, "AAPL", 30)
        loaded = ctx.model_cache.loaded(forecast.version_id)
        assert loaded is not None
        for case in ("computed", "remembered"):
            for _ in range(WARMUP):
                predict_ticker(ctx, "AAPL", 30)
            for call in range(calls):
                days = 5 if call % 2 == 0 else 30
                if case == "computed":
                    loaded.forecasts.clear()
                began = time.perf_counter()
                predict_ticker(ctx, "AAPL", days)
                timings.setdefault(f"{days} days, {case}", []).append(time.perf_counter() - began)
        ctx.db.dispose()
    rows = []
    for label, values in timings.items():
        rows.append(
            row(
                f"forecast latency, {label} (cached model)",
                f"p50 {percentile(values, 50) * 1e3:.2f} ms, "
                f"p99 {percentile(values, 99) * 1e3:.2f} ms",
                f"{len(values)} in-process calls after {WARMUP} warm-up",
            )
        )
    emit(rows, {"seconds": timings})


if __name__ == "__main__":
    main()
