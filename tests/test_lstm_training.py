"""The network's shapes, the training loop's promises and the test-set evaluation.

Models are tiny (hidden 8-16, one or two layers, windows of 10) so the file runs in seconds.
"""

from __future__ import annotations

import itertools
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from stock_lstm.data.preprocessing import PreparedData, prepare_data
from stock_lstm.data.synthetic import synthetic_prices
from stock_lstm.errors import InvalidParameterError
from stock_lstm.evaluation.metrics import score
from stock_lstm.evaluation.model_evaluation import evaluate_model
from stock_lstm.models import training
from stock_lstm.models.lstm import LSTMForecaster
from stock_lstm.models.training import (
    PARAM_CHOICES,
    PARAM_RANGES,
    EpochReport,
    TrainParams,
    TrainResult,
    predict_scaled,
    set_torch_threads,
    train_model,
)

SEQ = 10
SMALL = TrainParams(
    epochs=30,
    patience=0,
    sequence_length=SEQ,
    hidden_size=16,
    num_layers=1,
    dropout=0.0,
    learning_rate=0.01,
    batch_size=32,
    seed=1,
    inputs="close",
    output="point",  # these tests pin the MSE loop; the quantile head has its own tests
    chunk_length=0,  # window by window; chunked training has its own tests below
)


def price_frame(rows: int = 400, **kwargs: float) -> pd.DataFrame:
    """A normalized price frame (lower-case columns, index ``date``) from synthetic data."""
    frame = synthetic_prices("TEST", rows=rows, **kwargs).astype("float64")
    frame.columns = ["open", "high", "low", "close", "adj_close", "volume"]
    frame.index.name = "date"
    return frame


@pytest.fixture(scope="module")
def learnable() -> PreparedData:
    """A strong 10-day cycle under little noise: an LSTM can beat persistence on it."""
    prices = price_frame(cycle_amplitude=0.05, daily_volatility=0.002)
    return prepare_data(prices, sequence_length=SEQ)


@pytest.fixture(scope="module")
def trained(learnable: PreparedData) -> TrainResult:
    return train_model(learnable, SMALL, threads=1)


# --- the network ----------------------------------------------------------------------------


@pytest.mark.parametrize("n_features", [1, 3])
@pytest.mark.parametrize("horizon", [1, 5])
def test_output_shape(n_features: int, horizon: int) -> None:
    model = LSTMForecaster(n_features=n_features, hidden_size=8, num_layers=2, horizon=horizon)
    output = model(torch.zeros(4, 12, n_features))
    assert output.shape == (4, horizon)
    assert output.dtype == torch.float32


def test_config_rebuilds_the_same_network() -> None:
    model = LSTMForecaster(n_features=3, hidden_size=8, num_layers=2, dropout=0.1, horizon=5)
    config = model.config()
    assert config == {
        "n_features": 3,
        "hidden_size": 8,
        "num_layers": 2,
        "dropout": 0.1,
        "horizon": 5,
    }
    assert all(type(value) in (int, float) for value in config.values())
    rebuilt = LSTMForecaster(**config)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 7, 3)
    model.eval()
    rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), model(x))


def test_single_layer_ignores_dropout_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = LSTMForecaster(num_layers=1, dropout=0.5)
    assert model.lstm.dropout == 0.0
    assert model.config()["dropout"] == 0.5


# --- training -------------------------------------------------------------------------------


def test_training_learns_and_beats_persistence(
    learnable: PreparedData, trained: TrainResult
) -> None:
    first_val_loss = trained.history[0]["val_loss"]
    best_val_loss = trained.history[trained.best_epoch - 1]["val_loss"]
    assert best_val_loss < first_val_loss / 10
    evaluation = evaluate_model(trained.model, learnable, "recursive", 1)
    assert evaluation.metrics.mae < 0.7 * evaluation.metrics.persistence["mae"]


