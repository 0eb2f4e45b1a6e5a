"""The EDA statistics the notebooks show, and the figures they draw (built, drawn, closed)."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from collections.abc import Iterator
from datetime import date

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

from stock_lstm import plots
from stock_lstm.data.preprocessing import SplitFractions, prepare_data
from stock_lstm.data.synthetic import synthetic_prices
from stock_lstm.errors import InvalidParameterError, NotEnoughDataError
from stock_lstm.evaluation import eda
from stock_lstm.models.calendar import _calendar
from stock_lstm.models.forecasting import Forecast, ForecastPoint


def price_frame(rows: int = 300) -> pd.DataFrame:
    """A normalized price frame (lower-case columns, index ``date``) of synthetic prices."""
    frame = synthetic_prices("TEST", rows=rows).astype("float64")
    frame.columns = ["open", "high", "low", "close", "adj_close", "volume"]
    frame.index.name = "date"
    return frame


def nyse_sessions(start: str, end: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(_calendar("XNYS").sessions_in_range(start, end)).tz_localize(None)


# --- log returns, volatility, summary ---------------------------------------------------------


def test_log_returns_by_hand() -> None:
    days = pd.date_range("2024-01-01", periods=3, freq="D")
    returns = eda.log_returns(pd.Series([100.0, 110.0, 99.0], index=days))
    assert returns.name == "log_return"
    assert list(returns.index) == list(days[1:])
    np.testing.assert_allclose(returns.to_numpy(), [math.log(1.1), math.log(0.9)])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_log_returns_refuse_non_positive_or_missing_closes(bad: float) -> None:
    with pytest.raises(InvalidParameterError, match="positive closes"):
        eda.log_returns(pd.Series([100.0, bad, 101.0]))


def test_rolling_volatility_annualises_with_sqrt_252() -> None:
    returns = pd.Series([0.01, -0.01] * 10)
    daily = eda.rolling_volatility(returns, window=4, annualize=False)
    yearly = eda.rolling_volatility(returns, window=4)
    assert daily.iloc[:3].isna().all() and yearly.iloc[:3].isna().all()
    expected = np.std([0.01, -0.01, 0.01, -0.01], ddof=1)
    np.testing.assert_allclose(daily.iloc[3:], expected)
    np.testing.assert_allclose(yearly.iloc[3:], expected * math.sqrt(252))


@pytest.mark.parametrize("window", [1, 0, 2.5, True])
def test_rolling_volatility_rejects_bad_windows(window: object) -> None:
    with pytest.raises(InvalidParameterError, match="window"):
        eda.rolling_volatility(pd.Series([0.01, 0.02, 0.03]), window=window)  # type: ignore[arg-type]


def test_return_summary_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    returns = pd.Series(rng.standard_t(df=4, size=500) * 0.01)
    summary = eda.return_summary(returns)
    assert summary["n"] == 500
    assert summary["mean"] == pytest.approx(returns.mean())
    assert summary["std"] == pytest.approx(np.std(returns, ddof=1))
    assert summary["skew"] == pytest.approx(stats.skew(returns, bias=False))
    assert summary["excess_kurtosis"] == pytest.approx(
        stats.kurtosis(returns, fisher=True, bias=False)
    )
    assert summary["excess_kurtosis"] > 0.5  # Student t with 4 dof: fat tails show


def test_return_summary_needs_a_few_returns() -> None:
    with pytest.raises(NotEnoughDataError):
        eda.return_summary(pd.Series([0.01, 0.02, np.nan]))


# --- autocorrelation ---------------------------------------------------------------------------


def test_autocorrelation_by_hand() -> None:
    acf = eda.autocorrelation(pd.Series([1.0, 2.0, 3.0, 4.0]), max_lag=1)
    # centred: -1.5 -0.5 0.5 1.5; lag 1: (0.75 - 0.25 + 0.75) / 5
    assert list(acf.columns) == ["lag", "acf", "lower", "upper"]
    assert acf["acf"].iloc[0] == pytest.approx(0.25)
    assert acf["upper"].iloc[0] == pytest.approx(1.959964 / 2)
    assert acf["lower"].iloc[0] == pytest.approx(-1.959964 / 2)


def test_white_noise_stays_inside_the_band() -> None:
    noise = pd.Series(np.random.default_rng(7).normal(0, 0.01, size=2000))
    acf = eda.autocorrelation(noise, max_lag=20)
    assert list(acf["lag"]) == list(range(1, 21))
    np.testing.assert_allclose(acf["upper"], 1.959964 / math.sqrt(2000), rtol=1e-6)
    outside = ((acf["acf"] < acf["lower"]) | (acf["acf"] > acf["upper"])).sum()
    assert outside <= 2  # one in twenty by chance; this seed gives at most two


def test_autocorrelated_series_leaves_the_band() -> None:
    rng = np.random.default_rng(7)
    values = np.zeros(1000)
    for i in range(1, 1000):  # AR(1) with coefficient 0.6
        values[i] = 0.6 * values[i - 1] + rng.normal()
    acf = eda.autocorrelation(pd.Series(values), max_lag=3)
    assert acf["acf"].iloc[0] == pytest.approx(0.6, abs=0.08)
    assert acf["acf"].iloc[0] > acf["upper"].iloc[0]


def test_autocorrelation_needs_more_values_than_lags() -> None:
    with pytest.raises(NotEnoughDataError, match="max_lag"):
        eda.autocorrelation(pd.Series([0.1, 0.2, 0.3]), max_lag=5)
    with pytest.raises(InvalidParameterError):
        eda.autocorrelation(pd.Series([0.1, 0.2, 0.3]), max_lag=0)


# --- calendar gaps ------------------------------------------------------------------------------


def test_complete_nyse_series_has_no_gaps() -> None:
    gaps = eda.calendar_gaps(nyse_sessions("2019-01-02", "2019-06-28"), "AAPL")
    assert gaps.empty
    assert list(gaps.columns) == list(eda.GAP_COLUMNS)


def test_a_removed_session_is_reported_as_missing() -> None:
    sessions = nyse_sessions("2019-01-02", "2019-03-29")
    gaps = eda.calendar_gaps(sessions.drop(pd.Timestamp("2019-02-05")), "AAPL")
    assert gaps.to_dict("records") == [
        {
            "kind": eda.GAP_MISSING_SESSION,
            "first": date(2019, 2, 5),
            "last": date(2019, 2, 5),
            "count": 1,
            "calendar_days": 1,
        }
    ]


def test_consecutive_missing_sessions_form_one_run_and_a_long_gap() -> None:
    sessions = nyse_sessions("2019-01-02", "2019-03-29")
    week = nyse_sessions("2019-02-04", "2019-02-08")
    gaps = eda.calendar_gaps(sessions.difference(week), "MSFT")
    missing = gaps[gaps["kind"] == eda.GAP_MISSING_SESSION]
    assert missing[["first", "last", "count"]].to_dict("records") == [
        {"first": date(2019, 2, 4), "last": date(2019, 2, 8), "count": 5}
    ]
    long_gaps = gaps[gaps["kind"] == eda.GAP_LONG]
    assert long_gaps[["first", "last", "calendar_days"]].to_dict("records") == [
        {"first": date(2019, 2, 1), "last": date(2019, 2, 11), "calendar_days": 10}
    ]


def test_a_row_on_a_holiday_is_not_a_session() -> None:
    sessions = nyse_sessions("2019-01-02", "2019-02-28")
    holiday = pd.Timestamp("2019-01-21")  # Martin Luther King Jr. Day
    gaps = eda.calendar_gaps(sessions.append(pd.DatetimeIndex([holiday])), "AAPL")
    assert gaps[["kind", "first"]].to_dict("records") == [
        {"kind": eda.GAP_NOT_A_SESSION, "first": date(2019, 1, 21)}
    ]


def test_gaps_of_an_empty_index() -> None:
    assert eda.calendar_gaps(pd.DatetimeIndex([]), "AAPL").empty


# --- split dates ------------------------------------------------------------------------------


def test_split_dates_are_ordered_and_cover_every_row() -> None:
    index = price_frame(300).index
    split = eda.split_dates(index, 20)
    assert list(split) == ["train", "val", "test"]
    assert sum(part["rows"] for part in split.values()) == 300
    bounds = [
        split["train"]["first_date"],
        split["train"]["first_target"],
        split["train"]["last_date"],
        split["val"]["first_date"],
        split["val"]["last_date"],
        split["test"]["first_date"],
        split["test"]["last_date"],
    ]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)
    assert split["train"]["first_date"] == index[0].date()
    assert split["test"]["last_date"] == index[-1].date()
    # log-returns start on row 1, so the first full window ends on row 20 (the first origin)
    # and the first target is row 21; the last origin is the row before the slice's last row
    assert split["train"]["first_target"] == index[21].date()
    assert split["train"]["samples"] == split["train"]["rows"] - 21


@pytest.mark.parametrize(
    ("target", "horizon", "fractions"),
    [("price", 1, SplitFractions()), ("log_return", 5, SplitFractions(0.6, 0.2))],
)
def test_split_dates_match_what_training_uses(
    target: str, horizon: int, fractions: SplitFractions
) -> None:
    prices = price_frame(300)
    data = prepare_data(
        prices, sequence_length=20, fractions=fractions, target=target, horizon=horizon
    )
    split = eda.split_dates(
        prices.index,
        20,
        fractions,
        horizon=horizon,
        first_valid_row=data.encoder.first_valid_row,
    )
    assert split["train"]["last_date"] == data.train_end.date()
    assert split["val"]["last_date"] == data.val_end.date()
    for name in ("train", "val", "test"):
        dates = getattr(data, f"{name}_dates")
        assert split[name]["first_target"] == dates[0].date()
        assert split[name]["samples"] == len(dates)


def test_split_dates_refuse_a_series_too_short_for_training() -> None:
    with pytest.raises(NotEnoughDataError, match="sequence_length 60"):
        eda.split_dates(price_frame(100).index, 60)


# --- currency, baseline comparison ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ticker", "currency"),
    [("AAPL", "USD"), ("PETR4.SA", "BRL"), ("SAP.DE", "EUR"), ("^GSPC", "points")],
)
def test_quote_currency(ticker: str, currency: str) -> None:
    assert eda.quote_currency(ticker) == currency


def metrics(
    model: tuple[float, float, float],
    baseline: tuple[float, float, float],
    dm_p_value: float | None = None,
) -> dict:
    names = ("mae", "rmse", "mape")
    values: dict = {
        **dict(zip(names, model, strict=True)),
        "persistence": dict(zip(names, baseline, strict=True)),
        "n": 9,
    }
    if dm_p_value is not None:
        values["horizons"] = [
            {
                "horizon": 1,
                "n": 9,
                "rmae": model[0] / baseline[0],
                "model": dict(zip(names, model, strict=True)),
                "persistence": dict(zip(names, baseline, strict=True)),
                "directional_accuracy": 0.5,
                "dm_p_value": dm_p_value,
            }
        ]
    return values


def test_baseline_comparison_table() -> None:
    table = eda.baseline_comparison(metrics((1.0, 2.0, 0.5), (2.0, 2.5, 1.0)))
    assert list(table.index) == ["MAE", "RMSE", "MAPE"]
    assert list(table.columns) == ["unit", "model", "persistence", "ratio"]
    np.testing.assert_allclose(table["ratio"], [0.5, 0.8, 0.5])
    with_drift = eda.baseline_comparison(
        {**metrics((1.0, 2.0, 0.5), (2.0, 2.5, 1.0)), "drift": {"mae": 3, "rmse": 4, "mape": 5}}
    )
    assert list(with_drift["drift"]) == [3.0, 4.0, 5.0]
    in_dollars = eda.baseline_comparison(metrics((1, 2, 3), (1, 2, 3)), currency="USD")
    assert list(in_dollars["unit"]) == ["USD", "USD", "%"]


@pytest.mark.parametrize(
    ("model", "p_value", "expected"),
    [
        # Lower errors without a test are not "better": a verdict needs one.
        ((1.0, 2.0, 0.5), None, "no different from persistence beyond chance (not tested)"),
        ((1.0, 2.0, 0.5), 0.01, "better than persistence (Diebold-Mariano p = 0.010)"),
        ((1.0, 2.0, 0.5), 0.40, "no different from persistence beyond chance"),  # noise
        ((2.5, 3.0, 1.2), 0.01, "worse than persistence (Diebold-Mariano p = 0.010)"),
        ((1.9, 2.6, 1.0), 0.30, "no different from persistence beyond chance"),
    ],
)
def test_baseline_verdict(
    model: tuple[float, float, float], p_value: float | None, expected: str
) -> None:
    verdict = eda.baseline_verdict(metrics(model, (2.0, 2.5, 1.0), p_value))
    assert verdict.startswith("The model is ") and expected in verdict, verdict


def test_one_rule_decides_every_verdict() -> None:
    """The index's "0.994 better" beside p = 0.255 is the case: a ratio is never a verdict."""
    from stock_lstm.evaluation.verdicts import paired_verdict, point_verdict

    assert point_verdict(0.994, 0.255).word == "no difference"
    assert point_verdict(0.994, 0.01).word == "better"
    assert point_verdict(1.02, 0.01).short() == "worse (p = 0.010)"
    # Never rounded across the level: 0.0496 is "better", and shown below 0.05.
    assert point_verdict(0.98, 0.0496).short() == "better (p = 0.0496)"
    assert point_verdict(0.98, 0.04999).short() == "better (p = 0.04999)"
    assert point_verdict(0.98, 0.0504).short() == "no difference (p = 0.050)"
    assert point_verdict(0.9, None).short() == "no difference (not tested)"
    assert point_verdict(0.9, float("nan")).word == "no difference"
    lower = paired_verdict([1.0 + k / 100 for k in range(20)], [1.5 + k / 100 for k in range(20)])
    assert lower.word == "better" and lower.p_value is not None and lower.p_value < 0.001
    same = paired_verdict([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.1, 1.9, 3.1, 3.9, 5.1, 5.9])
    assert same.word == "no difference"


