"""Exploratory statistics of a daily price series, as small pure functions the notebooks call.

Everything here takes pandas objects indexed by trading day and returns plain values or frames,
so the notebooks only narrate and plot: returns, volatility, autocorrelation, calendar gaps,
where the split falls, and the model-versus-persistence table of the training report.
Returns are daily log-returns (dimensionless); volatility is their standard deviation,
annualised with ``sqrt(TRADING_DAYS_PER_YEAR)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Literal

import numpy as np
import pandas as pd

from stock_lstm.data.preprocessing import (
    SplitFractions,
    minimum_rows,
    origins_between,
    split_bounds,
)
from stock_lstm.errors import InvalidParameterError, NotEnoughDataError
from stock_lstm.evaluation.metrics import POINT_METRICS
from stock_lstm.models.records import TrainingMetrics

#: Trading sessions in a year, the usual factor to annualise daily volatility.
TRADING_DAYS_PER_YEAR = 252
#: Two-sided 95 % quantile of the standard normal, for the white-noise band of an ACF.
NORMAL_95 = 1.959963984540054
#: Consecutive rows further apart than this many calendar days are reported as a long gap
#: (a weekend plus a holiday is at most 4 days; more means missing data or a trading halt).
LONG_GAP_CALENDAR_DAYS = 5

GAP_MISSING_SESSION = "missing session"
GAP_NOT_A_SESSION = "not a session"
GAP_LONG = "long gap"
GAP_COLUMNS = ("kind", "first", "last", "count", "calendar_days")

#: ISO 10383 exchange (as ``stock_lstm.models.calendar`` maps tickers) -> quote currency.
EXCHANGE_CURRENCY: dict[str, str] = {
    "XNYS": "USD",
    "BVMF": "BRL",
    "XLON": "GBp",  # London listings are quoted in pence on Yahoo
    "XTSE": "CAD",
    "XETR": "EUR",
    "XFRA": "EUR",
    "XPAR": "EUR",
    "XAMS": "EUR",
    "XMIL": "EUR",
    "XMAD": "EUR",
    "XSWX": "CHF",
    "XTKS": "JPY",
    "XHKG": "HKD",
    "XASX": "AUD",
    "XBOM": "INR",
    "XKRX": "KRW",
    "XSHG": "CNY",
    "XMEX": "MXN",
}


def quote_currency(ticker: str) -> str:
    """The unit a ticker's prices are in, for axis labels: ``"USD"``, ``"BRL"`` (``PETR4.SA``).

    Derived from the exchange the ticker's Yahoo suffix maps to; indices (``^GSPC``) are in
    ``"points"`` and currency pairs (``EURUSD=X``) are an exchange ``"rate"``.
    """
    from stock_lstm.models.calendar import exchange_for_ticker
    from stock_lstm.tickers import validate_ticker

    symbol = validate_ticker(ticker)
    if symbol.startswith("^"):
        return "points"
    if symbol.endswith("=X"):
        return "rate"
    return EXCHANGE_CURRENCY.get(exchange_for_ticker(symbol), "price units")


def log_returns(close: pd.Series) -> pd.Series:
    """Daily log-returns ``log(close_t / close_{t-1})``, one fewer row than ``close``.

    ``close`` must be positive prices indexed by trading day (ascending). The result is named
    ``log_return`` and indexed by the later day of each pair.
    """
    values = pd.Series(close, dtype="float64")
    if values.isna().any() or (values <= 0).any():
        raise InvalidParameterError(
            "log_returns needs positive closes without gaps (NaN or <= 0 found): "
            "re-sync the ticker's prices"
        )
    returns = np.log(values).diff().iloc[1:]
    returns.name = "log_return"
    return returns


def rolling_volatility(
    returns: pd.Series, window: int = 21, *, annualize: bool = True
) -> pd.Series:
    """Standard deviation of ``returns`` over the last ``window`` trading days (21 ~ a month).

    With ``annualize`` the daily figure is scaled by ``sqrt(252)``, so 0.25 reads as 25 % a
    year. The first ``window - 1`` values are NaN (not enough history yet).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise InvalidParameterError(f"window must be a whole number of days >= 2, got {window!r}")
    volatility = pd.Series(returns, dtype="float64").rolling(window).std()
    if annualize:
        volatility = volatility * math.sqrt(TRADING_DAYS_PER_YEAR)
    volatility.name = "annualized_volatility" if annualize else "volatility"
    return volatility


