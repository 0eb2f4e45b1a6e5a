"""Many tickers on a real local Dask cluster: 2 worker processes on loopback, shared by the
tests of this module (starting one costs seconds).

What is proved here: tickers train in worker processes through the notebook runner and end
up registered exactly once each; a failing ticker does not stop the others; a worker that
dies mid-task is replaced and its task run again without a duplicate model; a sweep ranks
its points and registers nothing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from stock_lstm import cluster
from stock_lstm.cli import main
from stock_lstm.cluster import Executor, open_executor, worker_settings
from stock_lstm.config import Settings
from stock_lstm.models import jobs
from stock_lstm.models.registry import list_models
from stock_lstm.pipeline.batch import run_stages_task, training_job_id
from stock_lstm.workflows import AppContext

pytestmark = pytest.mark.slow

#: Notebook parameters small enough for a training of a few seconds.
TINY = {"epochs": 2, "patience": 0, "sequence_length": 10, "hidden_size": 8, "num_layers": 1}

# Worker processes unpickle the tasks of this module by value: they need not import it.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def executor() -> Iterator[Executor]:
    with open_executor(None, workers=2, dashboard=False, echo=None) as running:
        yield running


@pytest.fixture
def cli_executor(executor: Executor, monkeypatch: pytest.MonkeyPatch) -> Executor:
    """CLI commands use the module's cluster instead of starting their own."""

    def shared(*_args: Any, **_kwargs: Any) -> Any:
        from contextlib import nullcontext

        return nullcontext(executor)

    monkeypatch.setattr(cluster, "open_executor", shared)
    return executor


