"""Check the project's anchors against independent scores (``../shared/data/anchor-reference.csv``).

``python -m bench.anchor_reference`` scores every anchor of ``evaluation.anchors`` the way
``make evaluate`` does (the last 500 origins with 5 days of actuals after them, refit every
100, the 90% interval) on every ticker of the reference file, and writes one row per ticker,
anchor and horizon beside the reference's Winkler score to
``bench/anchor-reference-check.csv`` plus a summary of the differences. No network is
trained, so this takes about a minute.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import REPO, prices_dir
from stock_lstm.data.sources import CsvSource
from stock_lstm.evaluation.anchors import ANCHORS, PriceHistory, make_anchor
from stock_lstm.evaluation.backtest import BacktestConfig, origin_rows
from stock_lstm.evaluation.probabilistic import interval_scores

LEVELS = (0.05, 0.95)
OUTPUT = REPO / "bench" / "anchor-reference-check.csv"


def score_ticker(frame: pd.DataFrame, ticker: str, config: BacktestConfig) -> list[dict]:
    """Coverage, width and Winkler score of every anchor at h = 1 and ``config.horizon``."""
    history = PriceHistory.of(frame)
    origins = origin_rows(len(frame), config)
    assert config.refit_every is not None
    blocks = [
        origins[i : i + config.refit_every] for i in range(0, len(origins), config.refit_every)
    ]
    rows = []
    for name in ANCHORS:
        quantiles = np.concatenate(
            [
                make_anchor(name)
                .fit(history, int(block[0]))
                .predict(block, config.horizon, LEVELS)
                .prices
                for block in blocks
            ]
        )
        for h in sorted({1, config.horizon}):
            scores = interval_scores(
                history.close[origins + h],
                quantiles[:, h - 1, 0],
                quantiles[:, h - 1, 1],
                0.9,
                history.close[origins],
            )
            rows.append({"ticker": ticker, "forecaster": name, "horizon": h, **scores})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference", type=Path, default=REPO.parent / "shared/data/anchor-reference.csv"
    )
    args = parser.parse_args(argv)
    reference = pd.read_csv(args.reference)
    source = CsvSource(prices_dir())
    config = BacktestConfig(horizon=5, origins=500, refit_every=100)
    rows = []
    for ticker in sorted(reference["ticker"].unique()):
        rows.extend(score_ticker(source.fetch(ticker).frame, ticker, config))
    ours = pd.DataFrame(rows)
    merged = ours.merge(
        reference[["ticker", "forecaster", "horizon", "winkler_pct"]],
        on=["ticker", "forecaster", "horizon"],
        how="left",
    )
    merged["difference"] = merged["winkler"] - merged["winkler_pct"]
    merged.to_csv(OUTPUT, index=False, float_format="%.5f")
    summary = merged.groupby(["forecaster", "horizon"]).agg(
        mean_winkler=("winkler", "mean"),
        reference=("winkler_pct", "mean"),
        max_abs_difference=("difference", lambda d: d.abs().max()),
    )
    print(summary.round(4).to_string())
    print(f"\nrows: {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
