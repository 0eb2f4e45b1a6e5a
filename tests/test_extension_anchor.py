"""A new anchor is one class and one registry line, and then it is in every table: the
backtest's summary and CSV, the interval table, the CLI's, the plots' legend and the
strongest-anchor choice. A new combination is one ``COMBINATIONS`` entry, scored alike, and
a new point baseline one class and one ``BASELINE_CLASSES`` line, in every point table.
Run in a fresh interpreter, as a user's edited registry would be: the forecaster lists are
read when the package is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TOY_ANCHOR = '''
"""A toy anchor: constant volatility, Gaussian, square-root-of-h."""

import numpy as np
from scipy import stats

from stock_lstm.evaluation.anchors import Anchor


class ConstantVolatility(Anchor):
    name = "constant_vol"
    label = "constant volatility (toy)"

    def _fit(self):
        returns = self.history.log_returns[self.first_fit_row - 1 : self.fit_end_row - 1]
        self.sigma = float(np.std(returns))

    def _log_spread(self, rows, horizon, levels):
        sigma = self.sigma * np.sqrt(np.arange(1, horizon + 1))[None, :].repeat(len(rows), 0)
        return sigma, np.asarray(stats.norm.ppf(levels))[None, None, :]
'''

DRIVER = """
import matplotlib

matplotlib.use("Agg")
from stock_lstm.evaluation import anchors

anchors.ANCHOR_CLASSES["constant_vol"] = "toy_anchor:ConstantVolatility"  # the one line
anchors.ANCHORS = tuple(anchors.ANCHOR_CLASSES)

from stock_lstm import plots
from stock_lstm.cli.formatting import format_backtest_intervals
from stock_lstm.data.frames import normalize_ohlcv
from stock_lstm.data.synthetic import synthetic_prices
from stock_lstm.evaluation.backtest import BacktestConfig, headline, walk_forward
from stock_lstm.evaluation.intervals import interval_table
from stock_lstm.models.training import TrainParams

prices = normalize_ohlcv(synthetic_prices("ZZZ", rows=400, seed=4), "ZZZ").frame
params = TrainParams(epochs=1, sequence_length=10, hidden_size=4, horizon=2)
result = walk_forward(prices, params, BacktestConfig(horizon=2, origins=30))
summary = result.summary
assert summary.probabilistic["constant_vol"][1].at(0.9).coverage is not None
assert {"constant_vol_lower", "constant_vol_upper"} <= set(result.frame.columns)
assert "constant volatility (toy)" in interval_table(summary.probabilistic).index
assert "constant volatility (toy)" in format_backtest_intervals(summary)
assert "constant_vol_winkler90_h1" in headline(summary)
figure = plots.interval_forecasters_over_time(
    result.frame[result.frame["horizon"] == 1].set_index("target_date"), ticker="ZZZ",
    anchor="constant_vol",
)
labels = [text.get_text() for ax in figure.axes for text in ax.get_legend().get_texts()]
assert "constant volatility (toy)" in labels, labels
print("ok")
"""


def _run_in_a_fresh_interpreter(driver: str, folder: Path) -> None:
    """Run ``driver`` with ``folder`` (the toy modules) on the path; it prints "ok"."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(driver)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(folder), "MPLBACKEND": "Agg"},
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_a_new_anchor_is_one_class_and_shows_everywhere(tmp_path: Path) -> None:
    (tmp_path / "toy_anchor.py").write_text(textwrap.dedent(TOY_ANCHOR))
    _run_in_a_fresh_interpreter(DRIVER, tmp_path)


