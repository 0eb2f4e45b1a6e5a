"""The API's prediction counter names at most ``max_ticker_labels`` tickers, so a scrape's
size is bounded whatever the registry grows to."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from stock_lstm.monitoring.metrics import OTHER_TICKER, ApiMetrics


def prediction_counts(metrics: ApiMetrics) -> dict[str, float]:
    text = metrics.render().decode()
    families = text_string_to_metric_families(text)
    family = next(f for f in families if f.name == "stock_lstm_predictions")
    return {s.labels["ticker"]: s.value for s in family.samples if s.name.endswith("_total")}


def test_tickers_past_the_bound_are_counted_as_other() -> None:
    metrics = ApiMetrics(max_ticker_labels=3)
    for ticker in ["A", "B", "C", "D", "E", "A", None]:
        metrics.observe_prediction(ticker, "ok", 0.01)
    counts = prediction_counts(metrics)
    # The first three named keep their series (A twice); D, E and the unnamed one share one.
    assert counts == {"A": 2, "B": 1, "C": 1, OTHER_TICKER: 3}


def test_zero_names_no_ticker() -> None:
    metrics = ApiMetrics(max_ticker_labels=0)
    metrics.observe_prediction("AAPL", "ok", 0.01)
    assert prediction_counts(metrics) == {OTHER_TICKER: 1}
