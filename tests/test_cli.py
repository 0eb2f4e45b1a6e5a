"""The CLI end to end on generated CSV prices: train -> predict -> models -> activate,
and every bad input exits 2 with one line and leaves cache, registry and disk unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stock_lstm.cli import main
from stock_lstm.config import Settings, get_settings
from stock_lstm.db import Database, ModelRegistry, PriceCache, TrainingJob

SMALL = ["--epochs", "3", "--sequence-length", "10", "--hidden-size", "8", "--batch-size", "64"]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def state(settings: Settings) -> tuple[int, int, int, list[str]]:
    db = Database(settings.database_url)
    with db.session() as session:
        prices = session.scalar(select(func.count()).select_from(PriceCache))
        models = session.scalar(select(func.count()).select_from(ModelRegistry))
        jobs = session.scalar(select(func.count()).select_from(TrainingJob))
    db.dispose()
    files = (
        sorted(p.name for p in Path(settings.models_dir).glob("*"))
        if Path(settings.models_dir).exists()
        else []
    )
    return prices, models, jobs, files


def test_train_predict_models_activate_round_trip(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    synced = run_json(capsys, "sync", "AAPL")
    assert synced["rows"] == 600 and synced["from_cache"] is False
    assert {"ticker", "rows", "first_date", "last_date", "from_cache", "dropped_rows"} <= set(
        synced
    )
    assert run_json(capsys, "sync", "AAPL")["from_cache"] is True

    first = run_json(capsys, "train", "AAPL", *SMALL)
    assert first["active"] is True and first["epochs_run"] == 3
    assert Path(first["model_path"]).is_file() and Path(first["scaler_path"]).is_file()
    assert set(first["metrics"]["persistence"]) == {"mae", "rmse", "mape"}
    assert first["metrics"]["mae"] > 0 and first["train_seconds"] > 0

    forecast = run_json(capsys, "predict", "AAPL", "--days", "5")
    assert forecast["version_id"] == first["version_id"]
    assert len(forecast["predictions"]) == 5
    dates = [p["date"] for p in forecast["predictions"]]
    assert dates == sorted(dates) and dates[0] > forecast["last_date"]
    assert all(p["close"] > 0 for p in forecast["predictions"])

    second = run_json(capsys, "train", "AAPL", *SMALL, "--seed", "7")
    listed = run_json(capsys, "models", "AAPL")["models"]
    assert [m["is_active"] for m in listed] == [True, False]
    assert listed[0]["version_id"] == second["version_id"]
    # The registry's metrics in their one JSON form, not a record's repr.
    metrics = listed[0]["metrics"]
    assert metrics["training"]["epochs_run"] == 3 and metrics["gate"]["status"]
    assert metrics["horizons"][0]["model"]["mae"] == metrics["mae"] == second["metrics"]["mae"]

    # The human listing shows any point metric beside persistence's (POINT_METRICS' names).
    assert main(["models", "AAPL", "--metric", "rmse"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "test RMSE" in table[0]
    assert f"{metrics['horizons'][0]['model']['rmse']:.4f}" in table[1]

    run_json(capsys, "activate", first["version_id"])
    listed = {m["version_id"]: m["is_active"] for m in run_json(capsys, "models")["models"]}
    assert listed == {first["version_id"]: True, second["version_id"]: False}


def test_predict_all_forecasts_every_active_ticker_and_lists_failures(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged model fails its own ticker only: the others are forecast, the command says
    which failed and exits 1."""
    assert main(["predict", "--all"]) == 0
    assert "no active models yet" in capsys.readouterr().out
    trained = {t: run_json(capsys, "train", t, *SMALL)["version_id"] for t in ("AAPL", "TEST")}

    both = run_json(capsys, "predict", "--all", "--days", "3")
    assert [f["ticker"] for f in both["forecasts"]] == ["AAPL", "TEST"]
    assert {f["version_id"] for f in both["forecasts"]} == set(trained.values())
    assert all(len(f["predictions"]) == 3 for f in both["forecasts"]) and both["failed"] == {}

    Path(cli_env.models_dir, f"{trained['TEST']}.pt").write_bytes(b"not a model")
    assert main(["predict", "--all", "--days", "3"]) == 1
    out = capsys.readouterr().out
    assert "TEST    failed:" in out and "1 of 2 active tickers forecast" in out
    assert out.count("AAPL") == 2  # its forecast line (ticker and version), not a failure


