"""Push the outcome of a batch run (CLI, ``make train``, cron) to a Prometheus Pushgateway.

A batch run ends before Prometheus could scrape it, so it pushes its numbers instead. Pushing
is best effort: monitoring must never turn a finished training into a failed one, so every
error is logged as a warning and swallowed.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

log = logging.getLogger(__name__)

#: Seconds to wait for the gateway before giving up on a push.
PUSH_TIMEOUT_SECONDS = 5.0
#: Final statuses that count as a success (runner: ``ok``; training jobs: ``completed``).
SUCCESS_STATUSES = frozenset({"ok", "completed"})


def _batch_registry(
    *,
    training_seconds: float | None,
    status: str,
    cache_hits: int,
    cache_misses: int,
) -> CollectorRegistry:
    registry = CollectorRegistry()
    if training_seconds is not None:
        Gauge(
            "stock_lstm_batch_training_seconds",
            "Wall time of the last batch training run.",
            registry=registry,
        ).set(training_seconds)
    Gauge(
        "stock_lstm_batch_last_status",
        "1 for the final status of the last batch run (the label says which).",
        ("status",),
        registry=registry,
    ).labels(status).set(1)
    Gauge(
        "stock_lstm_batch_success",
        "1 if the last batch run succeeded (status ok or completed), else 0.",
        registry=registry,
    ).set(1 if status in SUCCESS_STATUSES else 0)
    Gauge(
        "stock_lstm_batch_cache_hits",
        "Price syncs of the last batch run answered from a fresh cache.",
        registry=registry,
    ).set(cache_hits)
    Gauge(
        "stock_lstm_batch_cache_misses",
        "Price syncs of the last batch run that asked the source.",
        registry=registry,
    ).set(cache_misses)
    Gauge(
        "stock_lstm_batch_last_run_timestamp_seconds",
        "Unix time the last batch run finished.",
        registry=registry,
    ).set(time.time())
    return registry


def push_batch_metrics(
    pushgateway_url: str | None,
    job: str,
    *,
    training_seconds: float | None,
    status: str,
    ticker: str,
    cache_hits: int,
    cache_misses: int,
) -> None:
    """Replace the ``job``/``ticker`` group on the gateway with this run's numbers.

    No-op when ``pushgateway_url`` is None (the default: ``STOCK_LSTM_PUSHGATEWAY_URL`` unset).
    Never raises; a failed push is logged as a warning.
    """
    if not pushgateway_url:
        return
    try:
        registry = _batch_registry(
            training_seconds=training_seconds,
            status=status,
            cache_hits=cache_hits,
            cache_misses=cache_misses,
        )
        push_to_gateway(
            pushgateway_url,
            job=job,
            registry=registry,
            grouping_key={"ticker": ticker},
            timeout=PUSH_TIMEOUT_SECONDS,
        )
    except Exception as exc:
        log.warning(
            "could not push metrics of %s/%s to the Pushgateway at %s: %s",
            job,
            ticker,
            pushgateway_url,
            exc,
        )
