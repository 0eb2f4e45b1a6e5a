"""A universal model: pooled training reads nothing on or after its cut-off, fits are shared
by cut-off, and its forecasts are scale-free (a ticker's prices x 100 give forecasts x 100)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from api_helpers import TINY_PARAMS, wait_until

from stock_lstm.data.frames import normalize_ohlcv
from stock_lstm.data.synthetic import synthetic_prices, write_flat_csv
from stock_lstm.evaluation.backtest import BacktestConfig, walk_forward
from stock_lstm.evaluation.universe import (
    UniverseSpec,
    cutoff_for,
    fit_path,
    held_out_split,
    load_universal,
    needed_cutoffs,
    train_universal,
    universal_fit_function,
    universe_dates,
)
from stock_lstm.models.pooled import prepare_universe, train_pooled
from stock_lstm.models.training import TrainParams

TICKERS = ("AAA", "BBB", "CCC", "DDD", "EEE")
PARAMS = TrainParams.from_dict({**TINY_PARAMS, "horizon": 3, "chunk_length": 20})
CUTOFF = pd.Timestamp("2019-06-28")


def _universe(directory: Path, *, poison_after: pd.Timestamp | None = None) -> Path:
    """Five synthetic tickers; with ``poison_after``, every row after it encodes the future
    in a way a fit that read it could not miss (prices x 50, volumes x 1000)."""
    for k, ticker in enumerate(TICKERS):
        frame = synthetic_prices(ticker, rows=500, seed=k)
        if poison_after is not None:
            later = frame.index > poison_after
            for column in ("Open", "High", "Low", "Close", "Adj Close"):
                frame.loc[later, column] *= 50.0
            frame.loc[later, "Volume"] *= 1000
        write_flat_csv(frame, directory / f"{ticker}.csv")
    return directory


def _spec(directory: Path, cache: Path, held_out: tuple[str, ...] = ("EEE",)) -> UniverseSpec:
    return UniverseSpec(str(directory), held_out, str(cache))


def test_the_held_out_split_is_fixed_and_disjoint() -> None:
    names = [f"T{k:03d}" for k in range(200)]
    training, held = held_out_split(names)
    assert len(held) == 40 and len(training) == 160
    assert not set(training) & set(held)
    assert held_out_split(reversed(names)) == (training, held)  # the folder's order is moot
    with pytest.raises(ValueError, match="cannot hold out"):
        held_out_split(names[:5], 5)


def test_no_universe_row_after_the_cutoff_is_read(tmp_path: Path) -> None:
    clean = _spec(_universe(tmp_path / "clean"), tmp_path / "fits-clean")
    poisoned = _spec(
        _universe(tmp_path / "poisoned", poison_after=CUTOFF), tmp_path / "fits-poisoned"
    )
    train_universal(clean, PARAMS, CUTOFF)
    train_universal(poisoned, PARAMS, CUTOFF)
    first, _ = load_universal(clean, PARAMS, CUTOFF)
    second, _ = load_universal(poisoned, PARAMS, CUTOFF)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # A cut-off after the poison does read it: the guard above could fail.
    later = pd.Timestamp("2019-09-30")
    train_universal(clean, PARAMS, later)
    train_universal(poisoned, PARAMS, later)
    third, _ = load_universal(clean, PARAMS, later)
    fourth, _ = load_universal(poisoned, PARAMS, later)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(third.state_dict().values(), fourth.state_dict().values(), strict=True)
    )


def test_a_held_out_ticker_is_never_trained_on(tmp_path: Path) -> None:
    spec = _spec(_universe(tmp_path / "u"), tmp_path / "fits")
    assert "EEE" not in spec.training_tickers()
    run = train_universal(spec, PARAMS, CUTOFF)
    assert run["tickers"] == 4 and run["cached"] is False
    assert train_universal(spec, PARAMS, CUTOFF)["cached"] is True  # kept, not retrained
    assert fit_path(spec, PARAMS, CUTOFF).is_file()


def test_pooled_training_is_seeded_and_validates_on_the_last_dates(tmp_path: Path) -> None:
    frames = {
        t: normalize_ohlcv(synthetic_prices(t, rows=400, seed=k), t).frame
        for k, t in enumerate(TICKERS)
    }
    data = prepare_universe(frames, PARAMS)
    dates = frames["AAA"].index
    assert data.validation_start == dates[int(len(dates) * 0.85)]
    first = train_pooled(data, PARAMS, threads=1)
    again = train_pooled(data, PARAMS, threads=1)
    assert first.history == again.history
    assert first.train_origins == data.train_origins > 0


def test_a_universal_backtest_shares_fits_and_is_scale_free(tmp_path: Path) -> None:
    spec = _spec(_universe(tmp_path / "u"), tmp_path / "fits")
    dates = universe_dates(spec)
    # The scored ticker is one the universe never saw, on the universe's own dates.
    scored = normalize_ohlcv(synthetic_prices("ZZZ", rows=500, seed=9), "ZZZ").frame
    config = BacktestConfig(horizon=2, origins=40, refit_every=20)
    cutoffs = needed_cutoffs(scored, config, dates)
    assert len(cutoffs) == 2
    assert all(cutoff_for(dates, c) == c for c in cutoffs)
    fit = universal_fit_function(spec, dates)
    base = walk_forward(scored, PARAMS, config, fit=fit)
    assert len(list((tmp_path / "fits").rglob("*.pt"))) == 2  # one per cut-off
    scaled = scored.copy()
    for column in ("open", "high", "low", "close"):
        scaled[column] = scaled[column] * 100.0
    again = walk_forward(scaled, PARAMS, config, fit=fit)
    assert len(list((tmp_path / "fits").rglob("*.pt"))) == 2  # the same fits, reused
    for column in ("model", "lower", "upper", "har_range_lower", "ewma_upper"):
        np.testing.assert_allclose(again.frame[column], 100.0 * base.frame[column], rtol=1e-9)
    # GARCH's likelihood is maximized numerically: returns equal to ~1e-14 reach an optimum
    # equal to ~1e-4 (1.1e-4 for GJR with arch 8.0 and scipy 1.17), scale-free all the same.
    for column in ("garch_t_lower", "gjr_skewt_upper"):
        np.testing.assert_allclose(again.frame[column], 100.0 * base.frame[column], rtol=1e-3)


# --- serving: train-universe, activate --ticker, predict, train --from ----------------------

SMALL = ["--epochs", "2", "--sequence-length", "10", "--hidden-size", "8", "--horizon", "5"]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from stock_lstm.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_never_trained_ticker_predicts_after_activation_and_not_before(
    cli_env: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from stock_lstm.config import get_settings
    from stock_lstm.db import Database
    from stock_lstm.models.registry import get_model

    universe = _universe(tmp_path / "u")
    code, out, err = _cli(capsys, "train-universe", "--csv-dir", str(universe), *SMALL, "--json")
    assert code == 0, err
    version = json.loads(out)["version_id"]
    assert version.startswith("UNIVERSAL_") and json.loads(out)["tickers"] == len(TICKERS)

    code, _out, err = _cli(capsys, "predict", "TEST")
    assert code == 2 and "no active model for TEST" in err

    code, out, err = _cli(capsys, "activate", version, "--ticker", "TEST", "--json")
    assert code == 0, err
    test_version = json.loads(out)["version_id"]
    assert json.loads(out)["active"] is True and json.loads(out)["epochs_run"] == 0
    code, out, err = _cli(capsys, "predict", "TEST", "--days", "5", "--json")
    assert code == 0, err
    assert json.loads(out)["version_id"] == test_version

    # A second ticker gets its own version and its own calibration state.
    code, out, err = _cli(capsys, "activate", version, "--ticker", "AAPL", "--force", "--json")
    assert code == 0, err
    aapl_version = json.loads(out)["version_id"]
    assert _cli(capsys, "predict", "AAPL", "--days", "5")[0] == 0
    db = Database(get_settings().database_url)
    # Each version starts from its own ticker's validation slice: separate states.
    states = {v: get_model(db, v).metrics.calibration for v in (test_version, aapl_version)}
    db.dispose()
    assert all(states.values()) and states[test_version] != states[aapl_version]

    code, out, _err = _cli(capsys, "models", "--json")
    listing = json.loads(out)
    assert listing["universal"][0]["serving"] == ["AAPL", "TEST"]
    rows = {row["ticker"]: row for row in listing["models"]}
    assert rows["TEST"]["params"]["universal_version"] == version
    code, out, _err = _cli(capsys, "models")
    assert f"(from {version})" in out and "serving: AAPL, TEST" in out

    # Fine-tuning from the universal weights: a training setting may change, the shape not.
    code, out, err = _cli(capsys, "train", "MSFT", "--from", version, "--epochs", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["epochs_run"] >= 1
    code, _out, err = _cli(capsys, "train", "MSFT", "--from", version, "--hidden-size", "16")
    assert code == 2 and "hidden_size cannot change" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["activate", "UNIVERSAL_../../x", "--ticker", "TEST"], "not a universal version id"),
        (["activate", "UNIVERSAL_20990101_000000", "--ticker", "TEST"], "no universal version"),
        (["activate", "UNIVERSAL_20990101_000000"], "--ticker TICKER"),
        (["train", "TEST", "--from", "UNIVERSAL_x"], "not a universal version id"),
        (["train-universe", "--csv-dir", "/nonexistent/folder"], "/nonexistent/folder"),
    ],
)
def test_bad_universal_input_is_one_line_and_exit_2(
    cli_env: object, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _out, err = _cli(capsys, *argv)
    assert code == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_ticker_too_short_for_the_window_gets_one_clear_line(
    cli_env: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    universe = _universe(tmp_path / "u")
    code, out, err = _cli(capsys, "train-universe", "--csv-dir", str(universe), *SMALL, "--json")
    version = json.loads(out)["version_id"]
    short = tmp_path / "short"
    write_flat_csv(synthetic_prices("TINY", rows=12), short / "TINY.csv")
    code, _out, err = _cli(
        capsys, "activate", version, "--ticker", "TINY", "--source", f"csv:{short}"
    )
    assert code == 2 and "TINY" in err and "rows" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_api_activates_a_universal_version_for_a_ticker(ctx: Any, tmp_path: Path) -> None:
    """POST /models/{UNIVERSAL_...}/activate?ticker=X serves a ticker never trained alone; a
    universal version without a ticker, or a ticker with a ticker's own version, is a 422."""
    from fastapi.testclient import TestClient

    from stock_lstm.api import create_app
    from stock_lstm.universal_workflows import train_universe

    params = TrainParams.from_dict({**TINY_PARAMS, "horizon": 5})
    version = train_universe(ctx, _universe(tmp_path / "u"), params).version_id
    with TestClient(create_app(context=ctx)) as client:
        predict = {"ticker": "TEST", "days_ahead": 3}
        assert client.post("/api/v1/predict", json=predict).status_code == 404
        missing = client.post(f"/api/v1/models/{version}/activate")
        assert missing.status_code == 422 and "?ticker=" in missing.json()["detail"]
        response = client.post(f"/api/v1/models/{version}/activate", params={"ticker": "TEST"})
        assert response.status_code == 200, response.text
        own = response.json()["version_id"]
        assert response.json()["ticker"] == "TEST" and response.json()["is_active"] is True
        forecast = client.post("/api/v1/predict", json=predict)
        assert forecast.status_code == 200 and forecast.json()["version_id"] == own
        assert len(forecast.json()["combined_with"]) == 3
        again = client.post(f"/api/v1/models/{own}/activate", params={"ticker": "TEST"})
        assert again.status_code == 422
        bad = client.post(f"/api/v1/models/{version}/activate", params={"ticker": "../x"})
        assert bad.status_code == 422