def test_tickers_train_on_two_worker_processes_and_one_failure_stops_nothing(
    cli_env: Settings, cli_executor: Executor, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = [arg for name, value in TINY.items() for arg in ("-p", name, str(value))]
    code = main(
        ["run", "train", "--tickers", "AAPL,MSFT,NOPE,TEST", *tiny, "--run-id", "b1", "--json"]
    )
    captured = capsys.readouterr()
    assert code == 1 and "1 of 4 ticker(s) failed: NOPE" in captured.err
    payload = json.loads(captured.out)
    rows = {row["ticker"]: row for row in payload["results"]}
    assert payload["failed"] == ["NOPE"] and "NOPE.csv" in rows["NOPE"]["error"]
    trained = ("AAPL", "MSFT", "TEST")
    assert all(rows[t]["status"] == "ok" and Path(rows[t]["report"]).is_file() for t in trained)
    # Two worker processes, neither of them this one.
    workers = {rows[t]["worker"] for t in (*trained, "NOPE")}
    assert len(workers) == 2 and not any(w.endswith(f":{os.getpid()}") for w in workers)

    ctx = AppContext.create(cli_env)
    try:
        models = list_models(ctx.db)
        assert sorted(m.ticker for m in models) == sorted(trained)
        assert all(m.is_active for m in models)
        assert {m.version_id for m in models} == {rows[t]["version_id"] for t in trained}
        assert all(m.report_path == rows[m.ticker]["report"] for m in models)
        job = jobs.get_job(ctx.db, training_job_id("b1", "AAPL"))
        assert job.status == jobs.COMPLETED and job.version_id == rows["AAPL"]["version_id"]
    finally:
        ctx.db.dispose()
    index = (Path(cli_env.reports_dir) / "index.html").read_text()
    assert all(t in index for t in trained)


def die_once(marker: str, when: str, *task_args: Any) -> dict[str, Any]:
    """``run_stages_task``, but the first attempt kills its own worker process, ``before``
    doing anything or ``after`` the model is registered; ``marker`` remembers the attempt."""
    first_attempt = not Path(marker).exists()
    if first_attempt and when == "before":
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    row = run_stages_task(*task_args)
    if first_attempt and when == "after":
        Path(marker).write_text(json.dumps(row))
        os._exit(1)
    return row


def test_a_worker_that_dies_mid_task_is_replaced_and_nothing_is_registered_twice(
    settings: Settings, executor: Executor, tmp_path: Path
) -> None:
    shared = worker_settings(settings)
    markers = {ticker: tmp_path / f"{ticker}.died" for ticker in ("AAPL", "MSFT")}
    calls = {
        "AAPL": (str(markers["AAPL"]), "before", shared, "AAPL", ["train"], TINY, "k1"),
        "MSFT": (str(markers["MSFT"]), "after", shared, "MSFT", ["train"], TINY, "k1"),
    }
    rows = executor.map(die_once, calls, desc="faults", progress=False)

    assert all(marker.exists() for marker in markers.values())  # both workers did die
    assert rows["AAPL"]["status"] == "ok" and not rows["AAPL"]["reused"]
    first = json.loads(markers["MSFT"].read_text())  # what the dead attempt had registered
    assert rows["MSFT"]["status"] == "ok" and rows["MSFT"]["reused"]
    assert rows["MSFT"]["version_id"] == first["version_id"]
    assert rows["MSFT"]["test_rmae_h1"] == first["test_rmae_h1"]

    ctx = AppContext.create(settings)
    try:
        models = list_models(ctx.db)
        assert sorted(m.ticker for m in models) == ["AAPL", "MSFT"]  # one each, no duplicate
        assert {m.version_id for m in models} == {rows[t]["version_id"] for t in ("AAPL", "MSFT")}
        for ticker in ("AAPL", "MSFT"):
            job = jobs.get_job(ctx.db, training_job_id("k1", ticker))
            assert job.status == jobs.COMPLETED
    finally:
        ctx.db.dispose()
    files = sorted(
        p.name for p in Path(settings.models_dir).iterdir() if not p.name.startswith(".")
    )
    assert len(files) == 4  # a model and a scaler per ticker, no orphan from a dead attempt


def test_a_sweep_ranks_its_points_beside_persistence_and_registers_nothing(
    cli_env: Settings, cli_executor: Executor, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "sweep", "AAPL", "--grid", "hidden_size=4,8", "--grid", "sequence_length=10,20",
            "--epochs", "2", "--patience", "0", "--num-layers", "1",
            "--horizon", "2", "--origins", "20", "--json",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(captured.out)
    points = payload["points"]
    assert len(points) == 4 and all(p["status"] == "ok" for p in points)
    assert {tuple(p["point"].values()) for p in points} == {(4, 10), (4, 20), (8, 10), (8, 20)}
    scores = [p["rmae_h1"] for p in points]
    assert scores == sorted(scores) and payload["best"] == points[0]["label"]
    # Same origins for every point: one persistence MAE, and rMAE is MAE over it.
    assert len({p["persistence_mae_h1"] for p in points}) == 1
    base = payload["baselines"]["persistence"]["mae_h1"]
    assert points[0]["mae_h1"] / base == pytest.approx(points[0]["rmae_h1"])
    assert payload["baselines"]["drift"]["rmae_h1"] > 0

    ctx = AppContext.create(cli_env)
    try:
        assert list_models(ctx.db) == [] and jobs.list_jobs(ctx.db) == []
    finally:
        ctx.db.dispose()
    models_dir = Path(cli_env.models_dir)
    assert not models_dir.exists() or not any(models_dir.iterdir())


def test_evaluate_backtests_each_ticker_as_a_task_of_the_same_seam(
    cli_executor: Executor, price_dir: Path
) -> None:
    from stock_lstm.evaluation.evaluate import build_tasks, default_params
    from stock_lstm.pipeline.experiments import run_tasks

    tasks = build_tasks(
        price_dir,
        ["AAPL", "NOPE"],
        [1],
        horizon=2,
        origins=5,
        refit_every=None,
        base_params=default_params({**TINY, "horizon": 2}),
        include_original=False,
    )
    rows = run_tasks(tasks, workers=2, progress=False)
    assert [(row["ticker"], row["status"]) for row in rows] == [("AAPL", "ok"), ("NOPE", "failed")]
    assert rows[0]["rmae_h1"] > 0 and "NOPE" in rows[1]["error"]
    # The summary says what the backtests cost, from the epochs each fit ran.
    assert rows[0]["epochs_per_fit"] == str(rows[0]["epochs_total"])  # one fit
    from stock_lstm.evaluation.evaluate import summarize

    _table, markdown = summarize(rows, 2)
    assert f"epochs per backtest {rows[0]['epochs_total']:.1f}" in markdown
