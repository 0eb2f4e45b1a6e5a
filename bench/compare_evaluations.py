"""Pair two ``evaluate`` outputs ticker by ticker: is one model's Winkler score lower?

``python -m bench.compare_evaluations A B [C ...]``: each argument an ``evaluate
--output-dir``, or several seeds' folders joined by commas (``dir1,dir2,dir3``: averaged per
ticker, with the seeds' spread). The first is compared with each of the others on the tickers
they share, at h=1 and h=5: means, how many tickers are lower, Wilcoxon signed-rank p.
"""

from __future__ import annotations

import sys

import pandas as pd
from scipy.stats import wilcoxon

COLUMNS = ("model_winkler90_h1", "model_winkler90_h5", "model_coverage90_h1")


def load(spec: str) -> tuple[pd.DataFrame, list[float]]:
    """Per-ticker means over the seed folders in ``spec``, and each seed's mean h=1 score."""
    tables = [
        pd.read_csv(f"{folder}/evaluation.csv").set_index("ticker") for folder in spec.split(",")
    ]
    seeds = [float(t["model_winkler90_h1"].mean()) for t in tables]
    return sum(t[list(COLUMNS)] for t in tables) / len(tables), seeds


def main(argv: list[str]) -> int:
    first, first_seeds = load(argv[0])
    print(f"{argv[0]}: h=1 by seed {', '.join(f'{s:.3f}' for s in first_seeds)}")
    for other_spec in argv[1:]:
        other, seeds = load(other_spec)
        print(f"{other_spec}: h=1 by seed {', '.join(f'{s:.3f}' for s in seeds)}")
        shared = first.index.intersection(other.index)
        for column in COLUMNS[:2]:
            a, b = first.loc[shared, column], other.loc[shared, column]
            p = wilcoxon(a, b).pvalue if len(shared) >= 6 else float("nan")
            change = (a.mean() / b.mean() - 1) * 100
            print(
                f"  {column}: {a.mean():.3f} vs {b.mean():.3f} ({change:+.1f}%), "
                f"lower on {int((a < b).sum())} of {len(shared)}, Wilcoxon p = {p:.2g}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