def autocorrelation(
    returns: pd.Series, max_lag: int = 20, *, band: Literal["white_noise", "robust"] = "white_noise"
) -> pd.DataFrame:
    """Sample autocorrelation at lags ``1..max_lag`` with a 95 % band for "no correlation".

    Returns columns ``lag, acf, lower, upper``. ``band="white_noise"``: ``-/+ 1.96 / sqrt(n)``,
    right for independent values (e.g. squared returns, whose correlation *is* the
    question). ``band="robust"``: the heteroskedasticity-robust band ``-/+ 1.96 *
    sqrt(sum c_t^2 c_{t-k}^2) / sum c_t^2`` (``c`` centred; Taylor 1984, Lo & MacKinlay
    1989), right for returns: volatility clustering makes the white-noise band far too
    narrow for them, so 8 lags in 20 "outside" meant nothing. Within the robust band, about
    one lag in twenty falls outside by chance alone. statsmodels' ``acf`` offers only
    Bartlett's and the white-noise band, hence these few lines. NaNs are dropped first.
    """
    values = pd.Series(returns, dtype="float64").dropna().to_numpy()
    n = values.shape[0]
    if isinstance(max_lag, bool) or not isinstance(max_lag, int) or max_lag < 1:
        raise InvalidParameterError(f"max_lag must be a whole number >= 1, got {max_lag!r}")
    if band not in ("white_noise", "robust"):
        raise InvalidParameterError(f"band must be 'white_noise' or 'robust', got {band!r}")
    if n <= max_lag + 1:
        raise NotEnoughDataError(
            f"{n} returns are too few for {max_lag} lags: use a smaller max_lag or more history"
        )
    centered = values - values.mean()
    denominator = float(np.dot(centered, centered))
    lags = np.arange(1, max_lag + 1)
    if denominator == 0.0:
        acf = np.zeros(max_lag)
    else:
        acf = np.array([np.dot(centered[:-lag], centered[lag:]) / denominator for lag in lags])
    if band == "robust" and denominator > 0.0:
        squared = centered**2
        half = (
            NORMAL_95
            * np.array([math.sqrt(float(np.dot(squared[:-lag], squared[lag:]))) for lag in lags])
            / denominator
        )
    else:
        half = np.full(max_lag, NORMAL_95 / math.sqrt(n))
    return pd.DataFrame({"lag": lags, "acf": acf, "lower": -half, "upper": half})


def return_summary(returns: pd.Series) -> dict[str, float | int]:
    """Mean, standard deviation, skewness and excess kurtosis of daily log-returns.

    A normal distribution has skew 0 and excess kurtosis 0; daily stock returns usually show
    excess kurtosis well above 0 (fat tails: big moves are more common than a normal implies).
    Skew and kurtosis are the bias-corrected sample estimates pandas uses.
    """
    values = pd.Series(returns, dtype="float64").dropna()
    if len(values) < 4:
        raise NotEnoughDataError(
            f"{len(values)} returns are too few to describe (need at least 4): sync more history"
        )
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "skew": float(values.skew()),
        "excess_kurtosis": float(values.kurt()),
        "n": len(values),
    }


def _as_day_index(index: Sequence[Any] | pd.Index) -> pd.DatetimeIndex:
    days = pd.DatetimeIndex(index)
    if days.tz is not None:
        days = days.tz_localize(None)
    return days.normalize().unique().sort_values()


