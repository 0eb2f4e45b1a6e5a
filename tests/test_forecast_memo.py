"""Remembered forecasts (``ForecastMemo``): the same answer without the network, never stale."""

from __future__ import annotations

import pytest
from api_helpers import TINY_PARAMS

from stock_lstm.models.forecasting import LoadedModel, make_forecast
from stock_lstm.models.training import TrainParams
from stock_lstm.workflows import AppContext, load_prices, register_outcome, train_ticker


@pytest.fixture
def loaded(ctx: AppContext) -> LoadedModel:
    outcome = train_ticker(ctx, "AAPL", TrainParams.from_dict(TINY_PARAMS))
    record = register_outcome(ctx, outcome, force=True)
    return ctx.model_cache.get(record)


def count_forward_passes(loaded: LoadedModel) -> list[int]:
    calls: list[int] = []
    loaded.model.register_forward_hook(lambda *_args: calls.append(1))
    return calls


def test_the_same_question_is_answered_without_running_the_network(
    ctx: AppContext, loaded: LoadedModel
) -> None:
    prices, _sync = load_prices(ctx, "AAPL")
    calls = count_forward_passes(loaded)
    first = make_forecast(loaded, prices, 5)
    second = make_forecast(loaded, prices.copy(), 5)
    assert len(calls) == 1
    assert second == first
    make_forecast(loaded, prices, 3)  # another number of days is another question
    assert len(calls) == 2


def test_a_changed_price_is_a_new_forecast(ctx: AppContext, loaded: LoadedModel) -> None:
    prices, _sync = load_prices(ctx, "AAPL")
    calls = count_forward_passes(loaded)
    before = make_forecast(loaded, prices, 5)
    moved = prices.copy()
    moved.iloc[-10, moved.columns.get_loc("close")] *= 1.05  # inside the input window
    after = make_forecast(loaded, moved, 5)
    assert len(calls) == 2
    assert after.predictions != before.predictions


def test_callers_cannot_change_what_is_remembered(ctx: AppContext, loaded: LoadedModel) -> None:
    prices, _sync = load_prices(ctx, "AAPL")
    first = make_forecast(loaded, prices, 5)
    first.warnings.append("a caller's note")
    first.predictions.clear()
    again = make_forecast(loaded, prices, 5)
    assert "a caller's note" not in again.warnings
    assert len(again.predictions) == 5