def test_baseline_comparison_names_what_is_missing() -> None:
    with pytest.raises(InvalidParameterError, match="persistence"):
        eda.baseline_comparison({"mae": 1.0, "rmse": 1.0, "mape": 1.0})


def test_horizon_table() -> None:
    table = eda.horizon_table(metrics((1.0, 2.0, 0.5), (2.0, 2.5, 1.0), dm_p_value=0.2))
    assert list(table.index) == [1]
    assert table.loc[1, "rmae"] == pytest.approx(0.5)
    assert table.loc[1, "persistence_mae"] == pytest.approx(2.0)
    assert np.isnan(table.loc[1, "coverage"])  # not recorded
    assert eda.horizon_table({}).empty


# --- plots -------------------------------------------------------------------------------------


@pytest.fixture
def figures() -> Iterator[list[Figure]]:
    """Collects the figures a test builds; renders each to PNG, then closes them all."""
    import matplotlib.pyplot as plt

    built: list[Figure] = []
    yield built
    for fig in built:
        fig.savefig(io.BytesIO(), format="png")  # drawing must work too, not just building
        plt.close(fig)
    assert plt.get_fignums() == []  # nothing was left registered with pyplot


def keep(figures: list[Figure], fig: Figure) -> Figure:
    assert isinstance(fig, Figure)
    figures.append(fig)
    return fig


