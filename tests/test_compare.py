"""``stock-lstm compare``: runs side by side, differences marked only when a test says so;
the index's sort, filter and tick-to-compare script allowed by its hash and nothing else."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stock_lstm.cli import main
from stock_lstm.errors import InvalidParameterError, StockLSTMError
from stock_lstm.pipeline.compare import build_comparison, compare_with_first, load_run
from stock_lstm.pipeline.reports import hide_machine_paths
from stock_lstm.pipeline.run_index import INDEX_CSP, build_index

DATES = pd.bdate_range("2024-01-02", periods=250)


def _train_run(
    reports: Path,
    run_id: str,
    *,
    ticker: str = "KO",
    error_scale: float = 1.0,
    seed: int = 0,
    epochs: int = 100,
) -> Path:
    """A finished train run's folder: manifest with next-day metrics and forecasts.csv."""
    actual = 100 + np.cumsum(np.random.default_rng(123).normal(0, 1, len(DATES)))  # one ticker
    rng = np.random.default_rng(seed)
    persistence = np.r_[actual[0], actual[:-1]]
    model = actual + rng.normal(0, error_scale, len(DATES))
    folder = reports / ticker / run_id
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "target_date": DATES.strftime("%Y-%m-%d"),
            "horizon": 1,
            "actual": actual,
            "model": model,
            "persistence": persistence,
            "lower": model - 2 * error_scale,
            "upper": model + 2 * error_scale,
        }
    ).to_csv(folder / "forecasts.csv", index=False)
    mae = float(np.mean(np.abs(actual - model)))
    base = float(np.mean(np.abs(actual - persistence)))
    manifest = {
        "run_id": run_id,
        "ticker": ticker,
        "status": "ok",
        "started_at": "2026-12-07T06:30:00+00:00",
        "stages": [{"stage": "train", "status": "ok", "html": "03_train.html"}],
        "version_id": None,
        "parameters": {"epochs": epochs},
        "metrics": {
            "horizons": [
                {
                    "horizon": 1,
                    "n": len(DATES),
                    "model": {"mae": mae},
                    "persistence": {"mae": base},
                    "rmae": mae / base,
                    "dm_p_value": 0.5,
                }
            ],
            "intervals_h1": {
                "model": {"coverage": 0.9, "winkler": 5.0, "crps": 0.6},
                "garch_t": {"coverage": 0.9, "winkler": 4.0, "crps": 0.5},
            },
        },
    }
    (folder / "run.json").write_text(json.dumps(manifest))
    (folder / "03_train.html").write_text("<html></html>")
    return folder


def test_a_clearly_smaller_error_on_the_same_dates_is_better(tmp_path: Path) -> None:
    first = load_run(_train_run(tmp_path, "20261207_000000_aaaaaa", error_scale=1.0))
    second = load_run(_train_run(tmp_path, "20261207_000001_bbbbbb", error_scale=0.5, seed=1))
    tested = compare_with_first(first, second, 1)
    assert tested is not None and tested.shared == len(DATES)
    assert tested.point.word == "better" and tested.point.p_value < 0.05
    assert tested.interval.word == "better"  # narrower intervals covering as often


def test_the_same_error_size_is_no_difference_even_when_the_ratio_is_not_one(
    tmp_path: Path,
) -> None:
    first = load_run(_train_run(tmp_path, "20261207_000000_aaaaaa", seed=1))
    second = load_run(_train_run(tmp_path, "20261207_000001_bbbbbb", seed=2))
    tested = compare_with_first(first, second, 1)
    assert tested is not None and tested.point.ratio != 1
    assert tested.point.word == "no difference"