def test_result_shape(trained: TrainResult) -> None:
    assert trained.epochs_run == SMALL.epochs and not trained.stopped_early
    assert [row["epoch"] for row in trained.history] == list(range(1, SMALL.epochs + 1))
    assert all(type(row["epoch"]) is int for row in trained.history)
    assert not trained.model.training
    assert trained.train_seconds > 0


def test_best_weights_are_restored(learnable: PreparedData, trained: TrainResult) -> None:
    predicted = predict_scaled(trained.model, learnable.X_val)
    val_loss = float(np.mean((predicted.astype(np.float64) - learnable.y_val) ** 2))
    assert val_loss == pytest.approx(trained.history[trained.best_epoch - 1]["val_loss"], rel=1e-4)
    assert val_loss == pytest.approx(min(row["val_loss"] for row in trained.history), rel=1e-4)


def test_early_stopping_stops_and_restores_best(learnable: PreparedData) -> None:
    params = SMALL.replace(epochs=200, patience=2, learning_rate=0.05)
    result = train_model(learnable, params, threads=1)
    assert result.stopped_early
    assert result.epochs_run < params.epochs
    assert result.best_epoch == result.epochs_run - params.patience
    best = min(result.history, key=lambda row: row["val_loss"])
    assert best["epoch"] == result.best_epoch
    predicted = predict_scaled(result.model, learnable.X_val)
    val_loss = float(np.mean((predicted.astype(np.float64) - learnable.y_val) ** 2))
    assert val_loss == pytest.approx(best["val_loss"], rel=1e-4)


def test_patience_zero_runs_every_epoch(learnable: PreparedData) -> None:
    params = SMALL.replace(epochs=12, patience=0, learning_rate=0.05)
    result = train_model(learnable, params, threads=1)
    assert result.epochs_run == 12 and len(result.history) == 12
    assert not result.stopped_early


def test_same_seed_same_history(learnable: PreparedData) -> None:
    params = SMALL.replace(epochs=4, num_layers=2, dropout=0.2, hidden_size=8)
    first = train_model(learnable, params, threads=1)
    second = train_model(learnable, params, threads=1)
    assert first.history == second.history
    np.testing.assert_array_equal(
        predict_scaled(first.model, learnable.X_test),
        predict_scaled(second.model, learnable.X_test),
    )
    other = train_model(learnable, params.replace(seed=2), threads=1)
    assert other.history != first.history


def test_training_leaves_the_global_rng_alone(learnable: PreparedData) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_model(learnable, SMALL.replace(epochs=1), threads=1)
    torch.testing.assert_close(torch.rand(3), expected)


