"""The backtest summary is typed: old summary.json files read, the JSON form is unchanged,
and nothing in src/ or the notebooks reads nested results by string key any more."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from stock_lstm.evaluation.backtest import headline
from stock_lstm.evaluation.intervals import best_anchor, interval_table
from stock_lstm.evaluation.results import BacktestSummary, ProbabilisticScores

ROOT = Path(__file__).resolve().parents[1]


def _level(coverage: float, winkler: float) -> dict[str, object]:
    return {
        "coverage": coverage,
        "width": 3.0,
        "winkler": winkler,
        "kupiec_p": 0.4,
        "christoffersen_p": None,
        "coverage_by_regime": [0.9, 0.88, 0.85],
    }


def _old_summary() -> dict[str, object]:
    """A summary.json as the version before the typed records wrote it (json.dumps, NaN
    literals, a flat ``rmae``, ``fit_windows`` added by the workflow)."""
    horizon = {
        "horizon": 1,
        "n": 500,
        "model": {"mae": 1.9, "rmse": 2.5, "mape": 1.1},
        "persistence": {"mae": 2.0, "rmse": 2.6, "mape": 1.2},
        "drift": {"mae": 2.01, "rmse": 2.61, "mape": 1.21},
        "rmae": 0.95,
        "rmae_ci": [0.9, 1.0],
        "rmae_drift": 1.005,
        "directional_accuracy": 0.52,
        "directional_ci": [0.48, 0.56],
        "dm_statistic": -2.1,
        "dm_p_value": 0.03,
        "predicted_move_std": 0.004,
        "actual_move_std": 0.02,
        "coverage": 0.9,
        "interval_width": 8.0,
    }
    row = {"horizon": 1, "pinball": 0.3, "crps": 0.61, "0.8": _level(0.8, 4.0)}
    return {
        "params": {"epochs": 2, "seed": 42},
        "config": {"horizon": 1, "origins": 500, "interval_level": 0.9},
        "n_origins": 500,
        "first_origin": "2018-01-02",
        "last_origin": "2019-12-24",
        "fits": 1,
        "epochs_per_fit": [2],
        "horizons": [horizon],
        "rmae": {"1": 0.95},
        "probabilistic": {
            "model": [{**row, "0.9": _level(0.89, 5.0)}],
            "garch_t": [{**row, "0.9": _level(0.9, 4.8)}],
            "ewma": [{**row, "crps": float("nan"), "0.9": _level(0.87, float("nan"))}],
        },
        "anchor_choices": [["garch_t"]],
        "ticker": "KO",
        "fit_windows": [
            {
                "fit": 1,
                "train_first_date": "2010-01-04",
                "train_last_date": "2017-12-29",
                "first_origin_date": "2018-01-02",
                "origins": 500,
                "epochs_run": 2,
                "best_epoch": 2,
                "warm_start": False,
            }
        ],
    }


def test_a_summary_written_before_the_records_reads_with_every_score(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(_old_summary(), indent=2))  # NaN written as NaN, as it was
    summary = BacktestSummary.read(path)
    assert summary is not None and summary.ticker == "KO"
    assert summary.at_horizon(1).rmae == 0.95
    model = summary.probabilistic["model"][0]
    assert model.at(0.9).coverage == 0.89 and model.at(0.8).winkler == 4.0
    assert model.at(0.95).coverage is None  # a level not scored reads as empty, not an error
    assert summary.probabilistic["ewma"][0].at(0.9).winkler is not None  # NaN kept as NaN
    # The strongest anchor skips ewma's NaN Winkler score; the table reads typed rows.
    assert best_anchor(summary.probabilistic) == "garch_t"
    table = interval_table(summary.probabilistic)
    assert table.loc["GARCH(1,1)-t", "vs best anchor %"] == 0.0
    assert headline(summary)["model_winkler90_h1"] == 5.0
    assert summary.fit_windows[0].train_last_date == "2017-12-29"


def test_the_json_form_is_the_one_summary_json_always_had(tmp_path: Path) -> None:
    old = _old_summary()
    summary = BacktestSummary.model_validate(old)
    written = json.loads(summary.to_json_text())
    # Levels stay keyed by the level beside crps; rmae stays flat; NaN becomes null.
    assert written["probabilistic"]["model"][0]["0.9"]["coverage"] == 0.89
    assert written["probabilistic"]["ewma"][0]["crps"] is None
    assert written["rmae"] == {"1": 0.95}
    assert set(written) >= set(old)
    # And it reads back to the same record (NaN read back as None).
    again = BacktestSummary.model_validate_json(summary.to_json_text())
    assert again.probabilistic["model"] == summary.probabilistic["model"]
    assert again.horizons == summary.horizons


def test_a_summary_that_cannot_be_read_is_none_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "summary.json"
    assert BacktestSummary.read(path) is None  # no file: no summary
    path.write_text('{"horizons": [{"horizon": 0}]')
    assert BacktestSummary.read(path) is None
    assert "is not a backtest summary" in caplog.text


def test_a_level_key_is_told_from_a_score_name() -> None:
    row = ProbabilisticScores.model_validate({"horizon": 2, "crps": 1.0, "0.95": {"width": 2.0}})
    assert row.horizon == 2 and row.at(0.95).width == 2.0 and not math.isnan(row.crps or 0)
    assert set(row.model_dump()) == {"horizon", "pinball", "crps", "0.95"}


#: A string key reading a nested result: a level's scores (``["0.9"]``, ``[f"{level:g}"]``),
#: a score of a level, or a section of a summary or an evaluation. Writes (``row["x"] =``)
#: are how those scores are made and stay; typed attributes replace every read.
STRING_KEY_READ = re.compile(
    r"""(?:\[\s*f?["'](?:0\.\d+|\{level:g\}|coverage|winkler|crps|kupiec_p)["']\s*\]"""
    r"""|\b(?:summary|extra)\s*\[[^\]]*\]|\b(?:summary|extra)\.get\("""
    r"""|\.get\(\s*["']0\.\d+["'])"""
    r"""(?!\s*=[^=])"""
)
#: The records themselves read the raw JSON they validate (and its older forms).
RECORD_MODULES = {"evaluation/results.py", "models/records.py"}


def test_no_nested_result_is_read_by_string_key_in_the_package_or_the_notebooks() -> None:
    package = ROOT / "src" / "stock_lstm"
    paths = [
        path
        for path in sorted(package.rglob("*.py"))
        if str(path.relative_to(package)) not in RECORD_MODULES
    ]
    paths += sorted((ROOT / "notebooks").glob("*.ipynb"))
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":
            cells = json.loads(text)["cells"]
            text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for number, line in enumerate(text.splitlines(), 1):
            if STRING_KEY_READ.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "read these through the typed records:\n" + "\n".join(found)


def test_the_string_key_check_finds_the_reads_it_is_for() -> None:
    """The grep above must catch the reads it replaced (a check that cannot fail proves
    nothing), and leave writes alone."""
    caught = [
        'row["0.9"]["coverage"]',
        'per_horizon[0][f"{level:g}"]',
        'result.summary["n_origins"]',
        'summary.get("probabilistic")',
        'evaluation.extra["probabilistic"]',
        'scores["winkler"] / reference',
    ]
    assert all(STRING_KEY_READ.search(line) for line in caught)
    assert not STRING_KEY_READ.search('scores["kupiec_p"] = kupiec_test(misses, level)')
    assert not STRING_KEY_READ.search('frame["epochs_per_fit"].notna()')
    assert not STRING_KEY_READ.search('extra["report_path"] = str(html_path)')
