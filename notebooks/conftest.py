"""nbval runs the notebooks against generated prices and throw-away folders.

Kernels inherit this process's environment, so setting ``STOCK_LSTM_*`` here points every
notebook at a temporary database, models and reports folder: CI never writes into the
checkout, and never needs the network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_ROOT = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    from stock_lstm.data.synthetic import write_fixture_folder

    root = Path(tempfile.mkdtemp(prefix="stock-lstm-nbval-"))
    config.stash[_ROOT] = root
    prices = write_fixture_folder(root / "prices", ("AAPL", "MSFT", "TEST"))
    # A small universe for 06_universe: ten generated tickers, two of them held out.
    universe = root / "universe"
    for k, name in enumerate(
        ("UAA", "UBB", "UCC", "UDD", "UEE", "UFF", "UGG", "UHH", "UII", "UJJ")
    ):
        write_fixture_folder(universe, (name,), seed=k + 1)
    os.environ.update(
        {
            "STOCK_LSTM_DATABASE_URL": f"sqlite:///{root / 'stock_lstm.db'}",
            "STOCK_LSTM_SOURCE": f"csv:{prices}",
            "STOCK_LSTM_MODELS_DIR": str(root / "models"),
            "STOCK_LSTM_REPORTS_DIR": str(root / "reports"),
            "STOCK_LSTM_UNIVERSE_DIR": str(universe),
            "STOCK_LSTM_TORCH_THREADS": "1",
        }
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    root = config.stash.get(_ROOT, None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