def test_human_output_shows_model_beside_persistence(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "TEST", *SMALL, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "persistence" in out and "mae" in out and "active" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", ""],
        ["sync", "../x"],
        ["sync", "A B"],
        ["sync", "A;B"],
        ["sync", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"],
        ["sync", "NOSUCH"],
        ["train", "NOSUCH", *SMALL],
        ["train", "AAPL", "--epochs", "0"],
        ["train", "AAPL", "--learning-rate", "5"],
        ["train", "AAPL", "--dropout", "0.95"],
        ["train", "AAPL", "--num-layers", "0"],
        ["train", "AAPL", "--sequence-length", "590"],
        ["train", "AAPL", "--start", "2020-01-01", "--end", "2019-01-01"],
        ["predict", "AAPL", "--days", "0"],
        ["predict", "AAPL", "--days", "31"],
        ["predict", "MSFT", "--days", "5"],
        ["predict"],
        ["predict", "AAPL", "--all"],
        ["predict", "--all", "--days", "0"],
        ["activate", "AAPL_19990101_000000"],
        ["sync", "AAPL", "--source", "ftp:somewhere"],
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    before = state(cli_env)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err
    assert state(cli_env) == before


def test_corrupt_active_artifact_is_refused_with_the_version(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    trained = run_json(capsys, "train", "AAPL", *SMALL)
    Path(trained["model_path"]).write_bytes(b"\x00" * 10)
    assert main(["predict", "AAPL"]) == 2
    assert trained["version_id"] in capsys.readouterr().err


def test_unreachable_source_with_nothing_cached(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["sync", "AAPL", "--source", f"csv:{tmp_path / 'nowhere'}"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_job_id_records_progress(cli_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from stock_lstm.models.jobs import get_job

    trained = run_json(capsys, "train", "AAPL", *SMALL, "--job-id", "job-1")
    job = get_job(Database(cli_env.database_url), "job-1")
    assert job.status == "completed" and job.version_id == trained["version_id"]
    assert [loss["epoch"] for loss in job.losses] == [1, 2, 3] and job.progress == 100.0


def test_help_explains_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--epochs", "--patience", "--sequence-length", "--source", "--json"):
        assert flag in text


def test_yahoo_failure_is_one_clean_line_and_caches_nothing(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from yfinance_fakes import install_ticker, make_raising_ticker

    install_ticker(monkeypatch, make_raising_ticker(ConnectionError("Could not resolve host")))
    before = state(cli_env)
    assert main(["sync", "AAPL", "--source", "yahoo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no prices came back for AAPL") and "\n" not in err
    assert "Could not resolve host" in err
    assert state(cli_env) == before


def test_models_shows_the_gate_and_the_interval_coverage(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    trained = run_json(capsys, "train", "MSFT", *SMALL)
    assert main(["models", "MSFT"]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()[:2]
    assert header.split()[-3:] == ["90%", "cov.", "gate"]
    assert row.startswith("* " + trained["version_id"])
    assert row.split()[-1] == trained["gate"]["status"]
    coverage = trained["metrics"]["intervals_h1"]["model"]["coverage"]
    assert row.split()[-2] == f"{coverage:.3f}"


def test_the_backtest_headline_names_rmae_and_every_forecaster() -> None:
    from stock_lstm.cli import format_backtest_headline
    from stock_lstm.evaluation.results import BacktestSummary

    scores = {"0.9": {"coverage": 0.9, "winkler": 5.0, "kupiec_p": 0.5}, "crps": 0.4}
    har = {"0.9": {"coverage": 0.9, "winkler": 4.5, "kupiec_p": 0.5}, "crps": 0.4}
    summary = {
        "n_origins": 500,
        "first_origin": "2018-01-02",
        "last_origin": "2019-12-24",
        "fits": 5,
        "horizons": [
            {"horizon": 1, "model": {}, "persistence": {}, "rmae": 0.9987, "dm_p_value": 0.61},
            {"horizon": 2, "model": {}, "persistence": {}, "rmae": 1.0123, "dm_p_value": 0.012},
        ],
        "probabilistic": {
            **{name: [scores, scores] for name in ("model", "model_static", "garch_t", "ewma")},
            "har_range": [har, har],
        },
    }
    text = "\n".join(format_backtest_headline(BacktestSummary.model_validate(summary)))
    assert "500 origins 2018-01-02..2019-12-24, 5 fit(s)" in text
    assert "h=1: 0.999  no difference (p = 0.610)" in text
    assert "h=2: 1.012  worse (p = 0.012)" in text  # the test's word, never the ratio's
    for label in ("model (online calibration)", "GARCH(1,1)-t", "HAR on the range", "EWMA"):
        assert label in text
    # The strongest anchor (lowest Winkler) is marked, at each horizon shown, and no other.
    marked = [line for line in text.splitlines() if "strongest anchor" in line]
    assert len(marked) == 2 and marked[0].startswith("HAR on the range")


def test_a_dotenv_file_in_the_working_folder_sets_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stock_lstm.config import Settings as FreshSettings

    monkeypatch.delenv("STOCK_LSTM_SOURCE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("STOCK_LSTM_SOURCE=csv:/data/prices\nOTHER=1\n")
    assert FreshSettings().source == "csv:/data/prices"
    monkeypatch.setenv("STOCK_LSTM_SOURCE", "yahoo")
    assert FreshSettings().source == "yahoo"


# --- a missing CSV folder is an error on every command that names it (issue 14) -----------


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", "AAPL"],
        ["train", "AAPL", *SMALL],
        ["predict", "AAPL"],
        ["run", "sync", "--ticker", "AAPL"],
        ["backtest", "AAPL", "--origins", "5"],
        ["sweep", "AAPL", "--grid", "hidden_size=8", "--origins", "5"],
        ["serve", "--port", "1"],
    ],
)
def test_a_missing_csv_folder_is_an_error_even_when_the_cache_is_fresh(
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
) -> None:
    import uvicorn

    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: served.append(args))
    run_json(capsys, "sync", "AAPL")  # fresh for 24 hours
    before = state(cli_env)
    missing = tmp_path / "no" / "such" / "dir"
    for how in ("flag", "environment"):
        if how == "flag":
            code = main([*argv, "--source", f"csv:{missing}"])
        else:
            monkeypatch.setenv("STOCK_LSTM_SOURCE", f"csv:{missing}")
            get_settings.cache_clear()
            code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, (how, err)
        assert err.startswith("error: price folder") and "\n" not in err
        assert f"{missing} does not exist" in err
    assert served == [] and state(cli_env) == before
    assert not Path(cli_env.reports_dir).exists()


def test_evaluate_with_a_missing_csv_folder_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        ["evaluate", "--csv-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: price folder") and "\n" not in err
    assert not (tmp_path / "out").exists()


# --- a run id resolves inside the reports folder or is refused (issue 14) ----------------


@pytest.mark.parametrize("run_id", ["../../x", "../x", "ABSOLUTE", "a/../../x", ".."])
def test_a_run_id_outside_the_reports_folder_is_refused(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path, run_id: str
) -> None:
    if run_id == "ABSOLUTE":  # inside the test's folder, should the run id ever be obeyed
        run_id = str(tmp_path / "absolute")
    before = sorted(tmp_path.rglob("*"))
    assert main(["run", "sync", "--ticker", "AAPL", "--run-id", run_id, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run id") and "\n" not in err
    assert sorted(tmp_path.rglob("*")) == before


def test_a_batch_refuses_a_bad_run_id_before_any_task(cli_env: Settings) -> None:
    from stock_lstm.errors import InvalidParameterError
    from stock_lstm.pipeline.batch import run_stages_task, run_tickers

    class NoExecutor:
        remote = True

        def map(self, *args: object, **kwargs: object) -> dict:
            raise AssertionError("no task may start")

    with pytest.raises(InvalidParameterError, match="run id"):
        run_tickers(NoExecutor(), ["sync"], ["AAPL"], cli_env, run_id="../../x")  # type: ignore[arg-type]
    from stock_lstm.cluster import worker_settings

    row = run_stages_task(worker_settings(cli_env), "AAPL", ["sync"], {}, "../../x")
    assert row["status"] == "failed" and "run id" in row["error"]
