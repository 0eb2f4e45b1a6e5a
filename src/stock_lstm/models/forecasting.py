"""Turning a trained model into dated price forecasts, with loaded models cached in memory."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stock_lstm.errors import ArtifactError, InvalidParameterError, NotEnoughDataError
from stock_lstm.lru import LruCache
from stock_lstm.models.artifacts import load_model_payload, load_scaler
from stock_lstm.models.calendar import next_trading_days
from stock_lstm.models.online_calibration import (
    CALIBRATION_LEVELS,
    CalibrationState,
    base_intervals,
    calibrated,
    interval_quantiles,
    log_outcomes,
    to_prices,
    track,
    widening,
)
from stock_lstm.models.records import GateDecision
from stock_lstm.models.registry import ModelRecord

MIN_DAYS, MAX_DAYS = 1, 30
#: Most recent origins a stale calibration state is carried over (about 8 trading years);
#: older outcomes say little about today's intervals and would only cost time.
MAX_CATCH_UP_ROWS = 2000
#: Forecasts remembered per loaded model version (distinct windows x days x levels).
FORECAST_MEMO_SIZE = 128


@dataclass
class LoadedModel:
    """A registry record with its network and encoder in memory."""

    record: ModelRecord
    model: Any  # LSTMForecaster
    encoder: Any  # PriceEncoder | LogReturnEncoder
    feature_columns: tuple[str, ...]
    sequence_length: int
    strategy: str
    max_days: int
    #: Forecasts already made by this version, by input window (see ``make_forecast``).
    forecasts: ForecastMemo = field(
        default_factory=lambda: ForecastMemo(), repr=False, compare=False
    )
    #: The online interval calibration as last carried forward in this process.
    calibration: CalibrationState | None = field(default=None, repr=False, compare=False)
    calibration_lock: threading.Lock = field(
        default_factory=threading.Lock, repr=False, compare=False
    )

    def starting_state(self) -> CalibrationState:
        """The calibration registered with the version (after its test slice), or for a
        version from before online calibration a neutral one (its static conformal band)
        that starts from the version's last training close."""
        saved = self.record.metrics.calibration
        if saved is not None:
            return CalibrationState.from_record(saved)
        horizon = self.max_days
        return CalibrationState(
            levels=CALIBRATION_LEVELS,
            theta=np.zeros((horizon, len(CALIBRATION_LEVELS))),
            through=self.record.last_date.isoformat(),
        )


@dataclass(frozen=True)
class ForecastPoint:
    """One forecast day: the point (median) close, the interval at the forecast's level and
    the calibrated quantiles ``{"0.025": price, ..., "0.975": price}`` the fan chart draws."""

    date: date
    close: float
    lower: float | None = None
    upper: float | None = None
    quantiles: dict[str, float] | None = None


@dataclass(frozen=True)
class Forecast:
    """A forecast of ``days`` trading days after ``last_date``, in price units."""

    ticker: str
    version_id: str
    last_date: date
    last_close: float
    predictions: list[ForecastPoint]
    interval_level: float | None = None
    gate: GateDecision | None = None
    warnings: list[str] = field(default_factory=list)
    #: Per day, the anchor the interval and fan average with the model's (the serving
    #: rule); empty when the model's own interval is served.
    combined_with: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticker": self.ticker,
            "version_id": self.version_id,
            "last_date": self.last_date.isoformat(),
            "last_close": self.last_close,
            "interval_level": self.interval_level,
            "predictions": [
                {
                    "date": point.date.isoformat(),
                    "close": point.close,
                    "lower": point.lower,
                    "upper": point.upper,
                    "quantiles": point.quantiles,
                }
                for point in self.predictions
            ],
            "gate": self.gate.model_dump(mode="json") if self.gate else None,
            "warnings": list(self.warnings),
            "combined_with": list(self.combined_with),
        }

    def to_frame(self, digits: int = 2) -> Any:
        """One row per trading day for reading: the median close, the interval at the
        forecast's level and, when calibrated, every quantile as its own column."""
        import pandas as pd

        level = f"{self.interval_level:.0%}" if self.interval_level else "interval"
        rows = []
        for point in self.predictions:
            row: dict[str, Any] = {
                "date": point.date,
                "close (median)": point.close,
                f"{level} lower": point.lower,
                f"{level} upper": point.upper,
            }
            for name, value in (point.quantiles or {}).items():
                row[f"q{float(name) * 100:g}%"] = value
            rows.append(row)
        frame = pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1, name="trading day"))
        return frame.round(digits)


