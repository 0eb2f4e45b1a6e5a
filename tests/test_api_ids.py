"""Ids and filters the database cannot store or would only search for in vain are refused
before any query (issue 14, item 10).

On PostgreSQL a NUL byte in ``/reports/a%00b`` was a 500 (it refuses NUL in text); on SQLite
the same request searched and answered 404. Either way the request must never reach a query:
each test here counts the SQL statements the request ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from api_helpers import fast_training
from fastapi.testclient import TestClient
from sqlalchemy import event

from stock_lstm.api import create_app
from stock_lstm.workflows import AppContext

#: (method, URL template): every route that takes a version or job id in its path.
ID_ROUTES = [
    ("GET", "/api/v1/reports/{}"),
    ("GET", "/api/v1/training/status/{}"),
    ("POST", "/api/v1/models/{}/activate"),
]
#: Ids as they appear in a URL: a NUL byte, other control characters, over-long, bad shape.
HOSTILE_IDS = [
    "a%00b",
    "%00",
    "a%01b",
    "a%7Fb",
    "x" * 65,
    "x" * 5000,
    "a%20b",
    "%C3%A4",
    ".hidden",
    "-x",
    "a%27b",
]
#: Query filters that reach a ``WHERE`` clause.
FILTER_ROUTES = ["/api/v1/models?ticker={}", "/api/v1/training/jobs?ticker={}"]


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context=ctx, run_training=fast_training)) as test_client:
        yield test_client


@contextmanager
def recorded_statements(ctx: AppContext) -> Iterator[list[str]]:
    """The SQL statements run on ``ctx``'s engine inside the block."""
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", record)


@pytest.mark.parametrize(("method", "template"), ID_ROUTES)
@pytest.mark.parametrize("raw_id", HOSTILE_IDS, ids=lambda raw: raw[:12])
def test_hostile_path_ids_are_refused_before_any_query(
    client: TestClient, ctx: AppContext, method: str, template: str, raw_id: str
) -> None:
    with recorded_statements(ctx) as statements:
        response = client.request(method, template.format(raw_id))
    assert response.status_code in (400, 422), response.text
    assert response.json()["detail"]
    assert statements == [], f"{method} {template}: queried before refusing: {statements}"


@pytest.mark.parametrize("template", FILTER_ROUTES)
@pytest.mark.parametrize("raw", ["A%00B", "%00", "A%0AB"])
def test_control_characters_in_query_filters_are_refused_before_any_query(
    client: TestClient, ctx: AppContext, template: str, raw: str
) -> None:
    with recorded_statements(ctx) as statements:
        response = client.get(template.format(raw))
    assert response.status_code == 400, response.text
    assert "control character" in response.json()["detail"]
    assert statements == []


def test_real_ids_still_work(client: TestClient, ctx: AppContext) -> None:
    """The id rule admits every id the project makes (version ids, hex and caller job ids)."""
    started = client.post("/api/v1/training/start", json={"ticker": "AAPL"})
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    assert client.get(f"/api/v1/training/status/{job_id}").status_code == 200
    fast_training(ctx, _task("job-1"))
    versions = [row["version_id"] for row in client.get("/api/v1/models").json()["models"]]
    assert versions
    for version_id in versions:
        assert client.post(f"/api/v1/models/{version_id}/activate").status_code == 200
        assert client.get(f"/api/v1/reports/{version_id}").status_code in (200, 404)


def _task(job_id: str) -> object:
    from stock_lstm.api.training_pool import TrainingTask

    return TrainingTask(job_id, "MSFT", {})
