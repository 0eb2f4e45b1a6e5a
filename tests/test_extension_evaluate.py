"""A network added as README says (one module, one line in ``models/networks.py``) is also
evaluated: ``stock-lstm evaluate --network tcn`` backtests it in worker processes.

The workers import the package afresh, so a test's monkeypatch of the registry never reaches
them; only an edited file does. So this copies the package, adds the toy TCN module and its
registry line to the copy, and runs the command with the copy first on ``PYTHONPATH``: what a
contributor's working tree would hold.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from test_extension_points import TCN_MODULE

import stock_lstm
from stock_lstm.data.synthetic import write_fixture_folder

REGISTRY_LINE = '    "tcn": "stock_lstm.models.tcn:TCNForecaster",\n'


def _package_with_a_tcn(root: Path) -> Path:
    """A copy of the package with ``models/tcn.py`` and its one registry line."""
    package = root / "stock_lstm"
    shutil.copytree(
        Path(stock_lstm.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    (package / "models" / "tcn.py").write_text(TCN_MODULE)
    registry = package / "models" / "networks.py"
    text = registry.read_text()
    opening = "NETWORK_CLASSES: dict[str, str] = {\n"
    assert opening in text, "the registry's opening line moved: update this test"
    registry.write_text(text.replace(opening, opening + REGISTRY_LINE, 1))
    return root


def test_evaluate_scores_a_network_added_by_one_module_and_one_line(tmp_path: Path) -> None:
    prices = write_fixture_folder(tmp_path / "prices", ("AAA",), rows=320, seed=3)
    code = _package_with_a_tcn(tmp_path / "code")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "stock_lstm.cli",
        "evaluate",
        "--csv-dir",
        str(prices),
        "--seeds",
        "1",
        "--horizon",
        "2",
        "--origins",
        "12",
        "--refit-every",
        "6",
        "--epochs",
        "2",
        "--sequence-length",
        "20",
        "--network",
        "tcn",
        "--network-option",
        "kernel_size=2",
        "--workers",
        "1",
        "--no-progress",
        "--output-dir",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(code), "MPLBACKEND": "Agg"}
    env.pop("STOCK_LSTM_DASK_SCHEDULER", None)
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = json.loads((out / "runs.json").read_text())
    assert run["status"] == "ok", run
    assert run["model_coverage90_h1"] is not None
    assert 0 < run["rmae_h1"] < 10
    # "ok" is the workers' word: each builds TrainParams(network="tcn") from the task and
    # trains it, which fails (a "failed" row) in a process whose registry lacks the line.
    assert (out / "AAA" / "seed1" / "backtest.csv").is_file()


def test_without_the_registry_line_evaluate_refuses_the_name_in_one_line(tmp_path: Path) -> None:
    prices = write_fixture_folder(tmp_path / "prices", ("AAA",), rows=320, seed=3)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "stock_lstm.cli", "evaluate", "--csv-dir", str(prices)),
            *("--network", "tcn", "--output-dir", str(tmp_path / "out")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "lstm, gru" in done.stderr
    assert not (tmp_path / "out").exists()