class ForecastMemo:
    """Small LRU of one model version's forecasts, keyed by everything a forecast depends on.

    Why: a served model is asked the same question many times a day (its prices change once
    a day), and the forward pass, bounds and calendar cost more than the rest of a request.
    The key holds the exact input window's bytes, so a changed price is a new key; stored
    forecasts are immutable, and callers get a copy of the mutable lists.
    """

    def __init__(self, max_size: int = FORECAST_MEMO_SIZE) -> None:
        self._items: LruCache[tuple[Any, ...], Forecast] = LruCache(max_size)

    def get(self, key: tuple[Any, ...]) -> Forecast | None:
        found = self._items.get(key)
        if found is None:
            return None
        return replace(found, predictions=list(found.predictions), warnings=list(found.warnings))

    def put(self, key: tuple[Any, ...], forecast: Forecast) -> None:
        self._items.put(
            key,
            replace(
                forecast, predictions=list(forecast.predictions), warnings=list(forecast.warnings)
            ),
        )

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def validate_days(days: object) -> int:
    """``days`` must be an int in 1..30 (a daily LSTM's forecast is meaningless beyond that)."""
    if isinstance(days, bool) or not isinstance(days, int) or not MIN_DAYS <= days <= MAX_DAYS:
        raise InvalidParameterError(
            f"days must be a whole number between {MIN_DAYS} and {MAX_DAYS}, got {days!r}"
        )
    return days


def load_model(record: ModelRecord, models_dir: Path) -> LoadedModel:
    """Verify and load a version's files from ``models_dir`` (see ``artifacts``) and rebuild
    the network; anything that does not fit the network is an ``ArtifactError``."""
    from stock_lstm.models.networks import network_for_artifact

    payload = load_model_payload(
        Path(record.model_path), record.model_sha256, record.version_id, models_dir=models_dir
    )
    encoder = load_scaler(
        Path(record.scaler_path), record.scaler_sha256, record.version_id, models_dir=models_dir
    )
    network = network_for_artifact(payload)
    try:
        model = network(**payload["config"])
        model.load_state_dict(payload["state_dict"])
    except Exception as exc:
        raise ArtifactError(
            f"model file of version {record.version_id} does not hold a network this code "
            f"can rebuild ({type(exc).__name__}): retrain the ticker"
        ) from exc
    model.eval()
    metadata = payload.get("metadata", {})
    strategy = str(metadata.get("strategy", record.params.get("strategy", "recursive")))
    return LoadedModel(
        record=record,
        model=model,
        encoder=encoder,
        feature_columns=tuple(metadata.get("feature_columns", ("close",))),
        sequence_length=int(metadata.get("sequence_length", record.params["sequence_length"])),
        strategy=strategy,
        max_days=int(model.horizon) if strategy == "direct" else MAX_DAYS,
    )


class ModelCache:
    """LRU cache of loaded models keyed by version id (thread-safe).

    The cache hands out models ready to run in the calling thread: it sets torch's thread
    count (``threads``; ``None``: one per core) once in every thread that asks. That count is
    per OS thread for OpenMP: a new thread (each API request runs in one) starts with one
    thread per core whatever ``torch.get_num_threads()`` says, and a forecast's small forward
    pass in a 2-thread team took 40 ms instead of 0.6 ms, its threads spinning against the
    other requests and any training on the same cores.
    """

    def __init__(
        self, max_size: int = 32, *, threads: int | None = 1, models_dir: Path = Path("models")
    ) -> None:
        self.max_size = max_size
        self.threads = threads
        self.models_dir = Path(models_dir)
        self._items: LruCache[str, LoadedModel] = LruCache(max_size)
        self._configured = threading.local()

    def _configure_thread(self) -> None:
        if getattr(self._configured, "done", False):
            return
        from stock_lstm.models.training import set_torch_threads

        set_torch_threads(self.threads)
        self._configured.done = True

    def loaded(self, version_id: str) -> LoadedModel | None:
        """The version if it is in memory (no loading, no database)."""
        loaded = self._items.get(version_id)
        if loaded is not None:
            self._configure_thread()
        return loaded

    def get(self, record: ModelRecord) -> LoadedModel:
        self._configure_thread()
        loaded = self._items.get(record.version_id)
        if loaded is None:
            loaded = load_model(record, self.models_dir)  # raises: nothing is cached
            self._items.put(record.version_id, loaded)
        return loaded

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()