COMBINATION_DRIVER = """
from stock_lstm.evaluation import combination

combination.COMBINATIONS["model_ewma"] = combination.Combination(  # the one entry
    "model + EWMA (toy)", anchor="ewma"
)

import numpy as np

from stock_lstm.cli.formatting import format_backtest_intervals
from stock_lstm.data.frames import normalize_ohlcv
from stock_lstm.data.synthetic import synthetic_prices
from stock_lstm.evaluation.backtest import BacktestConfig, headline, walk_forward
from stock_lstm.evaluation.intervals import interval_table
from stock_lstm.models.training import TrainParams

prices = normalize_ohlcv(synthetic_prices("ZZZ", rows=400, seed=4), "ZZZ").frame
params = TrainParams(epochs=1, sequence_length=10, hidden_size=4, horizon=2)
result = walk_forward(prices, params, BacktestConfig(horizon=2, origins=30, refit_every=15))
summary, frame = result.summary, result.frame
assert summary.probabilistic["model_ewma"][1].at(0.9).coverage is not None
# Its bounds are the geometric mean of the model's and EWMA's, as every combination's.
expected = np.sqrt(frame["upper"] * frame["ewma_upper"])
assert np.allclose(np.maximum.accumulate(
    expected.to_numpy().reshape(-1, 2), axis=1).ravel(), frame["model_ewma_upper"], rtol=1e-9)
assert "model + EWMA (toy)" in interval_table(summary.probabilistic).index
assert "model + EWMA (toy)" in format_backtest_intervals(summary)
assert "model_ewma_winkler90_h1" in headline(summary)
print("ok")
"""


def test_a_new_combination_is_one_entry_and_is_scored_like_every_forecaster(
    tmp_path: Path,
) -> None:
    _run_in_a_fresh_interpreter(COMBINATION_DRIVER, tmp_path)


TOY_BASELINE = '''
"""A toy point baseline: the mean of the last five closes, at every horizon."""

import numpy as np

from stock_lstm.evaluation.forecasters import Forecaster, QuantileForecast


class MovingAverage(Forecaster):
    name = "ma5"
    label = "five-day moving average (toy)"

    def fit(self, history, fit_end_row):
        self.history = history
        return self

    def predict(self, origin_rows, horizon, levels):
        close = self.history.close
        means = np.array([close[row - 4 : row + 1].mean() for row in origin_rows])
        paths = np.repeat(means[:, None], horizon, axis=1)
        return QuantileForecast(tuple(levels), np.repeat(paths[..., None], len(levels), axis=2))
'''

BASELINE_DRIVER = """
from stock_lstm.evaluation import baselines

baselines.BASELINE_CLASSES["ma5"] = "toy_baseline:MovingAverage"  # the one line

import numpy as np

from stock_lstm.cli.formatting import format_backtest_points
from stock_lstm.data.frames import normalize_ohlcv
from stock_lstm.data.synthetic import synthetic_prices
from stock_lstm.evaluation.backtest import BacktestConfig, headline, walk_forward
from stock_lstm.evaluation.eda import baseline_comparison
from stock_lstm.models.records import TrainingMetrics
from stock_lstm.models.training import TrainParams

prices = normalize_ohlcv(synthetic_prices("ZZZ", rows=400, seed=4), "ZZZ").frame
params = TrainParams(epochs=1, sequence_length=10, hidden_size=4, horizon=2)
result = walk_forward(prices, params, BacktestConfig(horizon=2, origins=30))
summary, frame = result.summary, result.frame
first = summary.at_horizon(1)
rows = frame[frame["horizon"] == 1]
expected_mae = np.mean(np.abs(rows["ma5"] - rows["actual"]))
assert np.isclose(first.baselines["ma5"]["mae"], expected_mae), first.baselines
assert np.isclose(first.baseline_rmae["ma5"], expected_mae / first.persistence["mae"])
table = summary.point_table()
assert {"ma5 MAE", "rMAE (ma5)"} <= set(table.columns), list(table.columns)
assert "ma5 rMAE" in format_backtest_points(summary)
assert headline(summary)["rmae_ma5_h1"] == first.baseline_rmae["ma5"]
# The registry's JSON form keeps it, and the reports' comparison shows it.
stored = TrainingMetrics.from_json(TrainingMetrics(horizons=summary.horizons).to_json())
assert baseline_comparison(stored).loc["MAE", "ma5"] == first.baselines["ma5"]["mae"]
print("ok")
"""


def test_a_new_point_baseline_is_one_class_and_reaches_the_point_tables(
    tmp_path: Path,
) -> None:
    (tmp_path / "toy_baseline.py").write_text(textwrap.dedent(TOY_BASELINE))
    _run_in_a_fresh_interpreter(BASELINE_DRIVER, tmp_path)
