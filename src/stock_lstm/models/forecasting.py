"""Turning a trained model into dated price forecasts, with loaded models cached in memory."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from stock_lstm.errors import InvalidParameterError, NotEnoughDataError
from stock_lstm.models.artifacts import load_model_payload, load_scaler
from stock_lstm.models.calendar import next_trading_days
from stock_lstm.models.registry import ModelRecord

MIN_DAYS, MAX_DAYS = 1, 30


@dataclass
class LoadedModel:
    """A registry record with its network and scaler in memory."""

    record: ModelRecord
    model: Any  # LSTMForecaster
    scaler: Any
    feature_columns: tuple[str, ...]
    target_index: int
    sequence_length: int


@dataclass(frozen=True)
class ForecastPoint:
    date: date
    close: float


@dataclass(frozen=True)
class Forecast:
    """A forecast of ``days`` trading days after ``last_date``, in price units."""

    ticker: str
    version_id: str
    last_date: date
    last_close: float
    predictions: list[ForecastPoint]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticker": self.ticker,
            "version_id": self.version_id,
            "last_date": self.last_date.isoformat(),
            "last_close": self.last_close,
            "predictions": [
                {"date": point.date.isoformat(), "close": point.close} for point in self.predictions
            ],
            "warnings": list(self.warnings),
        }


def validate_days(days: object) -> int:
    """``days`` must be an int in 1..30 (a daily LSTM's forecast is meaningless beyond that)."""
    if isinstance(days, bool) or not isinstance(days, int) or not MIN_DAYS <= days <= MAX_DAYS:
        raise InvalidParameterError(
            f"days must be a whole number between {MIN_DAYS} and {MAX_DAYS}, got {days!r}"
        )
    return days


def load_model(record: ModelRecord) -> LoadedModel:
    """Verify and load a version's files (see ``artifacts``) and rebuild the network."""
    from stock_lstm.models.lstm import LSTMForecaster

    payload = load_model_payload(Path(record.model_path), record.model_sha256, record.version_id)
    scaler = load_scaler(Path(record.scaler_path), record.scaler_sha256, record.version_id)
    model = LSTMForecaster(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    metadata = payload.get("metadata", {})
    features = tuple(metadata.get("feature_columns", ("close",)))
    return LoadedModel(
        record=record,
        model=model,
        scaler=scaler,
        feature_columns=features,
        target_index=int(metadata.get("target_index", 0)),
        sequence_length=int(metadata.get("sequence_length", record.params["sequence_length"])),
    )


class ModelCache:
    """LRU cache of loaded models keyed by version id (thread-safe)."""

    def __init__(self, max_size: int = 32) -> None:
        self.max_size = max_size
        self._items: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, record: ModelRecord) -> LoadedModel:
        with self._lock:
            loaded = self._items.get(record.version_id)
            if loaded is not None:
                self._items.move_to_end(record.version_id)
                return loaded
        loaded = load_model(record)
        with self._lock:
            self._items[record.version_id] = loaded
            self._items.move_to_end(record.version_id)
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)
        return loaded

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def forecast_recursive(loaded: LoadedModel, recent: np.ndarray, days: int) -> np.ndarray:
    """Feed each one-step prediction back as the next input (the original design's strategy).

    ``recent``: the last ``sequence_length`` rows of the model's features in price units,
    shape (sequence_length, n_features). Returns ``days`` prices.
    """
    import torch

    if len(loaded.feature_columns) != 1:
        raise InvalidParameterError(
            "recursive forecasting needs a model trained on the target column alone; "
            f"this one uses {list(loaded.feature_columns)}"
        )
    if recent.shape[0] < loaded.sequence_length:
        raise NotEnoughDataError(
            f"{loaded.record.ticker} has {recent.shape[0]} recent rows; the model needs "
            f"{loaded.sequence_length}: sync more history"
        )
    window = loaded.scaler.transform(recent[-loaded.sequence_length :].astype(np.float64))
    window_tensor = torch.as_tensor(window, dtype=torch.float32).unsqueeze(0)
    outputs = np.empty(days, dtype=np.float64)
    with torch.inference_mode():
        for step in range(days):
            next_scaled = loaded.model(window_tensor)[:, :1]
            outputs[step] = float(next_scaled[0, 0])
            window_tensor = torch.cat([window_tensor[:, 1:, :], next_scaled.unsqueeze(-1)], dim=1)
    return loaded.scaler.inverse_transform_column(outputs, loaded.target_index)


def make_forecast(loaded: LoadedModel, prices: Any, days: int) -> Forecast:
    """Dated forecast from the most recent rows of ``prices`` (normalized price frame)."""
    days = validate_days(days)
    features = prices[list(loaded.feature_columns)].to_numpy(dtype=np.float64)
    values = forecast_recursive(loaded, features, days)
    last_date = prices.index[-1].date()
    dates = next_trading_days(loaded.record.ticker, last_date, days)
    warnings: list[str] = []
    gate = loaded.record.metrics.get("gate")
    if isinstance(gate, dict) and gate.get("status") == "failed":
        warnings.append(f"gate: failed: {gate.get('reason', '')}")
    return Forecast(
        ticker=loaded.record.ticker,
        version_id=loaded.record.version_id,
        last_date=last_date,
        last_close=float(prices["close"].iloc[-1]),
        predictions=[
            ForecastPoint(day, round(float(value), 6))
            for day, value in zip(dates, values, strict=True)
        ],
        warnings=warnings,
    )
