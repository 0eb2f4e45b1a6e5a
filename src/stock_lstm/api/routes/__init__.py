"""One router per resource; each handler validates, calls the package, shapes the answer."""

from stock_lstm.api.routes import cache, health, models, predict, reports, training

__all__ = ["cache", "health", "models", "predict", "reports", "training"]
