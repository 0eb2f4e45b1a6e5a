"""Shared fixtures: a temporary database, models folder and a generated CSV price folder.

Nothing here touches the network or the checkout: every test gets its own folders.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stock_lstm.config import Settings
from stock_lstm.data.synthetic import write_fixture_folder
from stock_lstm.workflows import AppContext

FIXTURE_TICKERS = ("AAPL", "MSFT", "TEST")


class FixedClock:
    """An injectable clock that only moves when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now = self.now + timedelta(**delta)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(scope="session")
def price_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``csv:DIR`` folder of deterministic synthetic tickers (600 business days each)."""
    return write_fixture_folder(tmp_path_factory.mktemp("prices"), FIXTURE_TICKERS)


@pytest.fixture
def settings(tmp_path: Path, price_dir: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'db' / 'stock_lstm.db'}",
        source=f"csv:{price_dir}",
        models_dir=tmp_path / "models",
        reports_dir=tmp_path / "reports",
        torch_threads=1,
    )


@pytest.fixture
def ctx(settings: Settings, clock: FixedClock) -> Iterator[AppContext]:
    context = AppContext.create(settings, clock=clock)
    yield context
    context.db.dispose()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Point the CLI (which reads the environment) at the temporary folders."""
    from stock_lstm.config import get_settings

    monkeypatch.setenv("STOCK_LSTM_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("STOCK_LSTM_SOURCE", settings.source)
    monkeypatch.setenv("STOCK_LSTM_MODELS_DIR", str(settings.models_dir))
    monkeypatch.setenv("STOCK_LSTM_REPORTS_DIR", str(settings.reports_dir))
    monkeypatch.setenv("STOCK_LSTM_TORCH_THREADS", "1")
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()