def test_price_and_volume(figures: list[Figure]) -> None:
    fig = keep(figures, plots.price_and_volume(price_frame(), ticker="TEST", currency="USD"))
    price_ax, volume_ax = fig.axes
    assert len(price_ax.get_lines()) == 1 and len(volume_ax.collections) == 1
    assert price_ax.get_ylabel() == "Close (USD)"
    assert "TEST" in price_ax.get_title()


def test_returns_vs_normal(figures: list[Figure]) -> None:
    returns = eda.log_returns(price_frame()["close"])
    fig = keep(figures, plots.returns_vs_normal(returns, ticker="TEST", bins=30))
    linear_ax, log_ax = fig.axes
    for ax in (linear_ax, log_ax):
        assert len(ax.get_lines()) == 1  # the normal pdf
        assert len(ax.patches) == 30  # the histogram bars
        assert ax.get_xlabel() == "Daily log-return"
    assert (linear_ax.get_yscale(), log_ax.get_yscale()) == ("linear", "log")


def test_rolling_volatility_plot(figures: list[Figure]) -> None:
    returns = eda.log_returns(price_frame()["close"])
    volatility = eda.rolling_volatility(returns, window=21)
    fig = keep(figures, plots.rolling_volatility(volatility, ticker="TEST", window=21))
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 2  # volatility and its median
    assert "%" in ax.get_ylabel()


