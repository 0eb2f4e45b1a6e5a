"""Prometheus metrics: the API's own registry (scraped at ``/metrics``) and batch-run pushes."""

from __future__ import annotations

from stock_lstm.monitoring.metrics import ApiMetrics
from stock_lstm.monitoring.pushgateway import push_batch_metrics

__all__ = ["ApiMetrics", "push_batch_metrics"]
