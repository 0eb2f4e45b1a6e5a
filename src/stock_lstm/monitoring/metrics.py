"""The API's Prometheus metrics, on a registry of their own.

Each app gets a fresh ``CollectorRegistry`` rather than the process-global default, so tests
(and anything else) can build many apps in one process without "duplicated timeseries" errors,
and ``/metrics`` shows exactly this app's series. Every name starts with ``stock_lstm_``.

Label values are kept bounded: routes are templates (``/api/v1/models/{ticker}/active``, never
the raw path), and prediction tickers are only spelled out for tickers that have an active
model, at most ``max_ticker_labels`` of them (``STOCK_LSTM_METRICS_TICKER_LABELS``), so neither
random input nor a registry of thousands of tickers can grow the number of series past
``max_ticker_labels + 4``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

#: Seconds; an API call is milliseconds, a prediction that loads a model up to a second or two.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds; a CPU training run takes from a few seconds (tiny test runs) to an hour.
TRAINING_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
#: Label value for a request that matched no route (404s on unknown paths).
UNMATCHED_ROUTE = "<unmatched>"
#: Label value for a prediction whose ticker has no active model or is malformed.
OTHER_TICKER = "<other>"


class ApiMetrics:
    """Every metric the API exports, registered on ``registry`` (a new one by default)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, max_ticker_labels: int = 1000
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.max_ticker_labels = max_ticker_labels
        self._labelled_tickers: set[str] = set()
        labels = ("method", "route", "status")
        self.http_requests = Counter(
            "stock_lstm_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            labels,
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "stock_lstm_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status code.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "stock_lstm_predictions",
            "Forecasts asked for, by ticker and outcome (ok, not_found, rejected, error).",
            ("ticker", "outcome"),
            registry=self.registry,
        )
        self.prediction_latency = Histogram(
            "stock_lstm_prediction_duration_seconds",
            "Time to produce one ticker's forecast (registry lookup, model load, prices).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.training_jobs = Counter(
            "stock_lstm_training_jobs",
            "Training jobs finished by this process, by final status (completed, failed).",
            ("status",),
            registry=self.registry,
        )
        self.training_running = Gauge(
            "stock_lstm_training_jobs_running",
            "Training jobs this process is executing right now.",
            registry=self.registry,
        )
        self.training_duration = Histogram(
            "stock_lstm_training_duration_seconds",
            "Wall time of a training job from worker start to its final status.",
            buckets=TRAINING_BUCKETS,
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "stock_lstm_cache_hits",
            "Price syncs answered from a fresh cache without asking the source.",
            registry=self.registry,
        )
        self.cache_misses = Counter(
            "stock_lstm_cache_misses",
            "Price syncs that had to ask the source (expired, missing or forced).",
            registry=self.registry,
        )
        self.active_models = Gauge(
            "stock_lstm_active_models",
            "Registry rows marked active (one per ticker that can be predicted).",
            registry=self.registry,
        )

    def count_active_models_with(self, count: Callable[[], int]) -> None:
        """Read the active-model count at every scrape, so activation shows up immediately.

        A failing count (database down) exports NaN instead of breaking ``/metrics``.
        """

        def safe_count() -> float:
            try:
                return float(count())
            except Exception as exc:
                log.warning("could not count active models for /metrics: %s", exc)
                return math.nan

        self.active_models.set_function(safe_count)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.http_requests.labels(*labels).inc()
        self.http_latency.labels(*labels).observe(seconds)

    def observe_prediction(self, ticker: str | None, outcome: str, seconds: float) -> None:
        """``ticker`` is None unless the ticker has an active model; past ``max_ticker_labels``
        distinct tickers, a new one is counted as ``<other>`` (keeps labels bounded)."""
        self.predictions.labels(self._ticker_label(ticker), outcome).inc()
        self.prediction_latency.observe(seconds)

    def _ticker_label(self, ticker: str | None) -> str:
        if ticker is None:
            return OTHER_TICKER
        if ticker not in self._labelled_tickers:
            if len(self._labelled_tickers) >= self.max_ticker_labels:
                return OTHER_TICKER
            self._labelled_tickers.add(ticker)
        return ticker

    def observe_sync(self, from_cache: bool) -> None:
        (self.cache_hits if from_cache else self.cache_misses).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
