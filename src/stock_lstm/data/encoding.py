"""How prices become network inputs and targets, and how network outputs become prices.

Two encodings, chosen by the ``target`` training parameter:

* ``price`` (the original design): min-max scaled price levels. Fitted on the training
  slice only, so a trending price soon leaves the [0, 1] range the network saw; kept as the
  reference the honest-forecasting comparison starts from.
* ``log_return``: inputs are daily log-returns divided by their training standard deviation;
  targets are the cumulative log-return from the last observed close to each horizon day,
  divided by ``scale * sqrt(h)`` so every horizon has about unit variance. An output of zero
  is exactly the persistence forecast, and nothing depends on the price level, so prices
  outside the training range are no problem.

* ``log_return`` with ``inputs="ohlcv"`` (:class:`ReturnFeaturesEncoder`): the same targets,
  but each day is described by five inputs read from the open, high, low, close and volume:
  the daily log-return, the log high/low range (Parkinson's volatility proxy, several times
  more efficient than a squared return), the overnight gap ``log(open / previous close)``, log
  volume against its trailing 20-day mean, and a flag for days whose high/low or volume is
  missing. Those are what make tomorrow's *uncertainty* forecastable, even when its mean is not.

Every encoder maps outputs of shape (n, H) plus the last observed close (n,) to prices (n, H).
A *step* is what a one-step (recursive) model predicts; it is fed back as the next input.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pandas as pd

from stock_lstm.errors import InvalidParameterError

TARGETS = ("price", "log_return")
#: Floor for the return scale: a constant series would otherwise divide by zero.
MIN_RETURN_SCALE = 1e-6


def _as_2d(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[:, None] if array.ndim == 1 else array


def _horizon_steps(horizon: int) -> np.ndarray:
    return np.arange(1, horizon + 1, dtype=np.float64)


class MinMaxScaler:
    """Pure-numpy min-max scaler to [0, 1] per feature.

    Written here rather than imported from scikit-learn because importing sklearn costs more
    than a second on every CLI call and API start. A constant feature (max == min) gets scale
    1, so it maps to 0 instead of NaN.
    """

    data_min_: np.ndarray
    data_max_: np.ndarray

    def fit(self, values: np.ndarray) -> MinMaxScaler:
        """Learn per-feature min and max from ``values`` of shape (n_rows, n_features)."""
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 2 or array.shape[0] == 0:
            raise ValueError(
                f"fit needs a non-empty 2-D array (n_rows, n_features), got {array.shape}"
            )
        if not np.isfinite(array).all():
            raise ValueError("fit needs finite values (no NaN or inf)")
        self.data_min_ = array.min(axis=0)
        self.data_max_ = array.max(axis=0)
        return self

    @property
    def n_features(self) -> int:
        """Number of features the scaler was fitted on."""
        self._check_fitted()
        return int(self.data_min_.shape[0])

    @property
    def data_range_(self) -> np.ndarray:
        """Per-feature ``max - min`` with constant features set to 1 (never divides by zero)."""
        self._check_fitted()
        span = self.data_max_ - self.data_min_
        return np.where(span > 0, span, 1.0)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Prices (n_rows, n_features) -> scaled float64; training rows land in [0, 1]."""
        array = self._check_2d(values)
        return (array - self.data_min_) / self.data_range_

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        """Scaled values (n_rows, n_features) -> float64 in the original units (prices)."""
        array = self._check_2d(values)
        return array * self.data_range_ + self.data_min_

    def inverse_transform_column(self, values: np.ndarray, column: int) -> np.ndarray:
        """Scaled values of one feature (any shape, usually 1-D) -> float64 in price units."""
        self._check_fitted()
        if not 0 <= column < self.n_features:
            raise ValueError(f"column must be in 0..{self.n_features - 1}, got {column}")
        array = np.asarray(values, dtype=np.float64)
        return array * self.data_range_[column] + self.data_min_[column]

    def _check_fitted(self) -> None:
        if not hasattr(self, "data_min_"):
            raise ValueError("MinMaxScaler is not fitted yet: call fit() first")

    def _check_2d(self, values: np.ndarray) -> np.ndarray:
        self._check_fitted()
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != self.n_features:
            raise ValueError(
                f"expected an array of shape (n_rows, {self.n_features}), got {array.shape}"
            )
        return array

    def __repr__(self) -> str:
        if not hasattr(self, "data_min_"):
            return "MinMaxScaler(unfitted)"
        return f"MinMaxScaler(data_min_={self.data_min_!r}, data_max_={self.data_max_!r})"


