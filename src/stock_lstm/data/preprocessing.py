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

from stock_lstm.errors import DataSourceError, InvalidParameterError, NotEnoughDataError

#: Training samples (input windows) the training slice must yield at least: one default batch.
MIN_TRAIN_SAMPLES = 32
#: Target rows the validation and test slices must each hold, so their scores mean something.
MIN_EVAL_ROWS = 10


@dataclass(frozen=True)
class SplitFractions:
    """Chronological split of the rows: ``train`` then ``val``; the test slice gets the rest."""

    train: float = 0.70
    val: float = 0.15

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
        if self.test <= 1e-9:  # 1 - 0.7 - 0.3 is 5.6e-17, not 0, in floating point
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


class MinMaxScaler:
    """Pure-numpy min-max scaler to [0, 1] per feature.

    Written here rather than imported from scikit-learn because importing sklearn costs more
    than a second on every CLI call and API start. Instances pickle with joblib as plain
    objects. A constant feature (max == min) gets scale 1, so it maps to 0 instead of NaN.
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


@dataclass(frozen=True)
class PreparedData:
    """Everything training and evaluation need, produced by :func:`prepare_data`.

    ``X_*`` are float32 of shape (n_samples, sequence_length, n_features), scaled; ``y_*`` are
    float32 of shape (n_samples, 1): the scaled target of the day after each window. The
    ``*_dates`` hold the date of each sample's target row. ``prices`` is the target column in
    price units over the full series, for actuals and the persistence baseline.
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
    scaler: MinMaxScaler
    feature_columns: tuple[str, ...]
    target_column: str
    target_index: int
    sequence_length: int
    train_end: pd.Timestamp
    val_end: pd.Timestamp
    prices: pd.Series

    @property
    def n_features(self) -> int:
        """Number of input features per time step."""
        return len(self.feature_columns)


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


def _split_counts(
    n_rows: int, sequence_length: int, fractions: SplitFractions
) -> tuple[int, int, int]:
    """(training samples, validation target rows, test target rows) for ``n_rows`` rows."""
    train_end, val_end = split_bounds(n_rows, fractions)
    return train_end - sequence_length, val_end - train_end, n_rows - val_end


def _is_enough(n_rows: int, sequence_length: int, fractions: SplitFractions) -> bool:
    train_samples, val_rows, test_rows = _split_counts(n_rows, sequence_length, fractions)
    return (
        train_samples >= MIN_TRAIN_SAMPLES
        and val_rows >= MIN_EVAL_ROWS
        and test_rows >= MIN_EVAL_ROWS
    )


def minimum_rows(sequence_length: int, fractions: SplitFractions) -> int:
    """Fewest rows from which on every series length works for ``sequence_length``.

    "Works" means: the training slice holds ``sequence_length + MIN_TRAIN_SAMPLES`` rows (so it
    yields at least ``MIN_TRAIN_SAMPLES`` = 32 windows) and the validation and test slices hold
    ``MIN_EVAL_ROWS`` = 10 target rows each. Because slice sizes are floored, a slightly shorter
    series can occasionally pass too; the bound returned holds for all longer series as well.
    """
    if sequence_length < 1:
        raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
    # Beyond this length floor() loses less than one row per slice, so every length passes.
    upper = 2 + max(
        math.ceil((sequence_length + MIN_TRAIN_SAMPLES + 1) / fractions.train),
        math.ceil((MIN_EVAL_ROWS + 1) / fractions.val),
        math.ceil((MIN_EVAL_ROWS + 1) / fractions.test),
    )
    n_rows = upper
    while n_rows > 1 and _is_enough(n_rows - 1, sequence_length, fractions):
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
) -> PreparedData:
    """Split ``prices`` chronologically, scale on the training rows only and window the series.

    ``prices`` is indexed by trading day (ascending) with float columns such as ``close``.
    Raises :class:`NotEnoughDataError` when the series is too short for ``sequence_length``
    and ``fractions`` (see :func:`minimum_rows`), :class:`InvalidParameterError` for unknown
    columns or a bad ``sequence_length``.
    """
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, int):
        raise InvalidParameterError(f"sequence_length must be an integer, got {sequence_length!r}")
    if sequence_length < 1:
        raise InvalidParameterError(f"sequence_length must be >= 1, got {sequence_length}")
    features, target_index = _select_columns(prices, feature_columns, target_column)
    frame = prices.loc[:, list(features)].astype(np.float64)
    _check_series(frame)

    n_rows = len(frame)
    needed = minimum_rows(sequence_length, fractions)
    if n_rows < needed:
        span = f" ({frame.index[0]:%Y-%m-%d}..{frame.index[-1]:%Y-%m-%d})" if n_rows else ""
        raise NotEnoughDataError(
            f"the price series has {n_rows} rows{span}; sequence_length {sequence_length} "
            f"with a {fractions.label()} split needs at least {needed} rows: "
            "use an earlier --start or a smaller --sequence-length"
        )

    train_end, val_end = split_bounds(n_rows, fractions)
    values = frame.to_numpy()
    scaler = MinMaxScaler().fit(values[:train_end])
    X, y = make_sequences(scaler.transform(values), sequence_length, target_index)

    # Sample i predicts row i + sequence_length; cut by the target row's slice.
    train_cut, val_cut = train_end - sequence_length, val_end - sequence_length
    target_dates = frame.index[sequence_length:]
    dates = pd.DatetimeIndex(target_dates, name=frame.index.name)
    return PreparedData(
        X_train=X[:train_cut],
        y_train=y[:train_cut],
        X_val=X[train_cut:val_cut],
        y_val=y[train_cut:val_cut],
        X_test=X[val_cut:],
        y_test=y[val_cut:],
        train_dates=dates[:train_cut],
        val_dates=dates[train_cut:val_cut],
        test_dates=dates[val_cut:],
        scaler=scaler,
        feature_columns=features,
        target_column=target_column,
        target_index=target_index,
        sequence_length=sequence_length,
        train_end=pd.Timestamp(frame.index[train_end - 1]),
        val_end=pd.Timestamp(frame.index[val_end - 1]),
        prices=frame[target_column].copy(),
    )