def test_heap_tuning_is_undone_after_training_even_when_it_raises(
    learnable: PreparedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """glibc's allocator is tuned for the training only; the defaults come back after it."""
    calls: list[tuple[int, int]] = []

    def record(parameter: int, value: int) -> int:
        calls.append((parameter, value))
        return 1

    monkeypatch.setattr(training, "_mallopt", lambda: record)
    train_model(learnable, SMALL.replace(epochs=1), threads=1)
    assert calls[-2:] == [
        (training._M_MMAP_MAX, training._DEFAULT_MMAP_MAX),
        (training._M_TRIM_THRESHOLD, training._DEFAULT_TRIM_THRESHOLD),
    ]
    calls.clear()

    def fail(_report: EpochReport) -> None:
        raise RuntimeError("a callback failed")

    with pytest.raises(RuntimeError):
        train_model(learnable, SMALL.replace(epochs=2), threads=1, callbacks=[fail])
    assert calls[0] == (training._M_MMAP_MAX, 0)
    assert calls[-1] == (training._M_TRIM_THRESHOLD, training._DEFAULT_TRIM_THRESHOLD)
    assert training._heap_users == 0


def test_callbacks_get_one_report_per_epoch(learnable: PreparedData) -> None:
    reports: list[EpochReport] = []
    counted: list[int] = []
    params = SMALL.replace(epochs=5)
    result = train_model(
        learnable, params, callbacks=[reports.append, lambda r: counted.append(r.epoch)]
    )
    assert [r.epoch for r in reports] == [1, 2, 3, 4, 5] == counted
    assert all(r.total_epochs == 5 for r in reports)
    for report, row in zip(reports, result.history, strict=True):
        assert report.train_loss == row["train_loss"] and report.val_loss == row["val_loss"]
        assert report.best_val_loss <= report.val_loss
    assert reports[-1].best_epoch == result.best_epoch
    assert all(a.elapsed_seconds <= b.elapsed_seconds for a, b in itertools.pairwise(reports))


def test_progress_bar_goes_to_stderr(
    learnable: PreparedData, capsys: pytest.CaptureFixture[str]
) -> None:
    train_model(learnable, SMALL.replace(epochs=2), show_progress=True)
    captured = capsys.readouterr()
    assert "training" in captured.err and captured.out == ""


def test_set_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert set_torch_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_torch_threads(None) == (os.cpu_count() or 1)
        with pytest.raises(InvalidParameterError, match="threads"):
            set_torch_threads(0)
    finally:
        torch.set_num_threads(before)


# --- prediction and evaluation --------------------------------------------------------------


def test_predict_scaled_shape_chunks_and_mode() -> None:
    model = LSTMForecaster(n_features=2, hidden_size=8, num_layers=1, horizon=3)
    model.train()
    X = np.random.default_rng(0).random((10, 6, 2))
    whole = predict_scaled(model, X)
    chunked = predict_scaled(model, X, batch_size=3)
    assert whole.shape == (10, 3) and whole.dtype == np.float32
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    assert model.training  # mode restored
    assert predict_scaled(model, X[:0]).shape == (0, 3)


def test_evaluation_lines_up_dates(learnable: PreparedData, trained: TrainResult) -> None:
    evaluation = evaluate_model(trained.model, learnable, "recursive", 1)
    prices = learnable.prices
    n = len(learnable.test_dates)
    assert evaluation.dates.equals(learnable.test_dates)
    assert evaluation.actual.shape == evaluation.predicted.shape == evaluation.persistence.shape
    np.testing.assert_array_equal(evaluation.actual, prices.loc[learnable.test_dates])
    previous = prices.shift(1).loc[learnable.test_dates]  # yesterday's close, same dates
    np.testing.assert_array_equal(evaluation.persistence, previous)
    first = evaluation.metrics.next_day
    assert first is not None and first.n == n
    assert first.persistence == score(evaluation.actual, evaluation.persistence)
    assert first.model == score(evaluation.actual, evaluation.predicted)


# --- TrainParams ----------------------------------------------------------------------------


def test_defaults_are_valid_and_round_trip() -> None:
    params = TrainParams().validate()
    assert TrainParams.from_dict(params.to_dict()) == params
    assert set(params.to_dict()) == set(PARAM_RANGES) | set(PARAM_CHOICES)
    assert TrainParams.from_dict({"epochs": 5}).epochs == 5
    converted = TrainParams.from_dict({"learning_rate": 1})
    assert converted.learning_rate == 1.0 and type(converted.to_dict()["learning_rate"]) is float


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("epochs", 0),
        ("epochs", 1001),
        ("patience", -1),
        ("sequence_length", 1),
        ("hidden_size", 0),
        ("num_layers", 9),
        ("dropout", 0.95),
        ("dropout", float("nan")),
        ("learning_rate", 0.0),
        ("learning_rate", 2.0),
        ("batch_size", 0),
        ("seed", -1),
        ("seed", 2**32),
        ("epochs", True),
        ("epochs", "10"),
        ("epochs", 10.5),
        ("learning_rate", "0.01"),
        ("dropout", None),
        ("target", "returns"),
        ("strategy", "both"),
        ("horizon", 0),
        ("horizon", 31),
    ],
)
def test_bad_values_name_the_parameter(name: str, value: object) -> None:
    with pytest.raises(InvalidParameterError, match=name) as caught:
        TrainParams(**{name: value}).validate()
    assert repr(value) in str(caught.value)
    with pytest.raises(InvalidParameterError, match=name):
        TrainParams.from_dict({name: value})