def test_autocorrelation_one_panel_per_series(figures: list[Figure]) -> None:
    returns = eda.log_returns(price_frame()["close"])
    acf = eda.autocorrelation(returns, max_lag=10)
    single = keep(figures, plots.autocorrelation(acf))
    assert len(single.axes) == 1 and len(single.axes[0].containers) == 1  # one stem plot
    double = keep(
        figures,
        plots.autocorrelation(
            {"returns": acf, "squared": eda.autocorrelation(returns**2, max_lag=10)},
            ticker="TEST",
        ),
    )
    assert len(double.axes) == 2
    assert all(len(ax.collections) >= 1 for ax in double.axes)  # the confidence band


def test_split_overview(figures: list[Figure]) -> None:
    prices = price_frame()
    split = eda.split_dates(prices.index, 20)
    fig = keep(figures, plots.split_overview(prices["close"], split, ticker="TEST"))
    (ax,) = fig.axes
    assert len(ax.patches) == 3  # train, validation, test shading
    assert len(ax.get_lines()) == 2  # close and the first-target marker
    assert ax.get_ylabel() == "Close (price units)"


def test_loss_curves(figures: list[Figure]) -> None:
    history = [
        {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.5 / epoch + 0.01 * epoch}
        for epoch in range(1, 16)
    ]
    fig = keep(figures, plots.loss_curves(history, best_epoch=12, ticker="TEST"))
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 3  # training, validation, best epoch
    assert list(lines[2].get_xdata()) == [12, 12]
    assert ax.get_yscale() == "log"  # the losses span more than a factor 10
    flat = [{"epoch": e, "train_loss": 0.6 - 0.01 * e, "val_loss": 0.62} for e in range(1, 6)]
    flat_fig = keep(figures, plots.loss_curves(flat, best_epoch=1))
    assert flat_fig.axes[0].get_yscale() == "linear"
    assert flat_fig.axes[0].get_ylabel() == "MSE on scaled targets"