class PriceEncoder:
    """Min-max scaled price levels (the original design). Works with several features."""

    name: ClassVar[str] = "price"
    #: First row whose encoded input is defined.
    first_valid_row: ClassVar[int] = 0
    inputs: ClassVar[str] = "close"

    def __init__(self) -> None:
        self.scaler = MinMaxScaler()
        self.target_index = 0

    def fit(self, train_values: np.ndarray, target_index: int = 0) -> PriceEncoder:
        """Fit on the training rows only (n_rows, n_features) in price units."""
        self.scaler.fit(_as_2d(train_values))
        self.target_index = target_index
        return self

    @property
    def n_features(self) -> int:
        return self.scaler.n_features

    def encode_inputs(self, values: np.ndarray) -> np.ndarray:
        """(n_rows, n_features) prices -> scaled inputs of the same shape."""
        return self.scaler.transform(_as_2d(values))

    def encode_targets(self, values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        """Scaled target price at ``origin + h`` for h = 1..horizon: (n_origins, horizon)."""
        target = _as_2d(values)[:, self.target_index]
        rows = np.asarray(origins)[:, None] + np.arange(1, horizon + 1)
        scaled = (target[rows] - self.scaler.data_min_[self.target_index]) / (
            self.scaler.data_range_[self.target_index]
        )
        return scaled

    def steps_to_outputs(self, steps: np.ndarray) -> np.ndarray:
        """Recursive one-step predictions are already price levels."""
        return np.asarray(steps, dtype=np.float64)

    def decode(self, outputs: np.ndarray, last_close: np.ndarray) -> np.ndarray:
        """Scaled outputs (n, H) -> prices (n, H); ``last_close`` is not needed for levels."""
        return self.scaler.inverse_transform_column(outputs, self.target_index)


class LogReturnEncoder:
    """Scaled daily log-returns in, scaled cumulative log-returns out (zero = persistence)."""

    name: ClassVar[str] = "log_return"
    first_valid_row: ClassVar[int] = 1
    inputs: ClassVar[str] = "close"

    def __init__(self) -> None:
        self.scale_ = math.nan
        self.target_index = 0

    @property
    def n_features(self) -> int:
        return 1

    def fit(self, train_values: np.ndarray, target_index: int = 0) -> LogReturnEncoder:
        """Learn the standard deviation of daily log-returns on the training rows only."""
        values = _as_2d(train_values)
        if values.shape[1] != 1:
            raise InvalidParameterError(
                "the log_return target reads the close alone; use target 'price' for "
                "several feature columns"
            )
        if values.shape[0] < 3 or (values <= 0).any():
            raise ValueError("log-returns need at least 3 positive prices to fit")
        returns = np.diff(np.log(values[:, 0]))
        self.scale_ = max(float(np.std(returns, ddof=1)), MIN_RETURN_SCALE)
        self.target_index = target_index
        return self

    def encode_inputs(self, values: np.ndarray) -> np.ndarray:
        """(n_rows, 1) prices -> (n_rows, 1) scaled log-returns; row 0 (undefined) is 0."""
        logs = np.log(_as_2d(values)[:, 0])
        returns = np.empty_like(logs)
        returns[0] = 0.0
        returns[1:] = np.diff(logs)
        return (returns / self.scale_)[:, None]

    def encode_targets(self, values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        """``log(P[o+h] / P[o]) / (scale * sqrt(h))`` for h = 1..horizon: (n_origins, H)."""
        logs = np.log(_as_2d(values)[:, 0])
        origins = np.asarray(origins)
        rows = origins[:, None] + np.arange(1, horizon + 1)
        cumulative = logs[rows] - logs[origins][:, None]
        return cumulative / (self.scale_ * np.sqrt(_horizon_steps(horizon)))

    def steps_to_outputs(self, steps: np.ndarray) -> np.ndarray:
        """Recursive step predictions (scaled daily returns) -> scaled cumulative outputs."""
        steps = np.asarray(steps, dtype=np.float64)
        return np.cumsum(steps, axis=1) / np.sqrt(_horizon_steps(steps.shape[1]))

    def decode(self, outputs: np.ndarray, last_close: np.ndarray) -> np.ndarray:
        """Scaled cumulative outputs (n, H) -> prices ``last_close * exp(log-return)``."""
        outputs = np.asarray(outputs, dtype=np.float64)
        log_offsets = outputs * self.scale_ * np.sqrt(_horizon_steps(outputs.shape[1]))
        return np.asarray(last_close, dtype=np.float64)[:, None] * np.exp(log_offsets)


#: Raw columns the ``ohlcv`` input set reads, in this order; the target is the close.
OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
#: Trading days of the trailing mean that log volume is compared with.
VOLUME_WINDOW = 20
#: Names of the encoded ``ohlcv`` inputs, in column order.
OHLCV_FEATURES: tuple[str, ...] = ("log_return", "log_range", "gap", "log_volume_ratio", "missing")


def ohlcv_features(values: np.ndarray) -> np.ndarray:
    """Raw (n, 5) open/high/low/close/volume -> unscaled features (n, 5), NaN where unknown.

    Every feature of row ``t`` uses rows ``<= t`` only. A high/low range is unknown when the
    high is not above the low (the frame normalizer fills a missing high/low with the close),
    a gap when open, high, low and close are all equal (a filled open), a volume ratio when
    the volume is not positive (a filled volume is 0). Column 4 is 1.0 on a day with any of
    them unknown, else 0.0. Row 0 has no previous close: its return and gap are NaN.
    """
    raw = np.asarray(values, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != len(OHLCV_COLUMNS):
        raise ValueError(f"ohlcv inputs need (n, 5) open/high/low/close/volume, got {raw.shape}")
    open_, high, low, close, volume = raw.T
    previous = np.concatenate([[np.nan], close[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_return = np.log(close / previous)
        log_range = np.where((high > low) & (low > 0), np.log(high / low), np.nan)
        filled_open = (open_ == high) & (high == low) & (low == close)
        gap = np.where(~filled_open & (open_ > 0), np.log(open_ / previous), np.nan)
        log_volume = np.where(volume > 0, np.log(volume), np.nan)
    trailing = pd.Series(log_volume).rolling(VOLUME_WINDOW, min_periods=1).mean().to_numpy()
    volume_ratio = log_volume - trailing
    missing = (np.isnan(log_range) | np.isnan(volume_ratio) | filled_open).astype(np.float64)
    return np.column_stack([log_return, log_range, gap, volume_ratio, missing])


class ReturnFeaturesEncoder(LogReturnEncoder):
    """Five standardized OHLCV inputs (see :func:`ohlcv_features`), log-return targets.

    Fitted on the training rows only: the return keeps :class:`LogReturnEncoder`'s scale (so
    targets and the return input share units); range, gap and volume ratio are centred and
    scaled by their training mean and standard deviation. An unknown value becomes the
    training mean (0 after scaling) and the ``missing`` flag says so, rather than a silent 0
    range that would read as "a perfectly calm day".
    """

    name: ClassVar[str] = "log_return"
    #: The volume ratio needs a full trailing window behind the first usable row.
    first_valid_row: ClassVar[int] = VOLUME_WINDOW
    inputs: ClassVar[str] = "ohlcv"

    def __init__(self) -> None:
        super().__init__()
        self.mean_ = np.zeros(len(OHLCV_FEATURES))
        self.std_ = np.ones(len(OHLCV_FEATURES))

    @property
    def n_features(self) -> int:
        return len(OHLCV_FEATURES)

    def fit(self, train_values: np.ndarray, target_index: int = 3) -> ReturnFeaturesEncoder:
        """Learn the return scale and the other inputs' mean/std on the training rows only."""
        values = _as_2d(train_values)
        if values.shape[1] != len(OHLCV_COLUMNS) or target_index != 3:
            raise InvalidParameterError(
                "inputs 'ohlcv' read open, high, low, close and volume, with the close as target"
            )
        LogReturnEncoder.fit(self, values[:, 3:4])
        self.target_index = target_index
        features = ohlcv_features(values)[self.first_valid_row :]
        for column in (1, 2, 3):
            known = features[:, column][np.isfinite(features[:, column])]
            if known.size >= 2:
                self.mean_[column] = float(np.mean(known))
                self.std_[column] = max(float(np.std(known, ddof=1)), MIN_RETURN_SCALE)
        self.std_[0] = self.scale_
        return self

    def encode_inputs(self, values: np.ndarray) -> np.ndarray:
        """(n, 5) raw OHLCV -> (n, 5) scaled inputs; unknown values are 0 (the mean)."""
        features = ohlcv_features(_as_2d(values))
        scaled = (features - self.mean_) / self.std_
        scaled[:, 4] = features[:, 4]
        return np.nan_to_num(scaled, nan=0.0)

    def encode_targets(self, values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        return LogReturnEncoder.encode_targets(self, _as_2d(values)[:, 3:4], origins, horizon)


#: Raw columns of the market ticker the ``ohlcv_market`` input set reads besides the
#: ticker's own OHLCV (``data.market.attach_market`` adds them; 0 where the market has no row).
MARKET_COLUMNS: tuple[str, ...] = ("market_high", "market_low", "market_close")
#: Names of the two market inputs, after the five OHLCV ones.
MARKET_FEATURES: tuple[str, ...] = ("market_log_return", "market_log_range")


def market_features(values: np.ndarray) -> np.ndarray:
    """Raw (n, 3) market high/low/close -> unscaled (n, 2) market log-return and log range,
    NaN where unknown (a day the market had no row, or the first row). Row ``t`` reads rows
    ``<= t`` only."""
    raw = np.asarray(values, dtype=np.float64)
    high, low, close = raw.T
    known = close > 0
    previous = np.concatenate([[np.nan], np.where(known, close, np.nan)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_return = np.where(known, np.log(close / previous), np.nan)
        log_range = np.where((high > low) & (low > 0), np.log(high / low), np.nan)
    return np.column_stack([log_return, log_range])


class MarketFeaturesEncoder(ReturnFeaturesEncoder):
    """:class:`ReturnFeaturesEncoder`'s five inputs plus the market ticker's log-return and
    log range on the same day: the market-wide state a pooled network can condition on and a
    per-ticker HAR cannot. Both are standardized by their mean and standard deviation over
    the *ticker's* training rows, so they stay scale-free; unknown values are 0 (the mean)."""

    inputs: ClassVar[str] = "ohlcv_market"

    def __init__(self) -> None:
        super().__init__()
        self.mean_ = np.zeros(len(OHLCV_FEATURES) + len(MARKET_FEATURES))
        self.std_ = np.ones(len(OHLCV_FEATURES) + len(MARKET_FEATURES))

    @property
    def n_features(self) -> int:
        return len(OHLCV_FEATURES) + len(MARKET_FEATURES)

    def fit(self, train_values: np.ndarray, target_index: int = 3) -> MarketFeaturesEncoder:
        values = _as_2d(train_values)
        if values.shape[1] != len(OHLCV_COLUMNS) + len(MARKET_COLUMNS) or target_index != 3:
            raise InvalidParameterError(
                "inputs 'ohlcv_market' read the ticker's OHLCV and the market's high, low and "
                "close, with the close as target"
            )
        own = ReturnFeaturesEncoder.fit(ReturnFeaturesEncoder(), values[:, :5], target_index)
        self.scale_, self.target_index = own.scale_, own.target_index
        self.mean_[:5], self.std_[:5] = own.mean_, own.std_
        market = market_features(values[:, 5:])[self.first_valid_row :]
        for offset in range(len(MARKET_FEATURES)):
            known = market[:, offset][np.isfinite(market[:, offset])]
            if known.size >= 2:
                self.mean_[5 + offset] = float(np.mean(known))
                self.std_[5 + offset] = max(float(np.std(known, ddof=1)), MIN_RETURN_SCALE)
        return self

    def encode_inputs(self, values: np.ndarray) -> np.ndarray:
        """(n, 8) raw ticker OHLCV + market high/low/close -> (n, 7) scaled inputs."""
        raw = _as_2d(values)
        features = np.column_stack([ohlcv_features(raw[:, :5]), market_features(raw[:, 5:])])
        scaled = (features - self.mean_) / self.std_
        scaled[:, 4] = features[:, 4]
        return np.nan_to_num(scaled, nan=0.0)


Encoder = PriceEncoder | LogReturnEncoder
INPUT_SETS = ("close", "ohlcv", "ohlcv_market")


def input_columns(inputs: str) -> tuple[str, ...]:
    """The raw price columns an input set reads (``close``, ``ohlcv`` or ``ohlcv_market``)."""
    if inputs == "close":
        return ("close",)
    if inputs == "ohlcv":
        return OHLCV_COLUMNS
    if inputs == "ohlcv_market":
        return OHLCV_COLUMNS + MARKET_COLUMNS
    raise InvalidParameterError(f"inputs must be one of {', '.join(INPUT_SETS)}, got {inputs!r}")


def needs_market(inputs: str) -> bool:
    """Whether an input set reads a market ticker's prices beside the ticker's own."""
    return inputs == "ohlcv_market"


def make_encoder(target: str, inputs: str = "close") -> Encoder:
    """A fresh (unfitted) encoder for the ``target`` and ``inputs`` parameters."""
    input_columns(inputs)
    if target == "price":
        if inputs != "close":
            raise InvalidParameterError("target 'price' reads the close only: use inputs 'close'")
        return PriceEncoder()
    if target == "log_return":
        if inputs == "ohlcv_market":
            return MarketFeaturesEncoder()
        return ReturnFeaturesEncoder() if inputs == "ohlcv" else LogReturnEncoder()
    raise InvalidParameterError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")


#: Encoders by the name their saved state carries: the only classes a state can rebuild.
ENCODER_KINDS: dict[str, type] = {
    "PriceEncoder": PriceEncoder,
    "LogReturnEncoder": LogReturnEncoder,
    "ReturnFeaturesEncoder": ReturnFeaturesEncoder,
    "MarketFeaturesEncoder": MarketFeaturesEncoder,
}


def _floats(values: np.ndarray) -> list[float]:
    return [float(value) for value in np.asarray(values, dtype=np.float64).ravel()]


def encoder_state(encoder: Encoder) -> dict[str, object]:
    """A fitted encoder as plain numbers (JSON-safe), so saving it needs no pickle.

    A pickle runs whatever code its bytes name when loaded; these numbers are all an encoder
    is, and :func:`encoder_from_state` rebuilds only the classes in :data:`ENCODER_KINDS`.
    """
    kind = type(encoder).__name__
    if ENCODER_KINDS.get(kind) is not type(encoder):
        raise TypeError(f"cannot save an encoder of type {kind}")
    state: dict[str, object] = {"kind": kind, "target_index": int(encoder.target_index)}
    if isinstance(encoder, PriceEncoder):
        state["data_min"] = _floats(encoder.scaler.data_min_)
        state["data_max"] = _floats(encoder.scaler.data_max_)
        return state
    state["scale"] = float(encoder.scale_)
    if isinstance(encoder, ReturnFeaturesEncoder):
        state["mean"] = _floats(encoder.mean_)
        state["std"] = _floats(encoder.std_)
    return state


def _finite_vector(state: dict[str, object], key: str, size: int | None = None) -> np.ndarray:
    values = state.get(key)
    if (
        not isinstance(values, list)
        or not values
        or not all(
            isinstance(value, int | float) and not isinstance(value, bool) for value in values
        )
    ):
        raise ValueError(f"encoder state field {key!r} must be a non-empty list of numbers")
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all() or (size is not None and array.size != size):
        raise ValueError(f"encoder state field {key!r} must hold {size or 'some'} finite numbers")
    return array


def _positive_number(state: dict[str, object], key: str) -> float:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"encoder state field {key!r} must be a positive number")
    if not math.isfinite(value):
        raise ValueError(f"encoder state field {key!r} must be finite")
    return float(value)


def encoder_from_state(state: object) -> Encoder:
    """Rebuild an encoder from :func:`encoder_state`'s output; ``ValueError`` on anything
    else (an unknown kind, a missing or non-finite number, a wrong length)."""
    if not isinstance(state, dict) or state.get("kind") not in ENCODER_KINDS:
        raise ValueError(f"not an encoder state (kinds: {', '.join(ENCODER_KINDS)})")
    target_index = state.get("target_index")
    if isinstance(target_index, bool) or not isinstance(target_index, int) or target_index < 0:
        raise ValueError("encoder state field 'target_index' must be a whole number >= 0")
    kind = state["kind"]
    if kind == "PriceEncoder":
        price = PriceEncoder()
        data_min = _finite_vector(state, "data_min")
        data_max = _finite_vector(state, "data_max", data_min.size)
        if target_index >= data_min.size:
            raise ValueError("encoder state field 'target_index' is out of range")
        price.scaler.data_min_, price.scaler.data_max_ = data_min, data_max
        price.target_index = target_index
        return price
    encoder = ENCODER_KINDS[kind]()
    encoder.scale_ = _positive_number(state, "scale")
    encoder.target_index = target_index
    if isinstance(encoder, ReturnFeaturesEncoder):
        encoder.mean_ = _finite_vector(state, "mean", encoder.n_features)
        encoder.std_ = _finite_vector(state, "std", encoder.n_features)
        if not (encoder.std_ > 0).all():
            raise ValueError("encoder state field 'std' must be positive")
    return encoder
