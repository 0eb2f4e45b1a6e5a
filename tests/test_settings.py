"""Every ``STOCK_LSTM_*`` setting is checked when it is read: a bad value is one line naming
the variable, the value and what is accepted (CLI exit 2, API and notebook runs refused),
never a traceback or a bare pydantic link. ``CACHE_EXPIRY_HOURS=0`` means always refresh."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from stock_lstm.cli import main
from stock_lstm.config import ACCEPTED, Settings, get_settings, load_settings
from stock_lstm.errors import SettingsError

#: (variable, bad value, text the accepted-values part must contain)
BAD_VALUES = [
    ("TORCH_THREADS", "x", "whole number"),
    ("TORCH_THREADS", "0", "whole number"),
    ("DATABASE_URL", "nonsense", "SQLAlchemy URL"),
    ("DATABASE_URL", "nosuchdialect://x", "SQLAlchemy URL"),
    ("CACHE_EXPIRY_HOURS", "abc", "always refresh"),
    ("CACHE_EXPIRY_HOURS", "-1", "always refresh"),
    ("CACHE_EXPIRY_HOURS", "nan", "always refresh"),
    ("CACHE_EXPIRY_HOURS", "inf", "always refresh"),
    ("HISTORY_YEARS", "0", "1 to 100"),
    ("MODEL_CACHE_SIZE", "0", "whole number"),
    ("PRICE_RECHECK_SECONDS", "-1", "0 (always query)"),
    ("SQLITE_BUSY_TIMEOUT_SECONDS", "0", "above 0"),
    ("GATE_THRESHOLD", "0", "above 0"),
    ("GATE_THRESHOLD", "inf", "above 0"),
    ("INTERVAL_LEVEL", "0.5", "0.8, 0.9 or 0.95"),
    ("SOURCE", "ftp:somewhere", "'yahoo' or 'csv:DIR'"),
    ("MODELS_DIR", "", "folder path"),
    ("REPORTS_DIR", " ", "folder path"),
    ("PUSHGATEWAY_URL", "ftp://gateway", "http(s)://"),
    ("DASK_SCHEDULER", "nonsense", "tcp://HOST:PORT"),
]


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """``get_settings`` re-reads the environment the test sets."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in err and "errors.pydantic.dev" not in err
    return err


def test_every_setting_says_what_it_accepts() -> None:
    assert set(ACCEPTED) == set(Settings.model_fields)


def test_the_configuration_reference_lists_every_setting_and_nothing_else() -> None:
    root = Path(__file__).resolve().parents[1]
    reference = (root / "docs" / "configuration.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `STOCK_LSTM_(\w+)` \|", reference, flags=re.M))
    assert listed == {field.upper() for field in Settings.model_fields}
    assert "docs/configuration.md" in (root / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "value", "accepted"), BAD_VALUES)
def test_a_bad_setting_is_one_line_naming_variable_value_and_accepted_values(
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    accepted: str,
) -> None:
    monkeypatch.setenv(f"STOCK_LSTM_{name}", value)
    get_settings.cache_clear()
    assert main(["models"]) == 2
    err = one_error_line(capsys)
    assert f"STOCK_LSTM_{name}={value!r}" in err
    assert accepted in err


@pytest.mark.parametrize(
    "argv",
    [
        ["models"],
        ["activate", "AAPL_20240101_000000"],
        ["sync", "AAPL"],
        ["train", "AAPL", "--epochs", "1"],
        ["predict", "AAPL"],
        ["run", "sync", "--ticker", "AAPL"],
        ["backtest", "AAPL"],
        ["sweep", "AAPL", "--grid", "hidden_size=8"],
        ["evaluate", "--csv-dir", "nowhere", "--output-dir", "nowhere"],
        ["reports"],
        ["serve", "--port", "1"],
    ],
)
def test_every_command_checks_the_settings_before_it_starts(
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
) -> None:
    monkeypatch.setenv("STOCK_LSTM_TORCH_THREADS", "x")
    get_settings.cache_clear()
    assert main(argv) == 2
    assert "STOCK_LSTM_TORCH_THREADS='x'" in one_error_line(capsys)
    assert not Path(cli_env.reports_dir).exists() and not Path(cli_env.models_dir).exists()