STRATEGIES = ("direct", "recursive")
#: Origins per forward pass when forecasting many origins at once (backtests, evaluation).
FORECAST_CHUNK = 4096


def predict_distribution(
    model: Any,
    encoder: Any,
    strategy: str,
    windows: np.ndarray,
    last_close: np.ndarray,
    horizon: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Point forecasts (n, horizon) and, for a quantile head, price quantiles (n, horizon, Q)
    at ``model.quantiles`` (None for a point head). Decoding is monotone, so the quantiles
    of the encoded output are the quantiles of the price."""
    import torch

    if strategy not in STRATEGIES:
        raise InvalidParameterError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "direct" and horizon > model.horizon:
        raise InvalidParameterError(
            f"this model forecasts at most {model.horizon} days ahead, got {horizon}: "
            "retrain with a larger --horizon"
        )
    if strategy == "recursive" and windows.shape[-1] != 1:
        raise InvalidParameterError("recursive forecasting needs a single input feature")
    quantiles = tuple(getattr(model, "quantiles", ()))
    chunks: list[np.ndarray] = []
    quantile_chunks: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, windows.shape[0], FORECAST_CHUNK):
            x = torch.from_numpy(np.ascontiguousarray(windows[start : start + FORECAST_CHUNK]))
            if strategy == "direct":
                out = model(x)[:, :horizon]
                if quantiles:
                    quantile_chunks.append(model.quantile_values(out))
                    out = model.point(out)
                chunks.append(out.double().numpy())
                continue
            steps = []
            for _ in range(horizon):
                step = model(x)[:, :1]
                steps.append(step)
                x = torch.cat([x[:, 1:, :], step.unsqueeze(-1)], dim=1)
            chunks.append(encoder.steps_to_outputs(torch.cat(steps, dim=1).double().numpy()))
    outputs = np.concatenate(chunks) if chunks else np.empty((0, horizon))
    point = encoder.decode(outputs, last_close)
    if not quantiles:
        return point, None
    raw = (
        np.concatenate(quantile_chunks)
        if quantile_chunks
        else np.empty((0, horizon, len(quantiles)))
    )
    decoded = np.stack(
        [encoder.decode(raw[..., k], last_close) for k in range(len(quantiles))], axis=-1
    )
    return point, decoded


class CalibrationStore(Protocol):
    """Where versions' calibration states persist between processes (the database)."""

    def load(self, version_id: str) -> dict[str, Any] | None: ...

    def save(self, version_id: str, through: date, state: dict[str, Any]) -> None: ...


def _price_rows(loaded: LoadedModel, prices: Any) -> np.ndarray:
    return np.column_stack(
        [prices[column].to_numpy(dtype=np.float64) for column in loaded.feature_columns]
    )


def _distribution_at(
    loaded: LoadedModel, values: np.ndarray, closes: np.ndarray, rows: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Base interval log offsets (n, horizon, L) of forecasts from origin ``rows`` of
    ``values`` (raw feature rows, enough history before the first origin)."""
    from stock_lstm.data.preprocessing import input_windows

    inputs = loaded.encoder.encode_inputs(values[: int(rows.max()) + 1])
    windows = input_windows(inputs, rows, loaded.sequence_length)
    point, quantiles = predict_distribution(
        loaded.model, loaded.encoder, loaded.strategy, windows, closes[rows], horizon
    )
    conformal = loaded.record.metrics.conformal
    return base_intervals(point, quantiles, tuple(loaded.model.quantiles), closes[rows], conformal)


def carry_calibration(
    loaded: LoadedModel, prices: Any, store: CalibrationStore | None = None
) -> CalibrationState:
    """The version's calibration state after every close in ``prices``.

    Starts from this process's copy, else the store's, else the registered one, and applies
    only outcomes revealed after the state's ``through`` date, origin by origin (a forecast
    from row ``o`` at horizon ``h`` is scored when row ``o + h`` closes), never a close past
    the frame's end. A newer state is saved to ``store``.
    """
    with loaded.calibration_lock:
        state = loaded.calibration
        if state is None and store is not None:
            saved = store.load(loaded.record.version_id)
            state = CalibrationState.from_dict(saved) if saved else None
        if state is None:
            state = loaded.starting_state()
        dates = prices.index
        last_row = len(prices) - 1
        through_row = int(dates.searchsorted(np.datetime64(state.through), side="right")) - 1
        if through_row >= last_row or through_row < 0:
            loaded.calibration = state
            return state
        horizon = state.theta.shape[0]
        history = loaded.sequence_length + loaded.encoder.first_valid_row - 1
        first = max(through_row - horizon + 1, last_row - MAX_CATCH_UP_ROWS, history)
        rows = np.arange(first, last_row, dtype=np.int64)
        if rows.size:
            closes = prices["close"].to_numpy(dtype=np.float64)
            lower, upper = _distribution_at(
                loaded, _price_rows(loaded, prices), closes, rows, horizon
            )
            targets = rows[:, None] + np.arange(1, horizon + 1)
            actual = np.where(targets <= last_row, closes[np.minimum(targets, last_row)], np.nan)
            tracked = track(
                state.theta,
                lower,
                upper,
                log_outcomes(actual, closes[rows]),
                rows,
                levels=state.levels,
                step=state.step,
                revealed_after=through_row,
            )
            state = CalibrationState(
                levels=state.levels,
                theta=tracked.theta,
                through=dates[last_row].date().isoformat(),
                updates=state.updates + tracked.updates,
                step=state.step,
            )
        else:
            state = CalibrationState(
                state.levels, state.theta, dates[last_row].date().isoformat(), state.updates
            )
        loaded.calibration = state
    if store is not None:
        store.save(loaded.record.version_id, dates[last_row].date(), state.to_dict())
    return state


class AnchorBounds(Protocol):
    """An anchor's intervals after the last row of a price frame: (1, days, L) log offsets
    from the last close (``evaluation.combination.anchor_log_bounds``; passed in, since
    models sit below the evaluation layer)."""

    def __call__(self, name: str, prices: Any, days: int) -> tuple[np.ndarray, np.ndarray]: ...


def _combine(
    log_bounds: tuple[np.ndarray, np.ndarray],
    point: np.ndarray,
    last_close: float,
    served: tuple[str, ...],
    anchors: AnchorBounds,
    prices: Any,
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, list[str]]:
    """The serving rule: each day's bounds averaged in log space with the anchor strongest
    at that horizon on the test slice (days past the last scored horizon use its anchor),
    and the median the geometric mean of the model's and persistence, as in backtests."""
    days = point.shape[1]
    names = [served[min(step, len(served) - 1)] for step in range(days)]
    lower, upper = (np.array(side, dtype=np.float64, copy=True) for side in log_bounds)
    for name in dict.fromkeys(names):
        steps = [step for step, chosen in enumerate(names) if chosen == name]
        anchor_lower, anchor_upper = anchors(name, prices, days)
        lower[:, steps] = (lower[:, steps] + anchor_lower[:, steps]) / 2
        upper[:, steps] = (upper[:, steps] + anchor_upper[:, steps]) / 2
    return (lower, upper), np.sqrt(point * last_close), names


def _check_request(loaded: LoadedModel, prices: Any, days: int) -> int:
    """Refuse more days than the model forecasts, or fewer rows than its window reads;
    returns the rows it reads."""
    if days > loaded.max_days:
        raise InvalidParameterError(
            f"model {loaded.record.version_id} forecasts at most {loaded.max_days} days, "
            f"got {days}: ask for fewer days or retrain with a larger --horizon"
        )
    needed = loaded.sequence_length + loaded.encoder.first_valid_row
    if len(prices) < needed:
        raise NotEnoughDataError(
            f"{loaded.record.ticker} has {len(prices)} cached rows; the model needs the last "
            f"{needed}: run `stock-lstm sync {loaded.record.ticker}`"
        )
    return int(needed)


def _dated_points(
    dates: list[date],
    point: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    fan: np.ndarray,
    fan_levels: tuple[float, ...],
    level_index: int | None,
) -> list[ForecastPoint]:
    """One point per trading day (arrays (days,) and (days, L)): the median, the served
    level's bounds and the fan's quantiles, rounded; a bound that is not finite is None."""

    def rounded(value: float) -> float | None:
        return round(float(value), 6) if np.isfinite(value) else None

    points = []
    for step, day in enumerate(dates):
        low = high = None
        if level_index is not None:
            low, high = rounded(lower[step, level_index]), rounded(upper[step, level_index])
        bands = {f"{q:g}": rounded(fan[step, k]) for k, q in enumerate(fan_levels)}
        points.append(
            ForecastPoint(
                day,
                round(float(point[step]), 6),
                low,
                high,
                bands if all(v is not None for v in bands.values()) else None,
            )
        )
    return points


def make_forecast(
    loaded: LoadedModel,
    prices: Any,
    days: int,
    *,
    interval_level: float = 0.9,
    store: CalibrationStore | None = None,
    anchors: AnchorBounds | None = None,
) -> Forecast:
    """Dated forecast from the latest rows of ``prices``: the point (median) close, the
    ``interval_level`` interval and the quantiles of the fan chart, all calibrated online
    (see ``carry_calibration``). With ``anchors``, a version that names its served anchors
    (``TrainingMetrics.served_anchors``) serves the model's equal-weight combination with
    them: the serving rule docs/evaluation.md writes down, chosen by backtest."""
    days = validate_days(days)
    needed = _check_request(loaded, prices, days)
    values = _price_rows(loaded, prices.iloc[-needed:])
    last_close = float(prices["close"].iloc[-1])
    last_date = prices.index[-1].date()
    served = loaded.record.metrics.served_anchors if anchors is not None else ()
    memo_key = (values.tobytes(), last_close, last_date, days, interval_level, served)
    remembered = loaded.forecasts.get(memo_key)
    if remembered is not None:
        return remembered
    state = carry_calibration(loaded, prices, store)
    window = loaded.encoder.encode_inputs(values)[-loaded.sequence_length :]
    point, quantiles = predict_distribution(
        loaded.model,
        loaded.encoder,
        loaded.strategy,
        window[None, :, :].astype(np.float32),
        np.array([last_close]),
        days,
    )
    conformal = loaded.record.metrics.conformal
    base_lower, base_upper = base_intervals(
        point,
        quantiles,
        tuple(loaded.model.quantiles),
        np.array([last_close]),
        conformal,
        state.levels,
    )
    theta = state.theta[None, :days]
    log_bounds = calibrated(base_lower, base_upper, theta)
    combined_with: list[str] = []
    if served and anchors is not None:
        log_bounds, point, combined_with = _combine(
            log_bounds, point, last_close, served, anchors, prices
        )
    lower_all, upper_all = to_prices(*widening(*log_bounds), np.array([last_close]))
    fan, fan_levels = interval_quantiles(lower_all, upper_all, point)
    level_index = state.level_index(interval_level)
    dates = next_trading_days(loaded.record.ticker, last_date, days)
    gate = loaded.record.metrics.gate
    warnings: list[str] = []
    if gate is not None and gate.failed:
        warnings.append(f"gate: failed: {gate.reason}")

    predictions = _dated_points(
        dates, point[0], lower_all[0], upper_all[0], fan[0], fan_levels, level_index
    )
    has_interval = any(p.lower is not None for p in predictions)
    forecast = Forecast(
        ticker=loaded.record.ticker,
        version_id=loaded.record.version_id,
        last_date=last_date,
        last_close=last_close,
        predictions=predictions,
        interval_level=interval_level if has_interval else None,
        gate=gate,
        warnings=warnings,
        combined_with=combined_with,
    )
    loaded.forecasts.put(memo_key, forecast)
    return forecast
