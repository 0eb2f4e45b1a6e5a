"""From a price frame to scaled, windowed arrays the LSTM trains on, without look-ahead.

The rules that keep the evaluation honest live here and nowhere else:

* rows are split chronologically (train, then validation, then test), never shuffled;
* the scaler is fitted on the training rows only, so validation and test prices cannot leak
  into the inputs the network trains on;
* a sample belongs to the slice that holds its *target* row; its input window may look back
  into earlier slices, which is information a forecaster would have had on that day.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from stock_lstm.data.encoding import Encoder, MinMaxScaler, input_columns, make_encoder
from stock_lstm.errors import DataSourceError, InvalidParameterError, NotEnoughDataError

__all__ = [
    "MinMaxScaler",
    "PreparedData",
    "SplitFractions",
    "input_windows",
    "make_sequences",
    "minimum_rows",
    "origins_between",
    "prepare_data",
    "split_bounds",
]

#: Training samples (input windows) the training slice must yield at least: one default batch.
MIN_TRAIN_SAMPLES = 32
#: Target rows the validation and test slices must each hold, so their scores mean something.
MIN_EVAL_ROWS = 10


@dataclass(frozen=True)
class SplitFractions:
    """Chronological split of the rows: ``train`` then ``val``; the test slice gets the rest."""

    train: float = 0.70
    val: float = 0.15
    #: Fitting-only splits (walk-forward backtests) have no test slice of their own.
    allow_empty_test: bool = False

    def __post_init__(self) -> None:
        for name in ("train", "val"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidParameterError(
                    f"split fraction {name} must be a number, got {value!r}"
                )
            if not 0.0 < value < 1.0:
                raise InvalidParameterError(
                    f"split fraction {name} must be between 0 and 1 (exclusive), got {value}"
                )
        # 1 - 0.7 - 0.3 is 5.6e-17, not 0, in floating point: compare with a tolerance.
        if self.test < -1e-9 or (self.test <= 1e-9 and not self.allow_empty_test):
            raise InvalidParameterError(
                f"split fractions train={self.train} and val={self.val} leave nothing for the "
                "test slice: make train + val smaller than 1"
            )

    @property
    def test(self) -> float:
        """Fraction of rows in the test slice (``1 - train - val``)."""
        return 1.0 - self.train - self.val

    def label(self) -> str:
        """Percentages as a user reads them, e.g. ``"70/15/15"``."""
        parts = (self.train, self.val, self.test)
        return "/".join(f"{round(part * 100, 6):g}" for part in parts)


@dataclass(frozen=True)
class PreparedData:
    """Everything training and evaluation need, produced by :func:`prepare_data`.

    A sample is an *origin* row ``o`` (the last observed day): its input window is the encoded
    rows ``o - sequence_length + 1 .. o`` and its targets are days ``o + 1 .. o + horizon``.
    ``X_*`` are float32 (n_samples, sequence_length, n_features); ``y_*`` float32
    (n_samples, horizon) in the encoder's units. A sample belongs to the slice holding *all*
    its target rows, so no training target lies in the validation or test slice. ``*_dates``
    are the first target day of each sample; ``prices`` is the target column in price units.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    train_dates: pd.DatetimeIndex
    val_dates: pd.DatetimeIndex
    test_dates: pd.DatetimeIndex
    encoder: Encoder
    feature_columns: tuple[str, ...]
    target_column: str
    target_index: int
    sequence_length: int
    horizon: int
    train_rows: int
    val_rows: int
    train_end: pd.Timestamp
    val_end: pd.Timestamp
    prices: pd.Series
    inputs: np.ndarray
    values: np.ndarray
    #: The days' highs and lows (same rows as ``prices``) when the source has them: the
    #: range-based anchor reads them whatever the network's inputs are.
    high_low: pd.DataFrame | None = None

    @property
    def n_features(self) -> int:
        """Number of encoded inputs per time step (the network's input size; not the raw
        columns read, which differ when inputs are derived, e.g. 8 columns -> 7 inputs)."""
        return int(self.X_train.shape[2])

    @property
    def scaler(self) -> Encoder:
        """The fitted encoder (saved as the ``_scaler.json`` artifact)."""
        return self.encoder

    @property
    def target(self) -> str:
        """``price`` or ``log_return`` (see :mod:`stock_lstm.data.encoding`)."""
        return self.encoder.name

    def earliest_origin(self) -> int:
        """First row with a full window of defined inputs behind it."""
        return self.encoder.first_valid_row + self.sequence_length - 1

    def origins(self, slice_name: str, horizon: int) -> np.ndarray:
        """Origins whose ``horizon`` target days all fall in ``train``, ``val`` or ``test``."""
        bounds = {
            "train": (0, self.train_rows),
            "val": (self.train_rows, self.val_rows),
            "test": (self.val_rows, len(self.prices)),
        }
        first_row, end_row = bounds[slice_name]
        return origins_between(first_row, end_row, horizon, self.earliest_origin())

    def windows(self, origins: np.ndarray) -> np.ndarray:
        """Encoded input windows (n, sequence_length, n_features) ending at ``origins``."""
        return input_windows(self.inputs, origins, self.sequence_length)