# --- a universal training started from the API ----------------------------------------------


def test_a_universal_training_job_runs_notebook_06_and_serves_the_ticker(
    ctx: Any, tmp_path: Path
) -> None:
    """The API's job runs the real notebook 06 through the runner: the job follows the pooled
    epochs, completes with the ticker's new version (built from the universal one) and its
    report, and that version serves the ticker."""
    from stock_lstm.api.training_pool import TrainingTask, run_notebook_training
    from stock_lstm.models import jobs
    from stock_lstm.models.registry import get_active_model

    universe = _universe(tmp_path / "u")
    ctx.settings = ctx.settings.model_copy(update={"universe_dir": str(universe)})
    jobs.create_job(ctx.db, "TEST", TrainParams(epochs=2).to_dict(), job_id="JU")
    run_notebook_training(
        ctx, TrainingTask("JU", "TEST", {"epochs": 2, "held_out": 1}, stage="universe")
    )
    job = jobs.get_job(ctx.db, "JU")
    assert job.status == "completed", job.error
    assert 1 <= job.current_epoch <= 2 and job.losses
    active = get_active_model(ctx.db, "TEST")
    assert active.version_id == job.version_id
    assert str(active.params["universal_version"]).startswith("UNIVERSAL_")
    assert active.report_path and Path(active.report_path).is_file()