def test_other_tickers_are_shown_but_never_ranked(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    _train_run(reports, "20261207_000000_aaaaaa", ticker="KO")
    _train_run(reports, "20261207_000001_bbbbbb", ticker="PEP", error_scale=0.1)
    page = build_comparison(reports, ["20261207_000000_aaaaaa", "20261207_000001_bbbbbb"])
    text = page.read_text()
    assert page.parent == reports / "compare"
    assert "not tested against 20261207_000000_aaaaaa (PEP is another ticker than KO)" in text
    assert "better (" not in text and "worse (" not in text


def test_the_page_leads_with_the_answer_marks_differing_parameters_and_loads_nothing(
    tmp_path: Path,
) -> None:
    reports = tmp_path / "reports"
    _train_run(reports, "20261207_000000_aaaaaa", error_scale=1.0, epochs=100)
    _train_run(reports, "20261207_000001_bbbbbb", error_scale=0.5, seed=1, epochs=20)
    text = build_comparison(
        reports, ["20261207_000000_aaaaaa", "20261207_000001_bbbbbb"]
    ).read_text()
    answer = text.index("In short.")
    assert answer < text.index("<h2>")
    assert "better than 20261207_000000_aaaaaa (Diebold-Mariano p = " in text[answer:]
    assert "<tr class=diff><th scope=row>epochs</th><td>100</td><td>20</td>" in text
    assert "href='../KO/20261207_000000_aaaaaa/03_train.html'" in text
    assert "GARCH(1,1)-t: 4.000" in text  # the best anchor beside the served interval
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", text)
    assert "default-src 'none'" in text and "<script" not in text


@pytest.mark.parametrize(
    ("run_ids", "message"),
    [
        (["20261207_000000_aaaaaa"], "two or more run ids"),
        (["../../etc/passwd", "20261207_000000_aaaaaa"], "is not a run"),
        (["../KO/20261207_000000_aaaaaa", "20261207_000000_aaaaaa"], "malformed"),
        (["20261207_000000_aaaaaa", "20261207_000000_aaaaaa"], "each run id once"),
        (["20261207_000000_aaaaaa", "20991231_000000_ffffff"], "no run 20991231_000000_ffffff"),
    ],
)
def test_bad_run_ids_are_one_clear_error_and_write_nothing(
    tmp_path: Path, run_ids: list[str], message: str
) -> None:
    reports = tmp_path / "reports"
    _train_run(reports, "20261207_000000_aaaaaa")
    with pytest.raises(StockLSTMError, match=re.escape(message)):
        build_comparison(reports, run_ids)
    assert not (reports / "compare").exists()


def test_a_batch_run_is_named_by_its_ticker(tmp_path: Path) -> None:
    """One run id of a many-ticker batch holds every ticker: alone it is ambiguous."""
    reports = tmp_path / "reports"
    _train_run(reports, "20261207_000000_aaaaaa", ticker="KO")
    _train_run(reports, "20261207_000000_aaaaaa", ticker="PEP")
    _train_run(reports, "20261207_000001_bbbbbb", ticker="PEP", seed=1)
    with pytest.raises(InvalidParameterError, match=r"holds 2 tickers .* e.g. KO/2026"):
        build_comparison(reports, ["20261207_000000_aaaaaa", "20261207_000001_bbbbbb"])
    page = build_comparison(reports, ["PEP/20261207_000000_aaaaaa", "20261207_000001_bbbbbb"])
    assert page.name == "PEP-20261207_000000_aaaaaa__PEP-20261207_000001_bbbbbb.html"
    assert "not tested" not in page.read_text().split("<h2>")[0]  # same ticker: tested


def test_the_cli_writes_the_page_and_exits_2_on_a_bad_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    monkeypatch.setenv("STOCK_LSTM_REPORTS_DIR", str(reports))
    monkeypatch.setenv("STOCK_LSTM_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    _train_run(reports, "20261207_000000_aaaaaa")
    _train_run(reports, "20261207_000001_bbbbbb", seed=1)
    assert main(["compare", "20261207_000000_aaaaaa", "20261207_000001_bbbbbb"]) == 0
    assert "wrote " in capsys.readouterr().out
    assert main(["compare", "20261207_000000_aaaaaa", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nope' is not a run" in err


def test_the_index_script_is_allowed_by_its_hash_and_offers_compare(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    _train_run(reports, "20261207_000000_aaaaaa")
    text = build_index(reports).read_text()
    scripts = re.findall(r"<script>(.*?)</script>", text, flags=re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in INDEX_CSP and INDEX_CSP in text
    assert "<input type='checkbox' value='KO/20261207_000000_aaaaaa'" in text
    markup = re.sub(r"<script>.*?</script>", "", text, flags=re.S)
    assert not re.search(r"<[^>]*\son\w+=", markup)  # no inline handler: the hash allows none


def test_a_report_shows_the_runners_paths_relative_to_the_project(tmp_path: Path) -> None:
    import nbformat

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "stock-lstm"\n')
    run_dir = tmp_path / "reports" / "KO" / "r"
    notebook = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell(f'report_path = "{run_dir / "03_train.html"}"')
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells = [injected]
    hide_machine_paths(notebook, run_dir / "03_train.ipynb")
    assert notebook.cells[0].source == 'report_path = "reports/KO/r/03_train.html"'


def _backtest_run(reports: Path, run_id: str, *, error_scale: float, seed: int) -> Path:
    """A backtest run's folder: summary.json (as ``backtest_ticker`` writes it) and the
    per-origin backtest.csv at horizons 1 and 5."""
    actual = 100 + np.cumsum(np.random.default_rng(123).normal(0, 1, len(DATES) + 5))
    rng = np.random.default_rng(seed)
    rows = []
    for h in (1, 5):
        model = actual[h:][: len(DATES)] + rng.normal(0, error_scale * math.sqrt(h), len(DATES))
        rows.append(
            pd.DataFrame(
                {
                    "origin_date": DATES.strftime("%Y-%m-%d"),
                    "horizon": h,
                    "target_date": (DATES + pd.offsets.BDay(h)).strftime("%Y-%m-%d"),
                    "actual": actual[h:][: len(DATES)],
                    "model": model,
                    "persistence": actual[: len(DATES)],
                    "lower": model - 2,
                    "upper": model + 2,
                }
            )
        )
    folder = reports / "KO" / run_id
    folder.mkdir(parents=True)
    frame = pd.concat(rows)
    frame.to_csv(folder / "backtest.csv", index=False)
    horizons = []
    for h in (1, 5):
        part = frame[frame["horizon"] == h]
        mae = float((part["actual"] - part["model"]).abs().mean())
        base = float((part["actual"] - part["persistence"]).abs().mean())
        horizons.append(
            {"horizon": h, "model": {"mae": mae}, "persistence": {"mae": base}, "rmae": mae / base}
        )
    summary = {
        "params": {"epochs": 100, "seed": seed},
        "config": {"interval_level": 0.9},
        "horizons": horizons,
        "probabilistic": {"model": [{"horizon": 1, "crps": 0.5, "0.9": {"coverage": 0.88}}]},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    manifest = {
        "run_id": run_id,
        "ticker": "KO",
        "status": "ok",
        "stages": [{"stage": "backtest", "status": "ok", "html": "05_backtest.html"}],
        "metrics": None,
    }
    (folder / "run.json").write_text(json.dumps(manifest))
    return folder


def test_backtests_are_compared_at_every_horizon_they_share(tmp_path: Path) -> None:
    first = load_run(_backtest_run(tmp_path, "20261207_000000_aaaaaa", error_scale=1, seed=1))
    second = load_run(_backtest_run(tmp_path, "20261207_000001_bbbbbb", error_scale=0.4, seed=2))
    assert first.parameters == {"epochs": 100, "seed": 1}
    assert first.intervals["model"].coverage == 0.88 and sorted(first.horizons) == [1, 5]
    for horizon in (1, 5):
        tested = compare_with_first(first, second, horizon)
        assert tested is not None and tested.shared == len(DATES)
        assert tested.point.word == "better"
    assert compare_with_first(first, second, 10) is None  # no such horizon: not tested