def split_bounds(n_rows: int, fractions: SplitFractions) -> tuple[int, int]:
    """Exclusive row indices ``(train_end, val_end)`` of a chronological split.

    Rows ``[0, train_end)`` train, ``[train_end, val_end)`` validate, ``[val_end, n_rows)`` test.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    # The epsilon keeps e.g. 100 * 0.85 = 84.99999999999999 from flooring to 84.
    train_end = math.floor(n_rows * fractions.train + 1e-9)
    val_end = math.floor(n_rows * (fractions.train + fractions.val) + 1e-9)
    return min(train_end, n_rows), min(val_end, n_rows)


def make_sequences(
    values: np.ndarray, sequence_length: int, target_index: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows over ``values`` (n_rows, n_features) and the next row's target.

    Returns ``X`` float32 (n_rows - sequence_length, sequence_length, n_features) and ``y``
    float32 (n_rows - sequence_length, 1): sample ``i`` reads rows ``i .. i + sequence_length - 1``
    and its target is ``values[i + sequence_length, target_index]``.
    A 1-D ``values`` is treated as a single feature.
    """
    array = np.asarray(values)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"values must be 1-D or 2-D (n_rows, n_features), got {array.shape}")
    n_rows, n_features = array.shape
    if sequence_length < 1:
        raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
    if not 0 <= target_index < n_features:
        raise ValueError(f"target_index must be in 0..{n_features - 1}, got {target_index}")
    if n_rows <= sequence_length:
        raise ValueError(
            f"{n_rows} rows make no window of {sequence_length} plus a target: "
            f"need at least {sequence_length + 1}"
        )
    # sliding_window_view gives (n_windows, n_features, sequence_length); windows stop one row
    # early so that every window has a next-row target.
    windows = sliding_window_view(array[:-1], sequence_length, axis=0).transpose(0, 2, 1)
    X = np.ascontiguousarray(windows, dtype=np.float32)
    y = np.ascontiguousarray(array[sequence_length:, target_index, None], dtype=np.float32)
    return X, y


def origins_between(
    first_target_row: int, end_row: int, horizon: int, earliest_origin: int
) -> np.ndarray:
    """Origins ``o`` with targets ``o+1 .. o+horizon`` inside ``[first_target_row, end_row)``."""
    first = max(first_target_row - 1, earliest_origin)
    last = end_row - 1 - horizon
    return np.arange(first, last + 1, dtype=np.int64) if last >= first else np.empty(0, np.int64)


def input_windows(inputs: np.ndarray, origins: np.ndarray, sequence_length: int) -> np.ndarray:
    """Rows ``o - sequence_length + 1 .. o`` of ``inputs`` (n_rows, F) for each origin, float32."""
    origins = np.asarray(origins, dtype=np.int64)
    if origins.size and origins.min() < sequence_length - 1:
        raise ValueError(f"origin {origins.min()} has fewer than {sequence_length} rows behind it")
    views = sliding_window_view(inputs, sequence_length, axis=0).transpose(0, 2, 1)
    return np.ascontiguousarray(views[origins - sequence_length + 1], dtype=np.float32)


