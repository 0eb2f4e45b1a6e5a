"""Chronological split, windows, the scaler and, above all, no look-ahead through the scaler."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from stock_lstm.data.preprocessing import (
    MinMaxScaler,
    SplitFractions,
    make_sequences,
    minimum_rows,
    prepare_data,
    split_bounds,
)
from stock_lstm.data.synthetic import synthetic_prices
from stock_lstm.errors import InvalidParameterError, NotEnoughDataError

SEQ = 10


def price_frame(rows: int = 300, **kwargs: float) -> pd.DataFrame:
    """A normalized price frame (lower-case columns, index ``date``) from synthetic data."""
    frame = synthetic_prices("TEST", rows=rows, **kwargs).astype("float64")
    frame.columns = ["open", "high", "low", "close", "adj_close", "volume"]
    frame.index.name = "date"
    return frame


# --- make_sequences -------------------------------------------------------------------------


def test_make_sequences_shapes_and_contents() -> None:
    values = np.arange(20, dtype=np.float64).reshape(10, 2)  # row r = (2r, 2r + 1)
    X, y = make_sequences(values, 3, target_index=1)
    assert X.shape == (7, 3, 2) and y.shape == (7, 1)
    assert X.dtype == np.float32 and y.dtype == np.float32
    assert X.flags.c_contiguous and y.flags.c_contiguous
    np.testing.assert_array_equal(X[0], values[0:3])
    np.testing.assert_array_equal(X[6], values[6:9])
    # the target is the next row's feature 1
    np.testing.assert_array_equal(y[:, 0], values[3:, 1])


def test_make_sequences_accepts_one_feature_as_1d() -> None:
    X, y = make_sequences(np.arange(6.0), 2)
    assert X.shape == (4, 2, 1)
    np.testing.assert_array_equal(X[:, :, 0], [[0, 1], [1, 2], [2, 3], [3, 4]])
    np.testing.assert_array_equal(y[:, 0], [2, 3, 4, 5])


def test_make_sequences_rejects_too_few_rows() -> None:
    with pytest.raises(ValueError, match="at least 6"):
        make_sequences(np.arange(5.0), 5)


# --- scaler ---------------------------------------------------------------------------------


def test_scaler_round_trip_and_range() -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(50, 150, size=(40, 3))
    scaler = MinMaxScaler().fit(values)
    scaled = scaler.transform(values)
    assert scaled.min(axis=0) == pytest.approx([0, 0, 0])
    assert scaled.max(axis=0) == pytest.approx([1, 1, 1])
    np.testing.assert_allclose(scaler.inverse_transform(scaled), values, rtol=1e-12)
    np.testing.assert_allclose(scaler.inverse_transform_column(scaled[:, 2], 2), values[:, 2])


def test_scaler_constant_column_does_not_divide_by_zero() -> None:
    values = np.column_stack([np.full(5, 7.0), np.arange(5.0)])
    scaler = MinMaxScaler().fit(values)
    scaled = scaler.transform(values)
    assert np.isfinite(scaled).all()
    np.testing.assert_array_equal(scaled[:, 0], 0.0)
    np.testing.assert_allclose(scaler.inverse_transform(scaled), values)


def test_scaler_pickles() -> None:
    scaler = MinMaxScaler().fit(np.array([[1.0], [3.0]]))
    restored = pickle.loads(pickle.dumps(scaler))
    np.testing.assert_array_equal(restored.transform(np.array([[2.0]])), [[0.5]])


def test_scaler_rejects_wrong_feature_count() -> None:
    scaler = MinMaxScaler().fit(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"\(n_rows, 2\)"):
        scaler.transform(np.ones((3, 3)))


# --- split ----------------------------------------------------------------------------------


def test_split_bounds_are_chronological_fractions() -> None:
    assert split_bounds(100, SplitFractions()) == (70, 85)
    assert split_bounds(1000, SplitFractions(0.8, 0.1)) == (800, 900)


@pytest.mark.parametrize(("train", "val"), [(0.0, 0.15), (0.7, 0.0), (0.7, 0.3), (0.9, 0.2)])
def test_split_fractions_must_leave_every_slice_something(train: float, val: float) -> None:
    with pytest.raises(InvalidParameterError):
        SplitFractions(train, val)


@pytest.mark.parametrize(
    ("target", "horizon"), [("price", 1), ("log_return", 1), ("log_return", 5)]
)
def test_minimum_rows_is_tight_and_safe(target: str, horizon: int) -> None:
    fractions = SplitFractions()
    first_valid = 0 if target == "price" else 1
    needed = minimum_rows(SEQ, fractions, horizon, first_valid)
    for n_rows in range(needed, needed + 60):
        data = prepare_data(
            price_frame(rows=n_rows), sequence_length=SEQ, target=target, horizon=horizon
        )
        assert len(data.X_train) >= 32 and len(data.X_val) >= 10 and len(data.X_test) >= 10
    with pytest.raises(NotEnoughDataError):
        prepare_data(
            price_frame(rows=needed - 1), sequence_length=SEQ, target=target, horizon=horizon
        )


def test_split_is_chronological() -> None:
    data = prepare_data(price_frame(), sequence_length=SEQ)
    assert data.train_dates.max() < data.val_dates.min()
    assert data.val_dates.max() < data.test_dates.min()
    assert data.train_dates.max() <= data.train_end < data.val_dates.min()
    assert data.val_dates.max() == data.val_end < data.test_dates.min()
    for dates in (data.train_dates, data.val_dates, data.test_dates):
        assert dates.is_monotonic_increasing


def test_prepared_shapes_and_targets() -> None:
    prices = price_frame(rows=300)
    data = prepare_data(prices, sequence_length=SEQ)
    n_samples = len(data.X_train) + len(data.X_val) + len(data.X_test)
    assert n_samples == 300 - SEQ
    assert (len(data.X_val), len(data.X_test)) == (45, 45)  # 300 * 0.15 target rows each
    assert data.X_train.shape[1:] == (SEQ, 1) and data.X_train.dtype == np.float32
    assert data.y_test.shape == (45, 1) and data.y_test.dtype == np.float32
    assert len(data.test_dates) == len(data.y_test)
    assert data.target_index == 0 and data.feature_columns == ("close",)
    # each target, unscaled, is the close on its date
    closes = data.encoder.scaler.inverse_transform_column(data.y_test[:, 0].astype(np.float64), 0)
    np.testing.assert_allclose(closes, prices.loc[data.test_dates, "close"], rtol=1e-5)
    # the first test window looks back into the validation slice (legitimate history)
    last_input = data.encoder.scaler.inverse_transform_column(
        data.X_test[0, -1, 0].astype(float), 0
    )
    assert last_input == pytest.approx(prices.loc[data.val_end, "close"], rel=1e-5)
    pd.testing.assert_series_equal(data.prices, prices["close"])


def test_multiple_features_and_target_index() -> None:
    data = prepare_data(
        price_frame(), sequence_length=SEQ, feature_columns=("open", "close", "volume")
    )
    assert data.X_train.shape[2] == 3
    assert data.target_index == 1
    assert data.encoder.n_features == 3
    np.testing.assert_array_equal(data.y_train[:-1, 0], data.X_train[1:, -1, 1])


def test_scaler_sees_only_training_rows() -> None:
    """Changing validation and test prices must change neither the scaler nor X_train."""
    prices = price_frame()
    data = prepare_data(prices, sequence_length=SEQ)
    train_end, _ = split_bounds(len(prices), SplitFractions())
    assert data.encoder.scaler.data_max_[0] == prices["close"].iloc[:train_end].max()
    assert data.encoder.scaler.data_min_[0] == prices["close"].iloc[:train_end].min()

    shocked = prices.copy()
    shocked.iloc[train_end:, :] *= 10.0  # a wild future the training inputs must not see
    shocked_data = prepare_data(shocked, sequence_length=SEQ)
    np.testing.assert_array_equal(
        shocked_data.encoder.scaler.data_min_, data.encoder.scaler.data_min_
    )
    np.testing.assert_array_equal(
        shocked_data.encoder.scaler.data_max_, data.encoder.scaler.data_max_
    )
    np.testing.assert_array_equal(shocked_data.X_train, data.X_train)
    np.testing.assert_array_equal(shocked_data.y_train, data.y_train)
    assert not np.array_equal(shocked_data.X_test, data.X_test)  # the shock did reach test


# --- log-return target -----------------------------------------------------------------------


def test_log_return_targets_decode_to_the_actual_prices_and_zero_is_persistence() -> None:
    prices = price_frame(rows=300)
    data = prepare_data(prices, sequence_length=SEQ, target="log_return", horizon=5)
    origins = data.origins("test", 5)
    closes = prices["close"].to_numpy()
    decoded = data.encoder.decode(data.y_test.astype(np.float64), closes[origins])
    expected = closes[origins[:, None] + np.arange(1, 6)]
    np.testing.assert_allclose(decoded, expected, rtol=1e-5)
    zero = data.encoder.decode(np.zeros((len(origins), 5)), closes[origins])
    np.testing.assert_allclose(zero, np.repeat(closes[origins][:, None], 5, axis=1))


def test_log_return_scale_and_training_targets_see_only_training_rows() -> None:
    prices = price_frame()
    data = prepare_data(prices, sequence_length=SEQ, target="log_return", horizon=5)
    shocked = prices.copy()
    shocked.iloc[data.train_rows :, :] *= 10.0
    shocked_data = prepare_data(shocked, sequence_length=SEQ, target="log_return", horizon=5)
    assert shocked_data.encoder.scale_ == data.encoder.scale_
    np.testing.assert_array_equal(shocked_data.y_train, data.y_train)
    # every training target day lies in the training slice
    last_target = data.origins("train", 5).max() + 5
    assert last_target < data.train_rows


def test_recursive_steps_and_direct_outputs_agree_on_the_same_returns() -> None:
    prices = price_frame(rows=300)
    data = prepare_data(prices, sequence_length=SEQ, target="log_return", horizon=3)
    origins = data.origins("val", 3)
    steps = data.inputs[origins[:, None] + np.arange(1, 4), 0]  # the true daily returns
    np.testing.assert_allclose(data.encoder.steps_to_outputs(steps), data.y_val, rtol=1e-5)


# --- errors ---------------------------------------------------------------------------------


def test_too_few_rows_says_how_many_are_needed() -> None:
    needed = minimum_rows(60, SplitFractions(), first_valid_row=0)  # price target
    prices = price_frame(rows=80, start="2020-01-02")
    with pytest.raises(NotEnoughDataError) as caught:
        prepare_data(prices, sequence_length=60)
    message = str(caught.value)
    assert "has 80 rows (2020-01-02.." in message
    assert f"needs at least {needed} rows" in message
    assert "70/15/15" in message and "--sequence-length" in message


def test_exactly_minimum_rows_is_enough() -> None:
    needed = minimum_rows(SEQ, SplitFractions(), first_valid_row=0)
    data = prepare_data(price_frame(rows=needed), sequence_length=SEQ)
    assert len(data.X_train) >= 32
    with pytest.raises(NotEnoughDataError):
        prepare_data(price_frame(rows=needed - 1), sequence_length=SEQ)


@pytest.mark.parametrize(
    ("features", "target", "match"),
    [
        (("close", "nope"), "close", "nope"),
        (("close",), "missing", "missing"),
        (("open",), "close", "must also be a feature"),
        ((), "close", "empty"),
    ],
)
def test_unknown_column_is_rejected(features: tuple[str, ...], target: str, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        prepare_data(
            price_frame(), sequence_length=SEQ, feature_columns=features, target_column=target
        )