def test_loss_curves_name_the_heads_loss_and_keep_a_negative_likelihood_linear(
    figures: list[Figure],
) -> None:
    """A Student-t head's loss is a negative log-likelihood: it can fall below zero, where a
    log axis would drop the points, and it is not an MSE."""
    from stock_lstm.models.lstm import LSTMForecaster

    head = LSTMForecaster(horizon=2, quantiles=(0.1, 0.5, 0.9), distribution="student_t")
    history = [
        {"epoch": e, "train_loss": 5.0 - 1.6 * e, "val_loss": 4.0 - 1.2 * e} for e in range(1, 6)
    ]
    fig = keep(figures, plots.loss_curves(history, best_epoch=5, loss_name=head.loss_name))
    assert fig.axes[0].get_ylabel() == "negative log-likelihood on scaled targets"
    assert fig.axes[0].get_yscale() == "linear"
    assert LSTMForecaster(horizon=2, quantiles=(0.1, 0.5, 0.9)).loss_name == "pinball loss"


def test_test_forecast(figures: list[Figure]) -> None:
    dates = pd.bdate_range("2024-01-02", periods=20)
    actual = np.linspace(100, 110, 20)
    fig = keep(
        figures,
        plots.test_forecast(
            dates,
            actual,
            actual + 0.5,
            np.roll(actual, 1),
            ticker="TEST",
            currency="USD",
            lower=actual - 1,
            upper=actual + 2,
            interval_level=0.9,
        ),
    )
    price_ax, error_ax = fig.axes
    assert len(price_ax.get_lines()) == 3  # actual, model, persistence
    assert len(price_ax.collections) == 1  # the interval band
    assert len(error_ax.get_lines()) == 2  # absolute errors of model and persistence
    np.testing.assert_allclose(error_ax.get_lines()[0].get_ydata(), 0.5)
    assert "LSTM (next day)" in price_ax.get_legend_handles_labels()[1]
    gru = keep(
        figures, plots.test_forecast(dates, actual, actual, actual, ticker="T", model_name="GRU")
    )
    assert "GRU (next day)" in gru.axes[0].get_legend_handles_labels()[1]


