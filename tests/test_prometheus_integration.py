"""Metrics end to end: real Prometheus scrapes the API and a real Pushgateway fed by
``push_batch_metrics``; the values are read back through Prometheus' query API.

Needs the Debian packages ``prometheus`` and ``prometheus-pushgateway`` (skipped without
them). Everything listens on loopback ports picked at random and stops within the test.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import (
    api_server,
    free_port,
    running_process,
    wait_for_http,
    wait_until,
)

from stock_lstm.config import Settings
from stock_lstm.monitoring.pushgateway import push_batch_metrics

PROMETHEUS = shutil.which("prometheus")
PUSHGATEWAY = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
#: Seconds for Prometheus to start, scrape (every second) and answer a query with the value.
QUERY_TIMEOUT_SECONDS = 30


def test_push_without_a_gateway_url_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    import stock_lstm.monitoring.pushgateway as pushgateway

    monkeypatch.setattr(pushgateway, "push_to_gateway", lambda *a, **k: pytest.fail("pushed"))
    push_batch_metrics(
        None,
        "train",
        training_seconds=1.0,
        status="ok",
        ticker="AAPL",
        cache_hits=0,
        cache_misses=1,
    )


def test_push_to_an_unreachable_gateway_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    closed_port = free_port()  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="stock_lstm.monitoring.pushgateway"):
        push_batch_metrics(
            f"http://127.0.0.1:{closed_port}",
            "train",
            training_seconds=None,
            status="failed",
            ticker="AAPL",
            cache_hits=0,
            cache_misses=0,
        )
    assert "could not push metrics of train/AAPL" in caplog.text


def _query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _value_of(prometheus_url: str, promql: str) -> float | None:
    result = _query(prometheus_url, promql)
    return float(result[0]["value"][1]) if result else None


@pytest.mark.skipif(
    PROMETHEUS is None or PUSHGATEWAY is None,
    reason="needs the Debian packages prometheus and prometheus-pushgateway "
    "(apt-get install -y prometheus prometheus-pushgateway)",
)
def test_prometheus_scrapes_the_api_and_the_pushgateway(settings: Settings, tmp_path: Path) -> None:
    assert PROMETHEUS and PUSHGATEWAY
    gateway_port, prometheus_port = free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"

    with api_server(settings, tmp_path) as api_url:
        api_target = api_url.removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: stock-lstm-api\n"
            f"    static_configs: [{{targets: ['{api_target}']}}]\n"
            "  - job_name: pushgateway\n"
            "    honor_labels: true\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{gateway_port}']}}]\n"
        )
        gateway_argv = [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{gateway_port}"]
        prometheus_argv = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ]
        gateway_log, prometheus_log = tmp_path / "pushgateway.log", tmp_path / "prometheus.log"
        with (
            running_process(gateway_argv, log_path=gateway_log, cwd=tmp_path) as gateway,
            running_process(prometheus_argv, log_path=prometheus_log, cwd=tmp_path) as prom,
        ):
            wait_for_http(f"{gateway_url}/-/ready", process=gateway, log=gateway_log, timeout=20)
            wait_for_http(f"{prometheus_url}/-/ready", process=prom, log=prometheus_log, timeout=30)

            push_batch_metrics(
                gateway_url,
                "stock-lstm-train",
                training_seconds=12.5,
                status="ok",
                ticker="AAPL",
                cache_hits=3,
                cache_misses=1,
            )
            with httpx.Client(base_url=api_url, timeout=5) as api:
                for _ in range(3):
                    api.post("/api/v1/predict", json={"ticker": "MSFT", "days_ahead": 1})

            pushed = 'stock_lstm_batch_training_seconds{job="stock-lstm-train",ticker="AAPL"}'
            assert wait_until(
                lambda: _value_of(prometheus_url, pushed),
                timeout=QUERY_TIMEOUT_SECONDS,
                what="the pushed training seconds in Prometheus",
            ) == pytest.approx(12.5)
            hits = 'stock_lstm_batch_cache_hits{job="stock-lstm-train",ticker="AAPL"}'
            assert _value_of(prometheus_url, hits) == 3
            success = 'stock_lstm_batch_success{job="stock-lstm-train",ticker="AAPL"}'
            assert _value_of(prometheus_url, success) == 1

            not_found = (
                'stock_lstm_http_requests_total{job="stock-lstm-api",'
                'route="/api/v1/predict",method="POST",status="404"}'
            )
            wait_until(
                lambda: _value_of(prometheus_url, not_found) == 3,
                timeout=QUERY_TIMEOUT_SECONDS,
                what="the API's three 404 predictions in Prometheus",
            )
            predictions = 'stock_lstm_predictions_total{job="stock-lstm-api",outcome="not_found"}'
            assert _value_of(prometheus_url, predictions) == 3
            assert _value_of(prometheus_url, 'stock_lstm_active_models{job="stock-lstm-api"}') == 0
            up = _query(prometheus_url, "up")
            assert {r["metric"]["job"]: r["value"][1] for r in up} == {
                "stock-lstm-api": "1",
                "pushgateway": "1",
            }
