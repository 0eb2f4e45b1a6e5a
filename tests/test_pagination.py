"""Listings of thousands of rows page by keyset (``db.pages``): the registry's versions and
the training jobs, through the registry, the API and ``stock-lstm models``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from stock_lstm.db import Database
from stock_lstm.errors import InvalidParameterError
from stock_lstm.models import jobs
from stock_lstm.models.artifacts import SavedArtifacts
from stock_lstm.models.registry import TrainingDataSummary, list_models_page, register_model

SUMMARY = TrainingDataSummary(date(2020, 1, 2), date(2021, 1, 4), 250, "0" * 64)
START = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def _register(db: Database, ticker: str, n: int, *, at: datetime) -> str:
    version_id = f"{ticker}_{n:04d}"
    files = Path("/nowhere") / version_id
    register_model(
        db,
        ticker=ticker,
        artifacts=SavedArtifacts(version_id, files / "m.pt", files / "s.json", "m" * 64, "s" * 64),
        params={"epochs": 1},
        metrics={"mae": 1.0, "persistence": {"mae": 1.0}},
        data=SUMMARY,
        code_version="test",
        activate=True,
        clock=lambda: at,
    )
    return version_id


def test_pages_cover_every_version_once_newest_first(db: Database) -> None:
    # Two versions share each timestamp: the id breaks the tie, so no row is lost or repeated.
    made = [_register(db, "KO", n, at=START + timedelta(minutes=n // 2)) for n in range(25)]
    seen, cursor, totals = [], None, set()
    while True:
        page = list_models_page(db, limit=10, cursor=cursor)
        seen += [record.version_id for record in page.items]
        totals.add(page.total)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(made, reverse=True) and totals == {25}


def test_rows_added_while_paging_do_not_shift_the_pages(db: Database) -> None:
    for n in range(6):
        _register(db, "KO", n, at=START + timedelta(minutes=n))
    first = list_models_page(db, limit=3)
    _register(db, "KO", 99, at=START + timedelta(days=1))  # a new nightly version
    second = list_models_page(db, limit=3, cursor=first.next_cursor)
    assert [r.version_id for r in second.items] == ["KO_0002", "KO_0001", "KO_0000"]
    assert second.total == 7 and second.next_cursor is None


def test_a_ticker_filter_counts_that_ticker_only(db: Database) -> None:
    for n in range(3):
        _register(db, "KO", n, at=START + timedelta(minutes=n))
        _register(db, "PEP", n, at=START + timedelta(minutes=n))
    page = list_models_page(db, "PEP", limit=2)
    assert page.total == 3 and {r.ticker for r in page.items} == {"PEP"}


@pytest.mark.parametrize(
    ("limit", "cursor", "match"),
    [(0, None, "limit must be"), (1001, None, "limit must be"), (5, "KO_7777", "not a row")],
)
def test_bad_limits_and_cursors_are_clear_errors(
    db: Database, limit: int, cursor: str | None, match: str
) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        list_models_page(db, limit=limit, cursor=cursor)


def test_jobs_page_the_same_way(db: Database) -> None:
    for n in range(7):
        jobs.create_job(
            db,
            "KO",
            {"epochs": 1},
            job_id=f"job{n}",
            clock=lambda n=n: START + timedelta(seconds=n),
        )
    first = jobs.list_jobs_page(db, limit=4)
    rest = jobs.list_jobs_page(db, limit=4, cursor=first.next_cursor)
    assert [j.job_id for j in first.items + rest.items] == [f"job{n}" for n in range(6, -1, -1)]
    assert first.total == rest.total == 7 and rest.next_cursor is None


def test_the_api_pages_models_and_jobs(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from stock_lstm.api import create_app
    from stock_lstm.workflows import AppContext

    ctx = AppContext.create(settings)
    try:
        for n in range(5):
            _register(ctx.db, "KO", n, at=START + timedelta(minutes=n))
            jobs.create_job(
                ctx.db, "KO", {}, job_id=f"j{n}", clock=lambda n=n: START + timedelta(seconds=n)
            )
        with TestClient(create_app(context=ctx)) as client:
            first = client.get("/api/v1/models", params={"limit": 2}).json()
            assert first["total"] == 5 and len(first["models"]) == 2
            rest = client.get(
                "/api/v1/models", params={"limit": 10, "cursor": first["next_cursor"]}
            ).json()
            ids = [m["version_id"] for m in first["models"] + rest["models"]]
            assert ids == [f"KO_{n:04d}" for n in range(4, -1, -1)] and rest["next_cursor"] is None
            listed = client.get("/api/v1/training/jobs", params={"limit": 3}).json()
            assert listed["total"] == 5 and listed["next_cursor"] == "j2"
            for bad in ({"cursor": "KO_9999"}, {"cursor": "../x"}, {"limit": 0}):
                answer = client.get("/api/v1/models", params=bad)
                assert 400 <= answer.status_code < 500, (bad, answer.status_code)
    finally:
        ctx.db.dispose()


def test_the_cli_prints_a_page_and_how_to_get_the_next(
    settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    from stock_lstm.cli import main

    db = Database(settings.database_url)
    for n in range(4):
        _register(db, "KO", n, at=START + timedelta(minutes=n))
    db.dispose()
    monkeypatch.setenv("STOCK_LSTM_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("STOCK_LSTM_MODELS_DIR", str(settings.models_dir))
    assert main(["models", "KO", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "KO_0003" in out and "KO_0000" not in out
    assert "3 of 4 versions; the next 3: stock-lstm models KO --cursor KO_0001" in out
    assert main(["models", "KO", "--limit", "3", "--cursor", "KO_0001"]) == 0
    out = capsys.readouterr().out
    assert "KO_0000" in out and "KO_0003" not in out and "the next" not in out
    assert main(["models", "--cursor", "nope"]) == 2
    assert "not a row of this listing" in capsys.readouterr().err
