"""The index of runs at scale: the newest runs and a table of tickers on ``index.html``,
every run of a ticker on its own page, links right from each."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stock_lstm.pipeline import run_index


def _run(reports: Path, ticker: str, n: int) -> str:
    run_id = f"20261207_0900{n:02d}_{n:06x}"
    folder = reports / ticker / run_id
    folder.mkdir(parents=True)
    manifest = {
        "run_id": run_id,
        "ticker": ticker,
        "status": "ok",
        "started_at": f"2026-12-07T09:00:{n:02d}+00:00",
        "stages": [{"stage": "train", "status": "ok", "html": "03_train.html"}],
    }
    (folder / "run.json").write_text(json.dumps(manifest))
    return run_id


def test_the_index_lists_the_newest_runs_and_links_every_tickers_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_index, "INDEX_LATEST_RUNS", 3)
    reports = tmp_path / "reports"
    made = [
        f"{'KO' if n % 2 else 'PEP'}/{_run(reports, 'KO' if n % 2 else 'PEP', n)}" for n in range(7)
    ]
    index = run_index.build_index(reports).read_text()
    listed = re.findall(r"<input type='checkbox' value='([^']+)'", index)
    assert listed == made[::-1][:3]  # newest first, three of seven
    assert "(the newest 3 of 7: the tickers below link to all)" in index
    assert "<a href='KO/index.html'>KO</a></td><td>3</td>" in index
    assert "<a href='PEP/index.html'>PEP</a></td><td>4</td>" in index
    assert 'data-compare="compare/"' in index

    pep = (reports / "PEP" / "index.html").read_text()
    assert re.findall(r"<input type='checkbox' value='([^']+)'", pep) == made[::-2]
    first = made[0].split("/")[1]
    assert f"<a href='{first}/03_train.html'>train</a>" in pep  # relative to its folder
    assert "href='../index.html'" in pep and 'data-compare="../compare/"' in pep


def test_a_tickers_page_is_not_mistaken_for_a_run(tmp_path: Path) -> None:
    from stock_lstm.pipeline.reports import prunable_runs, read_manifests

    reports = tmp_path / "reports"
    _run(reports, "KO", 1)
    run_index.build_index(reports)
    run_index.build_index(reports)  # a second rebuild reads the same runs
    assert len(read_manifests(reports)) == 1
    assert prunable_runs(reports, set()) == []


def test_a_batch_tasks_rebuild_reads_and_writes_only_its_tickers_page(tmp_path: Path) -> None:
    """Each of a nightly batch's tasks rebuilds its ticker's page from that ticker's runs;
    the whole index (every run's manifest read) is left to the batch's end."""
    reports = tmp_path / "reports"
    _run(reports, "KO", 1)
    _run(reports, "PEP", 2)
    page = run_index.build_index(reports, ticker_folder="KO")
    assert page == reports / "KO" / "index.html" and page.is_file()
    assert not (reports / "index.html").exists() and not (reports / "PEP" / "index.html").exists()
    _run(reports, "KO", 3)
    ko = run_index.build_index(reports, ticker_folder="KO").read_text()
    assert len(re.findall(r"<input type='checkbox'", ko)) == 2