def test_forecast_on_history(figures: list[Figure]) -> None:
    history = price_frame()["close"].iloc[-60:]
    last = history.index[-1].date()
    forecast = Forecast(
        ticker="TEST",
        version_id="TEST_20240101_000000",
        last_date=last,
        last_close=float(history.iloc[-1]),
        predictions=[
            ForecastPoint(day.date(), 100.0 + i, lower=99.0, upper=102.0 + i)
            for i, day in enumerate(pd.bdate_range(last, periods=6)[1:])
        ],
        interval_level=0.9,
    )
    fig = keep(figures, plots.forecast_on_history(history, forecast, currency="USD"))
    ax, zoom = fig.axes
    forecast_line = ax.get_lines()[1]
    assert len(forecast_line.get_ydata()) == 6  # joined at the last close, then 5 points
    assert len(ax.collections) == 2  # the interval cone and the persistence line
    assert "TEST" in ax.get_title()
    # The zoom shows 15 trading days of history and the forecast, all of its band in view.
    left, right = zoom.get_xlim()
    assert right - left < 30 < ax.get_xlim()[1] - ax.get_xlim()[0]
    assert zoom.get_ylim()[1] >= 102.0 + 4
    without_interval = Forecast(
        "TEST",
        "v",
        last,
        100.0,
        [ForecastPoint((history.index[-1] + pd.Timedelta(days=1)).date(), 101.0)],
    )
    bare = keep(figures, plots.forecast_on_history(history, without_interval))
    assert len(bare.axes[0].collections) == 1  # only the persistence line


def test_the_cli_does_not_import_matplotlib() -> None:
    code = "import sys, stock_lstm.cli; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_horizon_table_keeps_only_the_asked_horizons() -> None:
    rows = {
        "horizons": [
            {"horizon": h, "model": {"mae": 1.0}, "persistence": {"mae": 2.0}, "rmae": 0.5}
            for h in range(1, 13)
        ]
    }
    table = eda.horizon_table(rows, horizons=eda.READ_HORIZONS)
    assert list(table.index) == [1, 2, 3, 4, 5, 10]


def test_coverage_lines_have_one_colour_per_forecaster(figures: list[Figure]) -> None:
    """Every interval forecaster gets its own colour (two oranges once hid EWMA)."""
    from stock_lstm.evaluation.intervals import FORECASTER_LABELS

    names = list(FORECASTER_LABELS.values())
    coverage = pd.DataFrame(np.full((5, len(names)), 0.9), index=pd.RangeIndex(1, 6), columns=names)
    fig = plots.coverage_and_pit(coverage, np.linspace(0.05, 0.95, 50))
    figures.append(fig)
    lines = [line for line in fig.axes[0].get_lines() if line.get_label() in names]
    assert len({line.get_color() for line in lines}) == len(names)
