"""Score "model + strongest anchor so far" on backtests already run, from their kept
``backtest.csv`` (``evaluate --output-dir D`` writes ``D/<ticker>/seed<k>/backtest.csv``).

The combination depends only on bounds the backtest already wrote (its 90% level), so the
serving rule (README, "A universal model") can be judged on exactly the origins the model
was scored on, without refitting anything. The blocks are the backtest's refit blocks
(``--refit-every``, as it was run).

    python -m bench.rescore_combination /tmp/uni/heldout /tmp/uni/heldout-s2 ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from stock_lstm.evaluation.anchors import ANCHORS
from stock_lstm.evaluation.combination import (
    choose_anchors,
    combine_with_chosen,
    winkler_percent,
)
from stock_lstm.evaluation.evaluate import _comparison
from stock_lstm.models.online_calibration import widening


def _arrays(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame.pivot(index="origin_date", columns="horizon", values=column).to_numpy()


def rescore(path: Path, refit_every: int) -> dict[str, float | str]:
    """Per-ticker mean 90% Winkler at h=1 and h=5 of the model, each anchor and the
    combination, from one backtest.csv."""
    frame = pd.read_csv(path, parse_dates=["origin_date", "target_date"])
    actual = _arrays(frame, "actual")
    last_close = _arrays(frame, "persistence")[:, 0]
    targets = _arrays(frame, "target_date").astype("datetime64[ns]").astype(np.int64)
    origins = np.sort(frame["origin_date"].unique()).astype("datetime64[ns]").astype(np.int64)
    bounds = {"model": (_arrays(frame, "lower"), _arrays(frame, "upper"))}
    for name in ANCHORS:
        bounds[name] = (_arrays(frame, f"{name}_lower"), _arrays(frame, f"{name}_upper"))
    losses = {name: winkler_percent(actual, *bounds[name], last_close) for name in ANCHORS}
    sizes = [min(refit_every, len(origins) - i) for i in range(0, len(origins), refit_every)]
    firsts = [int(origins[i]) for i in range(0, len(origins), refit_every)]
    choices = choose_anchors(losses, targets, firsts)
    combined = widening(*combine_with_chosen(bounds["model"], bounds, choices, sizes))
    scores = {
        "model": winkler_percent(actual, *bounds["model"], last_close),
        "model_anchor": winkler_percent(actual, *combined, last_close),
        **losses,
    }
    row: dict[str, float | str] = {}
    for name, score in scores.items():
        for h in (1, 5):
            row[f"{name}_winkler90_h{h}"] = float(np.nanmean(score[:, h - 1]))
    row["choices_h1"] = ",".join(block[0] for block in choices)
    row["choices_h5"] = ",".join(block[4] for block in choices)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="evaluate --output-dir folders")
    parser.add_argument("--refit-every", type=int, default=100)
    parser.add_argument("--json", type=Path, help="also write the per-ticker table here")
    args = parser.parse_args()
    rows = []
    for folder in args.folders:
        for path in sorted(folder.glob("*/seed*/backtest.csv")):
            rows.append({"ticker": path.parts[-3], **rescore(path, args.refit_every)})
    per_seed = pd.DataFrame(rows)
    numeric = per_seed.drop(columns=["choices_h1", "choices_h5"])
    table = numeric.groupby("ticker").mean().reset_index()
    print(f"{len(per_seed)} backtests, {len(table)} tickers (seed means)")
    for h in (1, 5):
        means = {n: table[f"{n}_winkler90_h{h}"].mean() for n in ANCHORS}
        strongest = min(means, key=means.__getitem__)
        pairs = [
            ("model_anchor", "model"),
            ("model_anchor", strongest),
            ("model", strongest),
        ]
        for first, other in pairs:
            print(
                _comparison(
                    table,
                    f"{first}_winkler90_h{h}",
                    f"{other}_winkler90_h{h}",
                    f"h={h}, {first} vs {other}",
                )
            )
    first_blocks = per_seed["choices_h1"].str.split(",")
    print(
        "anchors chosen at h=1, by block:",
        first_blocks.explode().value_counts().to_dict(),
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