def test_the_api_starts_a_universal_training_for_a_ticker(ctx: Any, tmp_path: Path) -> None:
    """POST /training/universe queues a universe-stage job for the ticker with the notebook's
    parameters (never a folder from the request); bad input is a 422 that queues nothing."""
    from fastapi.testclient import TestClient

    from stock_lstm.api import create_app
    from stock_lstm.api.training_pool import TrainingTask
    from stock_lstm.models import jobs

    seen: list[TrainingTask] = []

    def record_only(context: Any, task: TrainingTask) -> None:
        seen.append(task)
        jobs.mark_failed(context.db, task.job_id, "not trained in this test")

    with TestClient(create_app(context=ctx, run_training=record_only)) as client:
        for body in (
            {"ticker": "KO", "epochs": 101},
            {"ticker": "KO", "held_out": -1},
            {"ticker": "../x"},
            {"ticker": "KO", "universe_dir": "/etc"},
            {"ticker": "KO", "until": "2020-13-01"},
        ):
            response = client.post("/api/v1/training/universe", json=body)
            assert response.status_code == 422, (body, response.text)
        assert jobs.list_jobs(ctx.db) == []
        body = {"ticker": "KO", "until": "2020-01-01", "epochs": 3, "seed": 7}
        response = client.post("/api/v1/training/universe", json=body)
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        status_url = response.json()["status_url"]
        wait_until(
            lambda: jobs.get_job(ctx.db, job_id).status == "failed", timeout=10, what="the job"
        )
        assert client.get(status_url).json()["status"] == "failed"
    (task,) = seen
    assert task.stage == "universe" and task.ticker == "KO"
    assert task.hyperparameters == {"held_out": 40, "epochs": 3, "seed": 7, "until": "2020-01-01"}
