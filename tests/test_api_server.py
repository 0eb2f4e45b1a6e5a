"""The real server: uvicorn in a subprocess, the real train notebook through papermill, httpx.

Also the exposure rule of ``serve`` (no token on a public address needs ``--insecure``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import api_server, metric_value, wait_until

from stock_lstm.api import serve as serve_module
from stock_lstm.api.serve import is_loopback, serve
from stock_lstm.config import Settings
from stock_lstm.errors import StockLSTMError
from stock_lstm.pipeline.stages import default_notebooks_dir

TOKEN = "integration-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: What a server beyond loopback accepts: 32+ characters, not a pattern.
STRONG_TOKEN = "Zk3q-9vXw_Lr2mTb8Yc5Hn7Jp4Ds6Fa1"
#: Real training, real notebook: kernel start-up plus a few seconds of training and rendering.
TRAINING_TIMEOUT_SECONDS = 120


@pytest.mark.slow
def test_real_server_trains_with_the_notebook_reports_and_predicts(
    settings: Settings, tmp_path: Path
) -> None:
    if not (default_notebooks_dir() / "03_train.ipynb").is_file():
        pytest.fail("notebooks/03_train.ipynb is missing: the API trains through it")
    with api_server(settings, tmp_path, STOCK_LSTM_API_TOKEN=TOKEN) as base_url:
        client = httpx.Client(base_url=base_url, timeout=10.0)
        body = {"ticker": "AAPL", "epochs": 3, "sequence_length": 10, "hidden_size": 8}
        assert client.post("/api/v1/training/start", json=body).status_code == 401
        started = client.post("/api/v1/training/start", json=body, headers=AUTH)
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]

        def finished() -> dict[str, Any] | None:
            job = client.get(f"/api/v1/training/status/{job_id}").json()
            return job if job["status"] in ("completed", "failed") else None

        job = wait_until(finished, timeout=TRAINING_TIMEOUT_SECONDS, what="the notebook training")
        assert job["status"] == "completed", job["error"]
        assert job["current_epoch"] == job["total_epochs"] == 3 and len(job["losses"]) == 3
        assert job["version_id"] and job["report_url"]

        # The runner renders the HTML right after the notebook marked the job completed.
        def report() -> httpx.Response | None:
            response = client.get(job["report_url"])
            return response if response.status_code == 200 else None

        page = wait_until(report, timeout=30, what="the rendered report")
        assert page.headers["content-type"].startswith("text/html")
        assert "AAPL" in page.text and job["version_id"] in page.text

        forecast = client.post("/api/v1/predict", json={"ticker": "AAPL", "days_ahead": 5})
        assert forecast.status_code == 200, forecast.text
        assert forecast.json()["version_id"] == job["version_id"]
        assert len(forecast.json()["predictions"]) == 5

        untrained = client.post("/api/v1/predict", json={"ticker": "MSFT", "days_ahead": 5})
        assert untrained.status_code == 404
        assert "POST /api/v1/training/start" in untrained.json()["detail"]

        metrics = client.get("/metrics").text
        assert metric_value(metrics, "stock_lstm_training_jobs_total", status="completed") == 1
        assert metric_value(metrics, "stock_lstm_training_duration_seconds_count") == 1
        assert metric_value(metrics, "stock_lstm_active_models") == 1
        ok = metric_value(metrics, "stock_lstm_predictions_total", ticker="AAPL", outcome="ok")
        assert ok == 1
        labels = {"method": "POST", "route": "/api/v1/predict", "status": "404"}
        assert metric_value(metrics, "stock_lstm_http_requests_total", **labels) == 1
        client.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_public_hosts(host: str) -> None:
    assert not is_loopback(host)


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    return calls


def test_serve_refuses_a_public_host_without_a_token(
    settings: Settings, uvicorn_calls: list[dict[str, Any]]
) -> None:
    with pytest.raises(StockLSTMError, match=r"STOCK_LSTM_API_TOKEN.*--insecure"):
        serve("0.0.0.0", 8000, insecure=False, settings=settings)
    assert uvicorn_calls == []


@pytest.mark.parametrize(
    ("host", "insecure", "token"),
    [("127.0.0.1", False, None), ("0.0.0.0", True, None), ("0.0.0.0", False, STRONG_TOKEN)],
)
def test_serve_runs_uvicorn_when_allowed(
    settings: Settings,
    uvicorn_calls: list[dict[str, Any]],
    host: str,
    insecure: bool,
    token: str | None,
) -> None:
    settings = settings.model_copy(update={"api_token": token})
    serve(host, 8123, insecure=insecure, settings=settings)
    assert len(uvicorn_calls) == 1
    expected = {"host": host, "port": 8123, "workers": 1, "log_level": "info"}
    assert uvicorn_calls[0] | expected == uvicorn_calls[0]  # plus the limits (test_api_limits)
    assert serve_module.check_exposure(host, insecure=insecure, settings=settings) is None