def test_range_message_is_readable() -> None:
    with pytest.raises(InvalidParameterError, match="epochs must be between 1 and 1000, got 0"):
        TrainParams(epochs=0).validate()
    with pytest.raises(InvalidParameterError, match="between 0 and 4294967295"):
        TrainParams(seed=-1).validate()


def test_unknown_key_is_rejected_with_the_known_ones() -> None:
    with pytest.raises(InvalidParameterError, match="epoch_count") as caught:
        TrainParams.from_dict({"epoch_count": 3})
    assert "learning_rate" in str(caught.value)


def test_train_model_validates_params(learnable: PreparedData) -> None:
    with pytest.raises(InvalidParameterError, match="batch_size"):
        train_model(learnable, SMALL.replace(batch_size=0))


# --- chunked training -------------------------------------------------------------------------


def test_the_series_behind_consecutive_windows_is_recovered(learnable: PreparedData) -> None:
    X = torch.as_tensor(learnable.X_train)
    series = training._chunked_series(X)
    assert series is not None and series.shape[0] == X.shape[0] + SEQ - 1
    for i in (0, 7, X.shape[0] - 1):
        assert torch.equal(series[i : i + SEQ], X[i])
    assert training._chunked_series(X[::2]) is None  # not one-day steps: window by window


class RecordingModel(torch.nn.Module):
    """Outputs its last input feature at every step, and records what each chunk asked."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward_steps(self, x: torch.Tensor, first_step: int) -> torch.Tensor:
        return x[:, first_step:, -1:] + self.weight

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.seen.append((output.detach(), target))
        return ((output - target) ** 2).mean()


def test_every_chunked_forecast_is_scored_against_its_own_origins_target(
    learnable: PreparedData,
) -> None:
    """Step j of a chunk is the origin whose window ends on that day: its output is made
    from that day and earlier, and compared with that origin's target, never a neighbour's."""
    X = torch.as_tensor(learnable.X_train)
    y = torch.as_tensor(learnable.y_train)
    model = RecordingModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    series = training._chunked_series(X)
    assert series is not None
    training._chunk_epoch(model, optimizer, series, y, 20, 1, torch.Generator().manual_seed(0))
    covered = 0
    for output, target in model.seen:
        last_inputs = output[:, 0]  # the window's last day, as the fake model returns it
        matches = (X[:, -1, -1][None, :] == last_inputs[:, None]).nonzero()
        origins = matches[:, 1]
        assert len(origins) == len(last_inputs)
        torch.testing.assert_close(target, y[origins])
        covered += len(origins)
    assert covered >= X.shape[0] - 2 * 20  # every origin but a random offset at the ends


def test_a_chunk_forecast_never_reads_a_later_day() -> None:
    model = LSTMForecaster(n_features=2, hidden_size=8, num_layers=2, dropout=0.0, horizon=3)
    model.eval()
    x = torch.randn(1, 40, 2)
    changed = x.clone()
    changed[:, 25:] += 5.0
    with torch.no_grad():
        before, after = model.forward_steps(x, 10), model.forward_steps(changed, 10)
        assert torch.equal(before[:, :15], after[:, :15])  # steps 10..24 saw nothing later
        assert not torch.allclose(before[:, 15:], after[:, 15:])
        torch.testing.assert_close(model.forward_steps(x, 39)[:, 0], model(x))


def test_chunked_training_learns_like_window_training(learnable: PreparedData) -> None:
    windowed = train_model(learnable, SMALL.replace(chunk_length=0), threads=1)
    chunked = train_model(learnable, SMALL.replace(chunk_length=20, epochs=60), threads=1)
    best = {
        name: min(h["val_loss"] for h in r.history)
        for name, r in (("windowed", windowed), ("chunked", chunked))
    }
    assert best["chunked"] < 1.5 * best["windowed"], best
