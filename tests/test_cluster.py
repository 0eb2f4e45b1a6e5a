"""The cluster seam without a cluster: shared-state rules, idempotent registration, parsing.

Everything here runs in-process in a second or two; the tests that start Dask workers are
in ``test_cluster_local.py`` and ``test_cluster_real.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stock_lstm.cli import main
from stock_lstm.cluster import settings_environment, settings_from_dict, worker_settings
from stock_lstm.config import Settings
from stock_lstm.errors import ClusterError, InvalidParameterError, InvalidTickerError
from stock_lstm.evaluation.sweep import SweepResult, format_sweep, grid_points, parse_grid
from stock_lstm.models import jobs
from stock_lstm.models.registry import list_models
from stock_lstm.models.training import TrainParams
from stock_lstm.pipeline.batch import (
    BatchResult,
    _attempt_run_id,
    check_parameters,
    format_summary,
    parse_tickers,
    training_job_id,
)
from stock_lstm.workflows import AppContext, register_outcome, train_ticker

SMALL = TrainParams(epochs=2, patience=0, sequence_length=10, hidden_size=8, num_layers=1)
REMOTE = "tcp://10.0.0.5:8786"


def test_sqlite_with_a_remote_scheduler_is_refused_with_the_fix(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        models_dir=tmp_path / "models",
        reports_dir=tmp_path / "reports",
        dask_scheduler=REMOTE,
    )
    with pytest.raises(ClusterError, match=r"SQLite .*postgresql\+psycopg://"):
        worker_settings(settings)


@pytest.mark.parametrize("folder", ["models_dir", "reports_dir"])
def test_relative_folders_with_a_remote_scheduler_are_refused(tmp_path: Path, folder: str) -> None:
    values = {
        "database_url": "postgresql+psycopg://u:p@db/stock_lstm",
        "models_dir": tmp_path / "models",
        "reports_dir": tmp_path / "reports",
        "dask_scheduler": REMOTE,
        folder: Path("relative") / "folder",
    }
    with pytest.raises(ClusterError, match=r"relative path.*every worker mounts"):
        worker_settings(Settings(**values))


def test_the_cli_refuses_sqlite_on_a_cluster_before_connecting(
    cli_env: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from stock_lstm.config import get_settings

    # Nothing listens on this port: the refusal must come before any connection attempt.
    monkeypatch.setenv("STOCK_LSTM_DASK_SCHEDULER", "tcp://127.0.0.1:9")
    # SQLite explicitly: under `make test-postgres` cli_env's database is a PostgreSQL one.
    monkeypatch.setenv("STOCK_LSTM_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    get_settings.cache_clear()
    code = main(["run", "train", "--tickers", "AAPL,MSFT", "-p", "epochs", "1"])
    assert code == 2
    assert "use a PostgreSQL server" in capsys.readouterr().err.replace("Use a", "use a")


def test_local_worker_settings_are_absolute_and_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(
        database_url="sqlite:///data/x.db",
        source="csv:prices",
        models_dir=Path("models"),
        reports_dir=Path("reports"),
        gate_threshold=0.97,
    )
    shared = worker_settings(settings)
    assert shared["database_url"] == f"sqlite:///{tmp_path / 'data' / 'x.db'}"
    assert shared["models_dir"] == str(tmp_path / "models")
    assert shared["source"] == f"csv:{tmp_path / 'prices'}"
    assert "dask_scheduler" not in shared
    json.dumps(shared)  # plain data: it travels to workers
    back = settings_from_dict(shared)
    assert back.gate_threshold == 0.97 and Path(back.reports_dir).is_absolute()
    env = settings_environment(back)
    assert env["STOCK_LSTM_GATE_THRESHOLD"] == "0.97"
    assert "STOCK_LSTM_DASK_SCHEDULER" not in env


def test_a_job_registers_one_model_even_when_its_task_runs_twice(ctx: AppContext, clock) -> None:
    """A retried task whose first worker died after registering trains again (or a stray
    first attempt finishes late): the second registration returns the first model."""
    job_id = training_job_id("run-1", "AAPL")
    first = register_outcome(ctx, train_ticker(ctx, "AAPL", SMALL, job_id=job_id), job_id=job_id)
    clock.advance(seconds=30)
    again = train_ticker(ctx, "AAPL", SMALL, job_id=job_id)
    second = register_outcome(ctx, again, job_id=job_id)
    assert second.version_id == first.version_id
    assert [r.version_id for r in list_models(ctx.db)] == [first.version_id]
    job = jobs.get_job(ctx.db, job_id)
    assert job.status == jobs.COMPLETED and job.version_id == first.version_id
    files = sorted(p.name for p in Path(ctx.settings.models_dir).iterdir())
    assert files == sorted([Path(first.model_path).name, Path(first.scaler_path).name])


def test_job_ids_are_stable_per_run_and_ticker() -> None:
    assert training_job_id("r1", "AAPL") == training_job_id("r1", "AAPL")
    assert len({training_job_id("r1", "AAPL"), training_job_id("r1", "MSFT")}) == 2
    assert len(training_job_id("a" * 200, "AAPL")) <= 64


def test_tickers_from_a_list_and_a_file(tmp_path: Path) -> None:
    listed = tmp_path / "tickers.txt"
    listed.write_text("# mine\nmsft\n\nKO  # drinks\nAAPL\n")
    assert parse_tickers("aapl, msft", listed) == ["AAPL", "MSFT", "KO"]
    with pytest.raises(InvalidParameterError, match="no tickers"):
        parse_tickers(" , ")
    with pytest.raises(InvalidTickerError):
        parse_tickers("AAPL,../etc")


def test_every_csv_of_a_folder_is_a_ticker(tmp_path: Path) -> None:
    for name in ("ko.csv", "AAPL.csv", "PETR4.SA.csv", "SOURCES.md"):
        (tmp_path / name).write_text("")
    assert parse_tickers(csv_dir=tmp_path) == ["AAPL", "KO", "PETR4.SA"]
    assert parse_tickers("MSFT,KO", csv_dir=tmp_path) == ["MSFT", "KO", "AAPL", "PETR4.SA"]
    with pytest.raises(InvalidParameterError, match="is not a folder"):
        parse_tickers(csv_dir=tmp_path / "missing")
    (tmp_path / "my prices.csv").write_text("")
    with pytest.raises(InvalidParameterError, match="is not named like a ticker"):
        parse_tickers(csv_dir=tmp_path)


def test_batch_parameters_are_checked_before_any_worker_starts() -> None:
    assert check_parameters(["train"], {"epochs": 2}) == ["train"]
    with pytest.raises(InvalidParameterError, match="set per ticker"):
        check_parameters(["train"], {"job_id": "x"})
    with pytest.raises(InvalidParameterError, match="'epoch' is not declared"):
        check_parameters(["train"], {"epoch": 2})


def test_a_dead_attempts_folder_is_marked_failed_and_a_new_one_chosen(tmp_path: Path) -> None:
    run_dir = tmp_path / "AAPL" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"status": "running", "ticker": "AAPL"}))
    assert _attempt_run_id(tmp_path, "AAPL", "r1") == "r1-attempt2"
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "failed" and "r1-attempt2" in manifest["error"]
    assert _attempt_run_id(tmp_path, "MSFT", "r1") == "r1"


def test_summary_names_scores_reports_and_failures() -> None:
    result = BatchResult(
        "r1",
        [
            {"ticker": "AAPL", "status": "ok", "test_rmae_h1": 0.99, "test_dm_p_h1": 0.31,
             "gate": "passed", "report": "/r/AAPL/r1/03_train.html"},
            {"ticker": "KO", "status": "failed", "error": "stage train failed: boom"},
            {"ticker": "PEP", "status": "ok", "reused": True, "test_rmae_h1": 1.0,
             "report": "/r/PEP/r1/03_train.html"},
        ],
    )  # fmt: skip
    text = format_summary(result)
    assert "test rMAE h=1 0.990 no difference (p = 0.310), gate passed" in text
    assert "/r/AAPL/r1/03_train.html" in text
    assert "stage train failed: boom" in text
    assert "  PEP       reused  " in text
    assert text.endswith("3 ticker(s): 1 run now, 1 reused (their model was registered by an "
                         "earlier attempt of this run id), 1 failed")  # fmt: skip
    assert result.failed == ["KO"]


def test_a_grid_is_the_cartesian_product_of_validated_values() -> None:
    grid = parse_grid(["hidden_size=32,64", "learning-rate=0.01,0.001", "strategy=direct"])
    assert grid == {"hidden_size": [32, 64], "learning_rate": [0.01, 0.001], "strategy": ["direct"]}
    points = grid_points(grid, {"epochs": 3})
    assert len(points) == 4 and all(p["epochs"] == 3 for p in points)
    assert {(p["hidden_size"], p["learning_rate"]) for p in points} == {
        (32, 0.01), (32, 0.001), (64, 0.01), (64, 0.001)
    }  # fmt: skip


@pytest.mark.parametrize(
    ("specs", "match"),
    [
        (["hidden=32"], "'hidden' is not a parameter a sweep varies"),
        (["horizon=5,10"], "'horizon' is not a parameter"),
        (["hidden_size=32,6x"], "'6x' is not a whole number"),
        (["hidden_size"], "write NAME=V1,V2"),
        (["seed=1", "seed=2"], "given twice"),
        ([], "at least one --grid"),
    ],
)
def test_bad_grids_are_refused_naming_the_problem(specs: list[str], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        parse_grid(specs)


def test_every_grid_point_is_checked_by_the_training_parameters_rules() -> None:
    with pytest.raises(InvalidParameterError, match=r"grid point hidden_size=0: hidden_size"):
        grid_points(parse_grid(["hidden_size=8,0"]), {})


def test_sweep_table_ranks_points_with_persistence_and_drift_in_place() -> None:
    def row(label: str, rmae: float) -> dict:
        return {"label": label, "status": "ok", "rmae_h1": rmae, "mae_h1": rmae * 2,
                "persistence_mae_h1": 2.0, "drift_mae_h1": 2.02, "rmae_drift_h1": 1.01,
                "dm_p_h1": 0.5, "directional_accuracy_h1": 0.5, "n_origins": 20,
                "first_origin": "2020-01-01", "last_origin": "2020-02-01"}  # fmt: skip

    result = SweepResult("AAPL", {"hidden_size": [8, 16, 32]}, {}, [
        row("hidden_size=8", 0.98), row("hidden_size=16", 1.005), row("hidden_size=32", 1.2),
        {"label": "hidden_size=64", "status": "failed", "error": "boom"},
    ])  # fmt: skip
    lines = format_sweep(result).splitlines()
    order = [next(w for w in ("=8 ", "=16", "=32", "=64", "persistence", "drift") if w in line)
             for line in lines[2:-1]]  # fmt: skip
    assert order == ["=8 ", "persistence", "=16", "drift", "=32", "=64"]
    assert result.best["label"] == "hidden_size=8" and result.failed == ["hidden_size=64"]
    assert lines[-1] == "best: hidden_size=8"