def test_a_bad_flag_is_named_as_the_flag(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "--database-url", "nonsense"]) == 2
    err = one_error_line(capsys)
    assert "--database-url='nonsense'" in err and "SQLAlchemy URL" in err


def test_a_flag_replaces_a_bad_variable(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCK_LSTM_DATABASE_URL", "nonsense")
    get_settings.cache_clear()
    assert main(["models", "--database-url", cli_env.database_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "total": 0,
        "next_cursor": None,
        "universal": [],
        "models": [],
    }


def test_secrets_are_not_quoted_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOCK_LSTM_API_TOKEN", "s3cret with spaces")
    monkeypatch.setenv("STOCK_LSTM_DATABASE_URL", "postgresql://me:hunter2@db:99999/x")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "STOCK_LSTM_API_TOKEN=(hidden)" in message and "s3cret" not in message
    assert "STOCK_LSTM_DATABASE_URL=" in message and "hunter2" not in message
    assert "\n" not in message


def test_a_bad_value_in_dotenv_is_named_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STOCK_LSTM_CACHE_EXPIRY_HOURS", raising=False)
    (tmp_path / ".env").write_text("STOCK_LSTM_CACHE_EXPIRY_HOURS=-1\n")
    get_settings.cache_clear()
    try:
        assert main(["models"]) == 2
    finally:
        get_settings.cache_clear()
    assert "STOCK_LSTM_CACHE_EXPIRY_HOURS='-1'" in one_error_line(capsys)


def test_blank_optional_settings_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TORCH_THREADS", "API_TOKEN", "PUSHGATEWAY_URL", "DASK_SCHEDULER"):
        monkeypatch.setenv(f"STOCK_LSTM_{name}", "")
    settings = Settings()
    assert settings.torch_threads is None and settings.api_token is None
    assert settings.pushgateway_url is None and settings.dask_scheduler is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DASK_SCHEDULER", "tcp://10.0.0.5:8786"),
        ("DASK_SCHEDULER", "127.0.0.1:8786"),
        ("PUSHGATEWAY_URL", "http://pushgateway:9091"),
        ("PUSHGATEWAY_URL", "localhost:9091"),
        ("DATABASE_URL", "postgresql+psycopg://u:p@localhost:5432/db"),
        ("CACHE_EXPIRY_HOURS", "0"),
        ("PRICE_RECHECK_SECONDS", "0"),
    ],
)
def test_ordinary_values_are_accepted(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"STOCK_LSTM_{name}", value)
    load_settings()


def test_expiry_zero_is_accepted_and_always_refreshes(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCK_LSTM_CACHE_EXPIRY_HOURS", "0")
    get_settings.cache_clear()
    for _ in range(2):
        assert main(["sync", "AAPL", "--json"]) == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["from_cache"] is False


def test_the_api_refuses_to_start_with_a_bad_setting(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    from stock_lstm.api.app import create_app

    monkeypatch.setenv("STOCK_LSTM_CACHE_EXPIRY_HOURS", "abc")
    with pytest.raises(SettingsError, match=r"^STOCK_LSTM_CACHE_EXPIRY_HOURS='abc'"):
        create_app()


def test_a_notebook_kernel_sees_a_bad_setting_as_an_expected_error(
    monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    """``setup_notebook`` builds its context like this: a ``SettingsError``, which notebooks
    show as one line (``show_expected_errors_in_one_line``), not a pydantic traceback."""
    from stock_lstm.workflows import AppContext

    monkeypatch.setenv("STOCK_LSTM_TORCH_THREADS", "x")
    with pytest.raises(SettingsError, match="STOCK_LSTM_TORCH_THREADS='x'"):
        AppContext.create(source="yahoo")