def _sample_counts(
    n_rows: int, sequence_length: int, fractions: SplitFractions, horizon: int, first_valid: int
) -> tuple[int, int, int]:
    """(train, validation, test) sample counts for a series of ``n_rows`` rows."""
    train_end, val_end = split_bounds(n_rows, fractions)
    earliest = first_valid + sequence_length - 1
    return (
        origins_between(0, train_end, horizon, earliest).size,
        origins_between(train_end, val_end, horizon, earliest).size,
        origins_between(val_end, n_rows, horizon, earliest).size,
    )


def _is_enough(
    n_rows: int, sequence_length: int, fractions: SplitFractions, horizon: int, first_valid: int
) -> bool:
    train, val, test = _sample_counts(n_rows, sequence_length, fractions, horizon, first_valid)
    enough_test = test >= MIN_EVAL_ROWS or fractions.test <= 1e-9
    return train >= MIN_TRAIN_SAMPLES and val >= MIN_EVAL_ROWS and enough_test


def minimum_rows(
    sequence_length: int,
    fractions: SplitFractions,
    horizon: int = 1,
    first_valid_row: int = 1,
) -> int:
    """Fewest rows from which on every series length works for these settings.

    "Works" means at least ``MIN_TRAIN_SAMPLES`` (32) training samples and ``MIN_EVAL_ROWS``
    (10) validation and test samples, each with all ``horizon`` targets inside its slice.
    ``first_valid_row`` is 1 for log-return inputs (the first row has no return), 0 for prices;
    the default is the stricter one.
    """
    if sequence_length < 1 or horizon < 1:
        raise ValueError(f"sequence_length and horizon must be >= 1, got {sequence_length}")
    extra = horizon + first_valid_row + 1
    upper = 2 + max(
        math.ceil((sequence_length + MIN_TRAIN_SAMPLES + extra) / fractions.train),
        math.ceil((MIN_EVAL_ROWS + extra) / fractions.val),
        math.ceil((MIN_EVAL_ROWS + extra) / max(fractions.test, fractions.val)),
    )
    n_rows = upper
    while n_rows > 1 and _is_enough(
        n_rows - 1, sequence_length, fractions, horizon, first_valid_row
    ):
        n_rows -= 1
    return n_rows


def _select_columns(
    prices: pd.DataFrame, feature_columns: Sequence[str], target_column: str
) -> tuple[tuple[str, ...], int]:
    if isinstance(feature_columns, str):
        feature_columns = (feature_columns,)
    features = tuple(feature_columns)
    available = ", ".join(map(str, prices.columns))
    if not features:
        raise InvalidParameterError(f"feature_columns is empty: choose from {available}")
    if len(set(features)) != len(features):
        raise InvalidParameterError(f"feature_columns has duplicates: {', '.join(features)}")
    unknown = [column for column in features if column not in prices.columns]
    if unknown:
        raise InvalidParameterError(
            f"unknown feature column(s) {', '.join(unknown)}: choose from {available}"
        )
    if target_column not in prices.columns:
        raise InvalidParameterError(
            f"unknown target column {target_column!r}: choose from {available}"
        )
    if target_column not in features:
        raise InvalidParameterError(
            f"target column {target_column!r} must also be a feature column "
            f"(feature_columns: {', '.join(features)})"
        )
    return features, features.index(target_column)


def _check_series(frame: pd.DataFrame) -> None:
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataSourceError("the price series needs a DatetimeIndex of trading days")
    if not frame.index.is_monotonic_increasing or not frame.index.is_unique:
        raise DataSourceError(
            "the price series dates must be unique and ascending: re-sync the ticker's prices"
        )
    missing = frame.isna().sum()
    if missing.any():
        detail = ", ".join(f"{column}: {count}" for column, count in missing[missing > 0].items())
        raise DataSourceError(
            f"the price series has missing values ({detail}): re-sync the ticker's prices"
        )


