"""The market-wide input (``inputs="ohlcv_market"``): the market ticker's same-day return and
range beside the ticker's own, causal, scale-free, saved without pickle, and synced through
the cache like any ticker so ``predict`` has it on the forecast day."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from api_helpers import TINY_PARAMS

from stock_lstm.config import Settings
from stock_lstm.data.encoding import (
    MARKET_COLUMNS,
    MarketFeaturesEncoder,
    encoder_from_state,
    encoder_state,
)
from stock_lstm.data.frames import normalize_ohlcv
from stock_lstm.data.market import MARKET_TICKER, attach_market
from stock_lstm.data.preprocessing import prepare_data
from stock_lstm.data.synthetic import synthetic_prices, write_fixture_folder, write_flat_csv
from stock_lstm.errors import StockLSTMError
from stock_lstm.models.training import TrainParams
from stock_lstm.workflows import AppContext, predict_ticker, register_outcome, train_ticker

PARAMS = TrainParams.from_dict({**TINY_PARAMS, "horizon": 3, "inputs": "ohlcv_market"})


def _frame(ticker: str, seed: int, rows: int = 400) -> pd.DataFrame:
    return normalize_ohlcv(synthetic_prices(ticker, rows=rows, seed=seed), ticker).frame


def _columns(frame: pd.DataFrame) -> np.ndarray:
    return frame.loc[:, ["open", "high", "low", "close", "volume", *MARKET_COLUMNS]].to_numpy()


def test_the_market_joins_by_date_and_a_missing_day_is_unknown_not_carried() -> None:
    ticker, market = _frame("AAA", 1), _frame(MARKET_TICKER, 2)
    gap = market.index[100]
    joined = attach_market(ticker, market.drop(index=gap))
    assert list(joined.index) == list(ticker.index)
    assert joined.loc[gap, list(MARKET_COLUMNS)].tolist() == [0.0, 0.0, 0.0]
    day = market.index[50]
    assert joined.loc[day, "market_close"] == market.loc[day, "close"]
    encoder = MarketFeaturesEncoder().fit(_columns(joined)[:300])
    inputs = encoder.encode_inputs(_columns(joined))
    row = ticker.index.get_loc(gap)
    # The day without a market row, and the next one (no previous close), read as the mean.
    assert inputs[row, 5:].tolist() == [0.0, 0.0] and inputs[row + 1, 5] == 0.0
    assert inputs.shape == (len(ticker), 7) and np.isfinite(inputs).all()


def test_the_market_input_is_causal_and_scale_free() -> None:
    ticker, market = _frame("AAA", 1), _frame(MARKET_TICKER, 2)
    joined = attach_market(ticker, market)
    encoder = MarketFeaturesEncoder().fit(_columns(joined)[:300])
    base = encoder.encode_inputs(_columns(joined))
    shocked = market.copy()
    shocked.iloc[250:, :4] *= 3.0  # a market that moves after row 249 ...
    after = encoder.encode_inputs(_columns(attach_market(ticker, shocked)))
    np.testing.assert_array_equal(after[:250], base[:250])  # ... changes no earlier input
    assert not np.allclose(after[250:251, 5], base[250:251, 5])
    scaled_ticker, scaled_market = ticker.copy(), market.copy()
    scaled_ticker[["open", "high", "low", "close"]] *= 100.0
    scaled_market[["open", "high", "low", "close"]] *= 100.0
    rescaled = attach_market(scaled_ticker, scaled_market)
    again = MarketFeaturesEncoder().fit(_columns(rescaled)[:300])
    np.testing.assert_allclose(again.encode_inputs(_columns(rescaled)), base, atol=1e-9)


def test_a_market_encoder_is_saved_as_numbers_and_rebuilt() -> None:
    joined = attach_market(_frame("AAA", 1), _frame(MARKET_TICKER, 2))
    data = prepare_data(joined, target="log_return", inputs="ohlcv_market", horizon=3)
    state = encoder_state(data.encoder)
    rebuilt = encoder_from_state(state)
    assert isinstance(rebuilt, MarketFeaturesEncoder) and len(state["mean"]) == 7  # type: ignore[arg-type]
    values = _columns(joined)
    np.testing.assert_array_equal(rebuilt.encode_inputs(values), data.encoder.encode_inputs(values))
    with pytest.raises(ValueError, match="'mean'"):
        encoder_from_state({**state, "mean": state["mean"][:5]})  # type: ignore[index]


def test_train_and_predict_sync_the_market_ticker_like_any_other(
    tmp_path: Path, database_url: str
) -> None:
    folder = write_fixture_folder(tmp_path / "prices", ("AAPL",))
    write_flat_csv(synthetic_prices(MARKET_TICKER, rows=600, seed=9), folder / "QQQ.csv")
    settings = Settings(
        database_url=database_url,
        source=f"csv:{folder}",
        models_dir=tmp_path / "models",
        reports_dir=tmp_path / "reports",
        torch_threads=1,
    )
    ctx = AppContext.create(settings)
    try:
        outcome = train_ticker(ctx, "AAPL", PARAMS)
        assert outcome.data.n_features == 7
        register_outcome(ctx, outcome, force=True)
        assert ctx.prices.status(MARKET_TICKER).rows == 600  # synced, then cached
        forecast = predict_ticker(ctx, "AAPL", 3)
        assert len(forecast.predictions) == 3
    finally:
        ctx.db.dispose()
    (folder / "QQQ.csv").unlink()
    # A fresh cache (the first one would serve its QQQ rows, stale but with a warning).
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    other = AppContext.create(settings.model_copy(update={"database_url": fresh}))
    try:
        with pytest.raises(StockLSTMError, match="read the market ticker QQQ"):
            train_ticker(other, "AAPL", PARAMS, force_sync=True)
    finally:
        other.db.dispose()