def _runs(positions: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive integer runs in sorted ``positions`` as ``(first, last)`` pairs."""
    if positions.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [positions.size - 1]))
    return [(int(positions[s]), int(positions[e])) for s, e in zip(starts, ends, strict=True)]


def calendar_gaps(index: Sequence[Any] | pd.Index, ticker: str) -> pd.DataFrame:
    """Where a price series disagrees with its exchange's calendar, one row per finding.

    Columns ``kind, first, last, count, calendar_days`` (dates as ``datetime.date``):

    * ``missing session``: a run of ``count`` consecutive exchange sessions with no price row,
      from ``first`` to ``last``.
    * ``not a session``: a price row on a day the exchange was closed (``count`` 1), typical of
      synthetic or forward-filled data.
    * ``long gap``: consecutive rows ``first`` -> ``last`` more than ``LONG_GAP_CALENDAR_DAYS``
      calendar days apart (``calendar_days`` apart), whatever the calendar says.

    Only the span the exchange calendar covers is compared with it (``exchange_calendars``
    publishes about 20 years back); long gaps are checked over the whole series.
    """
    from stock_lstm.models.calendar import _calendar, exchange_for_ticker
    from stock_lstm.tickers import validate_ticker

    days = _as_day_index(index)
    rows: list[dict[str, Any]] = []
    if len(days):
        calendar = _calendar(exchange_for_ticker(validate_ticker(ticker)))
        first = max(days[0], pd.Timestamp(calendar.first_session))
        last = min(days[-1], pd.Timestamp(calendar.last_session))
        if first <= last:
            sessions = pd.DatetimeIndex(calendar.sessions_in_range(first, last))
            sessions = _as_day_index(sessions)
            missing = np.flatnonzero(~sessions.isin(days))
            for start, end in _runs(missing):
                rows.append(
                    {
                        "kind": GAP_MISSING_SESSION,
                        "first": sessions[start].date(),
                        "last": sessions[end].date(),
                        "count": end - start + 1,
                        "calendar_days": (sessions[end] - sessions[start]).days + 1,
                    }
                )
            in_span = days[(days >= first) & (days <= last)]
            for day in in_span[~in_span.isin(sessions)]:
                rows.append(
                    {
                        "kind": GAP_NOT_A_SESSION,
                        "first": day.date(),
                        "last": day.date(),
                        "count": 1,
                        "calendar_days": 1,
                    }
                )
        steps = np.diff(days.to_numpy()).astype("timedelta64[D]").astype(int)
        for position in np.flatnonzero(steps > LONG_GAP_CALENDAR_DAYS):
            rows.append(
                {
                    "kind": GAP_LONG,
                    "first": days[position].date(),
                    "last": days[position + 1].date(),
                    "count": 1,
                    "calendar_days": int(steps[position]),
                }
            )
    frame = pd.DataFrame(rows, columns=list(GAP_COLUMNS))
    frame = frame.astype({"count": "int64", "calendar_days": "int64"})
    return frame.sort_values(["first", "kind"], kind="stable", ignore_index=True)


def split_dates(
    index: Sequence[Any] | pd.Index,
    sequence_length: int,
    fractions: SplitFractions | None = None,
    *,
    horizon: int = 1,
    first_valid_row: int = 1,
) -> dict[str, dict[str, Any]]:
    """Where training, validation and test fall in a series, exactly as ``prepare_data`` cuts it.

    Returns ``{"train": ..., "val": ..., "test": ...}``, each a dict of

    * ``first_date``/``last_date``: the slice's rows (``datetime.date``),
    * ``rows``: rows in the slice,
    * ``first_target``: the first target day of the slice's first sample; in ``train`` that
      is ``sequence_length`` rows (plus ``first_valid_row``) in, as the first window needs
      that much history,
    * ``samples``: forecast origins whose ``horizon`` target days all lie in the slice.

    ``horizon`` is the days each training target holds (``TrainParams.training_horizon``)
    and ``first_valid_row`` the encoder's (1 for log-returns, 0 for prices). Validation and
    test windows look back into the previous slice for their inputs (that history was known
    on the day), but no target crosses into another slice. ``fractions`` defaults to
    ``SplitFractions()`` (70/15/15), the split training uses.
    """
    fractions = fractions or SplitFractions()
    days = pd.DatetimeIndex(index)
    for name, value in (("sequence_length", sequence_length), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidParameterError(f"{name} must be a whole number >= 1, got {value!r}")
    n_rows = len(days)
    needed = minimum_rows(sequence_length, fractions, horizon, first_valid_row)
    if n_rows < needed:
        raise NotEnoughDataError(
            f"the price series has {n_rows} rows; sequence_length {sequence_length} with a "
            f"{fractions.label()} split needs at least {needed} rows: "
            "use an earlier start or a smaller sequence_length"
        )
    train_end, val_end = split_bounds(n_rows, fractions)
    earliest_origin = first_valid_row + sequence_length - 1

    def describe(start: int, stop: int) -> dict[str, Any]:
        origins = origins_between(start, stop, horizon, earliest_origin)
        return {
            "first_date": _to_date(days[start]),
            "last_date": _to_date(days[stop - 1]),
            "rows": stop - start,
            "first_target": _to_date(days[origins[0] + 1]),
            "samples": int(origins.size),
        }

    return {
        "train": describe(0, train_end),
        "val": describe(train_end, val_end),
        "test": describe(val_end, n_rows),
    }


def _to_date(stamp: pd.Timestamp) -> date:
    return pd.Timestamp(stamp).date()


def baseline_comparison(
    metrics: TrainingMetrics | Mapping[str, Any], *, currency: str | None = None
) -> pd.DataFrame:
    """The model's next-day test errors beside the naive baselines', one row per metric.

    ``metrics`` is ``TestEvaluation.metrics`` or a registry record's ``metrics``; the rows
    are ``evaluation.metrics.POINT_METRICS`` that were recorded. Columns: ``unit``
    (``currency`` for price-unit metrics when given, else ``price``), ``model``,
    ``persistence``, each other baseline recorded (``drift``) and ``ratio`` (model /
    persistence: below 1 the model's error is smaller).
    """
    first = _recorded(metrics).next_day
    if first is None or "mae" not in first.model or "mae" not in first.persistence:
        raise InvalidParameterError(
            "no next-day test scores beside persistence are recorded: pass "
            "TestEvaluation.metrics or a registered version's metrics (ModelRecord.metrics)"
        )
    rows: dict[str, dict[str, Any]] = {}
    for name, metric in POINT_METRICS.items():
        if first.model.get(name) is None or first.persistence.get(name) is None:
            continue
        row: dict[str, Any] = {
            "unit": currency if currency and metric.unit == "price" else metric.unit,
            "model": float(first.model[name]),
            "persistence": float(first.persistence[name]),
        }
        for baseline, scores in first.baselines.items():
            if baseline != "persistence" and scores.get(name) is not None:
                row[baseline] = float(scores[name])
        rows[name.upper()] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["ratio"] = table["model"] / table["persistence"]
    table.index.name = "metric"
    return table


def _recorded(metrics: TrainingMetrics | Mapping[str, Any]) -> TrainingMetrics:
    """``metrics`` as a record (a mapping is read as a registry row would be: a notebook may
    hold the JSON form, e.g. from ``models --json``)."""
    return metrics if isinstance(metrics, TrainingMetrics) else TrainingMetrics.from_json(metrics)


def _next_day_dm_p_value(metrics: TrainingMetrics | Mapping[str, Any]) -> float | None:
    first = _recorded(metrics).next_day
    value = first.dm_p_value if first else None
    return float(value) if value is not None and math.isfinite(value) else None


def baseline_verdict(metrics: TrainingMetrics | Mapping[str, Any]) -> str:
    """One plain sentence: is the model better than persistence on next-day test forecasts?

    The words come from ``evaluation.verdicts``: "better" or "worse" only when the
    Diebold-Mariano test recorded with the metrics (``metrics.next_day.dm_p_value``) says
    so at ``SIGNIFICANCE_LEVEL``; a 1 % lower error on 90 test days is usually noise.
    """
    from stock_lstm.evaluation.verdicts import point_verdict

    table = baseline_comparison(metrics)
    mae_ratio, rmse_ratio = float(table.loc["MAE", "ratio"]), float(table.loc["RMSE", "ratio"])
    tested = point_verdict(mae_ratio, _next_day_dm_p_value(metrics))
    detail = f"MAE ratio {mae_ratio:.3f}, RMSE ratio {rmse_ratio:.3f}"
    phrase = tested.phrase("persistence")
    if tested.word == "better":
        return (
            f"The model is {phrase} on next-day test forecasts ({detail}): its mean absolute "
            f"error is {1 - mae_ratio:.1%} lower than repeating yesterday's close."
        )
    if tested.word == "worse":
        return (
            f"The model is {phrase} on next-day test forecasts ({detail}): repeating "
            "yesterday's close would have been more accurate."
        )
    return (
        f"The model is {phrase} on next-day test forecasts ({detail}), so it adds nothing "
        "over repeating yesterday's close."
    )


#: Columns of :func:`horizon_table`, from ``TestEvaluation.metrics.horizons``.
HORIZON_COLUMNS = ("n", "rmae", "directional_accuracy", "dm_p_value", "coverage")


#: Horizons a report's table shows: the first week day by day, then one a week or so.
READ_HORIZONS: tuple[int, ...] = (1, 2, 3, 4, 5, 10, 15, 20, 25, 30)


def horizon_table(
    metrics: TrainingMetrics | Mapping[str, Any], horizons: Sequence[int] | None = None
) -> pd.DataFrame:
    """Test scores per forecast horizon (trading days ahead), one row per horizon (only
    ``horizons`` when given, e.g. ``READ_HORIZONS`` for a report).

    Columns: ``n`` (forecasts scored), ``rmae`` (MAE / persistence MAE), ``model_mae`` and
    ``persistence_mae`` (price units), ``directional_accuracy`` (share of days the predicted
    move had the right sign), ``dm_p_value`` and, when intervals were calibrated,
    ``coverage`` (share of actual closes inside the interval). Empty when not recorded.
    """
    rows = []
    for row in _recorded(metrics).horizons:
        if horizons is not None and row.horizon not in horizons:
            continue
        entry = {name: getattr(row, name) for name in HORIZON_COLUMNS}
        entry["model_mae"] = row.model.get("mae")
        entry["persistence_mae"] = row.persistence.get("mae")
        rows.append({"horizon": row.horizon, **entry})
    columns = ["horizon", "n", "rmae", "model_mae", "persistence_mae", *HORIZON_COLUMNS[2:]]
    table = pd.DataFrame(rows, columns=columns).set_index("horizon")
    return table.astype({name: "float64" for name in columns[2:]})  # None (not recorded) -> NaN