def prepare_data(
    prices: pd.DataFrame,
    *,
    sequence_length: int = 60,
    feature_columns: Sequence[str] = ("close",),
    target_column: str = "close",
    fractions: SplitFractions = SplitFractions(),
    target: str = "price",
    horizon: int = 1,
    inputs: str = "close",
) -> PreparedData:
    """Split ``prices`` chronologically, fit the encoder on the training rows only, window.

    ``target`` picks the encoding (``price``: min-max levels, the original design;
    ``log_return``: scaled returns, zero = persistence); ``inputs`` what each day shows the
    network (``close``: its return alone; ``ohlcv``: return, range, gap, volume, replacing
    ``feature_columns``); ``horizon`` is how many days each
    sample's target holds (1 for a recursive model, H for a direct multi-horizon head).
    Raises :class:`NotEnoughDataError` when the series is too short (see
    :func:`minimum_rows`), :class:`InvalidParameterError` for unknown columns or settings.
    """
    for name, value in (("sequence_length", sequence_length), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameterError(f"{name} must be an integer, got {value!r}")
        if value < 1:
            raise InvalidParameterError(f"{name} must be >= 1, got {value}")
    encoder = make_encoder(target, inputs)
    if inputs != "close":
        feature_columns = input_columns(inputs)
    features, target_index = _select_columns(prices, feature_columns, target_column)
    frame = prices.loc[:, list(features)].astype(np.float64)
    _check_series(frame)

    n_rows = len(frame)
    needed = minimum_rows(sequence_length, fractions, horizon, encoder.first_valid_row)
    if n_rows < needed:
        span = f" ({frame.index[0]:%Y-%m-%d}..{frame.index[-1]:%Y-%m-%d})" if n_rows else ""
        raise NotEnoughDataError(
            f"the price series has {n_rows} rows{span}; sequence_length {sequence_length} "
            f"with a {fractions.label()} split needs at least {needed} rows: "
            "use an earlier --start or a smaller --sequence-length"
        )

    train_rows, val_rows = split_bounds(n_rows, fractions)
    values = frame.to_numpy()
    encoder.fit(values[:train_rows], target_index)
    encoded = encoder.encode_inputs(values)
    earliest = encoder.first_valid_row + sequence_length - 1
    dates = pd.DatetimeIndex(frame.index, name=frame.index.name)

    def samples(first_row: int, end_row: int) -> tuple[np.ndarray, np.ndarray, pd.DatetimeIndex]:
        origins = origins_between(first_row, end_row, horizon, earliest)
        X = input_windows(encoded, origins, sequence_length)
        y = encoder.encode_targets(values, origins, horizon).astype(np.float32)
        return X, np.ascontiguousarray(y), dates[origins + 1]

    X_train, y_train, train_dates = samples(0, train_rows)
    X_val, y_val, val_dates = samples(train_rows, val_rows)
    X_test, y_test, test_dates = samples(val_rows, n_rows)
    return PreparedData(
        X_train=X_train,
        y_train=y_train,
        X_val=X_val,
        y_val=y_val,
        X_test=X_test,
        y_test=y_test,
        train_dates=train_dates,
        val_dates=val_dates,
        test_dates=test_dates,
        encoder=encoder,
        feature_columns=features,
        target_column=target_column,
        target_index=target_index,
        sequence_length=sequence_length,
        horizon=horizon,
        train_rows=train_rows,
        val_rows=val_rows,
        train_end=pd.Timestamp(frame.index[train_rows - 1]),
        val_end=pd.Timestamp(frame.index[val_rows - 1]),
        prices=frame[target_column].copy(),
        inputs=encoded,
        values=values,
        high_low=_high_low(prices),
    )


def _high_low(prices: pd.DataFrame) -> pd.DataFrame | None:
    """The ``high`` and ``low`` columns as floats, or ``None`` if the frame lacks either."""
    if not {"high", "low"} <= set(prices.columns):
        return None
    return prices.loc[:, ["high", "low"]].astype(np.float64)
