"""The figures of the notebook reports: each function takes data and returns a Figure.

Figures are built with ``matplotlib.figure.Figure`` rather than ``pyplot``, so nothing is
shown or kept alive behind the caller's back: a notebook displays the returned figure (the
last expression of a cell), a script saves it with ``fig.savefig``. Nothing here computes
statistics; that lives in ``stock_lstm.evaluation``. Only notebooks import this module (the
CLI and the API never pay for matplotlib).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from stock_lstm.models.forecasting import Forecast

#: Colours used consistently across figures (matplotlib's tab10 palette).
COLORS = {
    "price": "tab:blue",
    "model": "tab:orange",
    "persistence": "tab:gray",
    "train": "tab:blue",
    "val": "tab:orange",
    "test": "tab:green",
    "band": "tab:red",
}
#: One distinct colour per interval forecaster, in ``evaluation.intervals.FORECASTERS``
#: order (model, frozen, the two combinations, GARCH-t, GJR, HAR, EWMA): no two lines share
#: one.
FORECASTER_PALETTE = (
    COLORS["model"],
    COLORS["train"],
    "tab:purple",
    "tab:pink",
    COLORS["persistence"],
    "tab:brown",
    "tab:cyan",
    COLORS["test"],
)


def forecaster_colors(count: int) -> list[str]:
    """``count`` distinct colours for the interval forecasters in table order: the palette,
    then matplotlib's tab20 for any forecaster added beyond it (a new anchor needs none)."""
    import matplotlib

    used = {matplotlib.colors.to_hex(color) for color in FORECASTER_PALETTE}
    extra = [
        matplotlib.colors.to_hex(color)
        for color in matplotlib.colormaps["tab20"].colors
        if matplotlib.colors.to_hex(color) not in used
    ]
    return [*FORECASTER_PALETTE, *extra][:count] if count else []


#: Central intervals of the fan chart, widest first, with their shading.
FAN_BANDS = ((0.9, 0.12), (0.8, 0.16), (0.5, 0.24))
WIDE = (10.0, 4.5)
TALL = (10.0, 6.5)
#: Loss curves mark each epoch with a dot up to this many epochs.
MAX_MARKED_EPOCHS = 30
#: Loss curves use a log axis when the largest loss exceeds the smallest by this factor.
LOG_SCALE_RATIO = 10.0


def _price_label(currency: str | None) -> str:
    return f"Close ({currency})" if currency else "Close (price units)"


def _new_figure(figsize: tuple[float, float] = WIDE) -> Figure:
    return Figure(figsize=figsize, layout="constrained")


def _date_axis(ax: Axes) -> None:
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def price_and_volume(prices: pd.DataFrame, *, ticker: str, currency: str | None = None) -> Figure:
    """Daily close (top) and traded volume in millions of shares (bottom), sharing dates.

    ``prices``: the normalized price frame (``close`` and ``volume`` columns, date index).
    """
    fig = _new_figure(TALL)
    price_ax, volume_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    price_ax.plot(prices.index, prices["close"], color=COLORS["price"], lw=1.0, label="close")
    price_ax.set_ylabel(_price_label(currency))
    price_ax.set_title(
        f"{ticker}: daily close and volume, {prices.index[0]:%Y-%m-%d} to "
        f"{prices.index[-1]:%Y-%m-%d} ({len(prices)} trading days)"
    )
    price_ax.legend(loc="upper left")
    volume_ax.fill_between(
        prices.index, prices["volume"] / 1e6, step="mid", color=COLORS["price"], alpha=0.5
    )
    volume_ax.set_ylabel("Volume (M shares)")
    volume_ax.set_xlabel("Date")
    volume_ax.set_ylim(bottom=0)
    _date_axis(volume_ax)
    return fig


def returns_vs_normal(returns: pd.Series, *, ticker: str, bins: int = 60) -> Figure:
    """Histogram (density) of daily log-returns with the normal pdf of the same mean and std.

    Two panels of the same data: a linear density axis (left) shows the peak, a logarithmic
    one (right) shows the tails. Where the bars stand above the curve in the centre and far
    out in the tails, returns are fat-tailed: big days are more common than a normal implies.
    """
    from scipy.stats import norm

    values = pd.Series(returns, dtype="float64").dropna()
    mean, std = float(values.mean()), float(values.std())
    grid = np.linspace(float(values.min()), float(values.max()), 400)
    pdf = norm.pdf(grid, loc=mean, scale=std)
    fig = _new_figure()
    linear_ax, log_ax = fig.subplots(1, 2, sharex=True)
    for ax in (linear_ax, log_ax):
        ax.hist(values, bins=bins, density=True, color=COLORS["price"], alpha=0.6, label="observed")
        ax.plot(
            grid,
            pdf,
            color=COLORS["band"],
            lw=1.5,
            label=f"normal fit (mean {mean:.2%}, std {std:.2%})",
        )
        ax.set_xlabel("Daily log-return")
    log_ax.set_yscale("log")
    log_ax.set_ylim(bottom=0.5 / (len(values) * (grid[-1] - grid[0]) / bins))  # ~half a day
    linear_ax.set_ylabel("Density")
    log_ax.set_ylabel("Density (log scale)")
    linear_ax.set_title("the peak")
    log_ax.set_title("the tails")
    fig.suptitle(
        f"{ticker}: distribution of daily log-returns (n = {len(values)})",
        fontweight="bold",
        fontsize="medium",
    )
    # Below both panels: inside, the legend's text touched the tallest bars.
    handles, labels = linear_ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize="small")
    return fig


def rolling_volatility(volatility: pd.Series, *, ticker: str, window: int) -> Figure:
    """Annualised rolling volatility in percent, with its median over the whole period."""
    values = pd.Series(volatility, dtype="float64") * 100
    fig = _new_figure()
    ax = fig.subplots()
    ax.plot(values.index, values, color=COLORS["price"], lw=1.0, label=f"{window}-day volatility")
    median = float(values.median())
    ax.axhline(median, color=COLORS["persistence"], ls="--", lw=1.0, label=f"median {median:.1f}%")
    ax.set_ylabel("Annualised volatility (%)")
    ax.set_xlabel("Date")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{ticker}: {window}-day rolling volatility of log-returns (annualised)")
    ax.legend(loc="upper left")
    _date_axis(ax)
    return fig


def autocorrelation(
    acf: pd.DataFrame | Mapping[str, pd.DataFrame], *, ticker: str | None = None
) -> Figure:
    """Stem plot of autocorrelations with each frame's 95 % band for "no correlation", one
    panel per series.

    ``acf``: a frame with ``lag, acf, lower, upper`` (``evaluation.eda.autocorrelation``), or
    ``{panel title: frame}`` to show several side by side (e.g. returns and squared returns).
    """
    panels = {"log-returns": acf} if isinstance(acf, pd.DataFrame) else dict(acf)
    fig = _new_figure((5.0 * len(panels), 4.0))
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (title, frame) in zip(axes, panels.items(), strict=True):
        lags = frame["lag"].to_numpy()
        ax.fill_between(
            lags,
            frame["lower"],
            frame["upper"],
            color=COLORS["band"],
            alpha=0.12,
            step="mid",
            label="95% band for no correlation",
        )
        ax.stem(lags, frame["acf"], basefmt="k-", label="autocorrelation")
        ax.set_xlabel("Lag (trading days)")
        ax.set_title(f"{ticker}: {title}" if ticker else title)
        ax.set_xlim(0.3, lags.max() + 0.7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("Autocorrelation")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    return fig


def split_overview(
    close: pd.Series,
    split: Mapping[str, Mapping[str, Any]],
    *,
    ticker: str,
    currency: str | None = None,
) -> Figure:
    """The close price with the train/validation/test slices shaded.

    ``split``: ``evaluation.eda.split_dates`` output. A dotted line marks the first training
    target: the rows before it only ever serve as the first input window.
    """
    fig = _new_figure()
    ax = fig.subplots()
    ax.plot(close.index, close, color="black", lw=0.9, label="close")
    names = {"train": "train", "val": "validation", "test": "test"}
    for key, label in names.items():
        part = split[key]
        ax.axvspan(
            pd.Timestamp(part["first_date"]),
            pd.Timestamp(part["last_date"]),
            color=COLORS[key],
            alpha=0.15,
            label=f"{label}: {part['first_date']} to {part['last_date']} ({part['rows']} rows)",
        )
    ax.axvline(
        pd.Timestamp(split["train"]["first_target"]),
        color=COLORS["train"],
        ls=":",
        lw=1.2,
        label="first training target",
    )
    ax.set_ylabel(_price_label(currency))
    ax.set_xlabel("Date")
    ax.set_title(f"{ticker}: chronological train / validation / test split")
    fig.legend(loc="outside lower center", ncols=3, fontsize="small")
    _date_axis(ax)
    return fig


def loss_curves(
    history: Sequence[Mapping[str, float]],
    *,
    best_epoch: int,
    ticker: str | None = None,
    loss_name: str = "MSE",
) -> Figure:
    """Training and validation loss (``loss_name``, on the encoder's scaled targets) per epoch.

    The loss axis is logarithmic when the losses are all positive and span more than
    ``LOG_SCALE_RATIO`` (a negative log-likelihood can go below zero).

    A dashed line marks ``best_epoch``, whose weights the model keeps; epochs after it are the
    early-stopping patience that found no improvement.
    """
    frame = pd.DataFrame(list(history))
    fig = _new_figure()
    ax = fig.subplots()
    marker = "o" if len(frame) <= MAX_MARKED_EPOCHS else None
    ax.plot(
        frame["epoch"],
        frame["train_loss"],
        color=COLORS["train"],
        marker=marker,
        ms=3,
        label="training loss",
    )
    ax.plot(
        frame["epoch"],
        frame["val_loss"],
        color=COLORS["val"],
        marker=marker,
        ms=3,
        label="validation loss",
    )
    ax.axvline(best_epoch, color="black", ls="--", lw=1.0, label=f"best epoch ({best_epoch})")
    losses = frame[["train_loss", "val_loss"]].to_numpy(dtype=np.float64)
    finite = losses[np.isfinite(losses)]
    log_scale = (
        finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > LOG_SCALE_RATIO
    )
    if log_scale:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Epoch")
    ax.set_ylabel(f"{loss_name} on scaled targets" + (" (log scale)" if log_scale else ""))
    prefix = f"{ticker}: " if ticker else ""
    ax.set_title(f"{prefix}loss per epoch ({len(frame)} epochs run)")
    ax.legend(loc="upper right")
    return fig


def test_forecast(
    dates: Sequence[Any] | pd.Index,
    actual: np.ndarray,
    predicted: np.ndarray,
    persistence: np.ndarray,
    *,
    ticker: str,
    currency: str | None = None,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    interval_level: float | None = None,
    model_name: str = "LSTM",
) -> Figure:
    """Next-day forecasts over the test dates (top) and their absolute errors (bottom).

    All arrays are in price units, one value per test date; ``persistence`` is yesterday's
    close, the baseline the model has to beat. ``lower``/``upper`` (optional) shade the
    model's prediction interval of level ``interval_level`` (e.g. 0.9). ``model_name`` labels
    the model's lines (``GRU`` for ``network = "gru"``).
    """
    index = pd.DatetimeIndex(dates)
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    persistence = np.asarray(persistence, dtype=np.float64)
    fig = _new_figure(TALL)
    price_ax, error_ax = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    price_ax.plot(index, actual, color="black", lw=1.3, label="actual close")
    if lower is not None and upper is not None:
        level = f"{interval_level:.0%} " if interval_level else ""
        price_ax.fill_between(
            index,
            np.asarray(lower, dtype=np.float64),
            np.asarray(upper, dtype=np.float64),
            color=COLORS["model"],
            alpha=0.15,
            lw=0,
            label=f"{model_name} {level}interval",
        )
    price_ax.plot(index, predicted, color=COLORS["model"], lw=1.1, label=f"{model_name} (next day)")
    price_ax.plot(
        index,
        persistence,
        color=COLORS["persistence"],
        lw=1.0,
        ls="--",
        label="persistence (yesterday's close)",
    )
    price_ax.set_ylabel(_price_label(currency))
    price_ax.set_title(f"{ticker}: test-set next-day forecasts ({len(index)} trading days)")
    price_ax.legend(loc="upper left")
    unit = currency or "price units"
    model_error = np.abs(predicted - actual)
    baseline_error = np.abs(persistence - actual)
    error_ax.plot(
        index,
        model_error,
        color=COLORS["model"],
        lw=1.0,
        label=f"{model_name} (mean {model_error.mean():.2f})",
    )
    error_ax.plot(
        index,
        baseline_error,
        color=COLORS["persistence"],
        lw=1.0,
        ls="--",
        label=f"persistence (mean {baseline_error.mean():.2f})",
    )
    error_ax.set_ylabel(f"|error| ({unit})")
    error_ax.set_xlabel("Date")
    error_ax.set_ylim(bottom=0)
    # Above the panel, not on it: the biggest errors are what a reader looks for.
    error_ax.legend(
        loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, fontsize="small", frameon=False
    )
    _date_axis(error_ax)
    return fig


def forecast_on_history(
    history: pd.Series, forecast: Forecast, *, currency: str | None = None
) -> Figure:
    """Recent closes and the forecast's dated points, joined at the last known close.

    ``history``: closes indexed by date (e.g. the last 120 trading days); ``forecast``: a
    ``Forecast`` from ``workflows.predict_ticker``. The last point is labelled with its date
    and close; a dotted line at the last close is the persistence forecast; the shaded fan is
    the forecast's 50/80/90% intervals when its points carry quantiles (else the one
    ``lower``/``upper`` band).
    """
    fig = _new_figure((12.0, 4.5))
    full, zoom = fig.subplots(1, 2, width_ratios=(2, 1))
    for ax in (full, zoom):
        ax.plot(history.index, history, color=COLORS["price"], lw=1.1, label="history (close)")
        dates = [pd.Timestamp(point.date) for point in forecast.predictions]
        closes = [point.close for point in forecast.predictions]
        lowers = [getattr(point, "lower", None) for point in forecast.predictions]
        uppers = [getattr(point, "upper", None) for point in forecast.predictions]
        fans = [getattr(point, "quantiles", None) for point in forecast.predictions]
        if all(fans):
            start = [pd.Timestamp(forecast.last_date), *dates]
            for level, alpha in FAN_BANDS:
                low, high = f"{(1 - level) / 2:g}", f"{(1 + level) / 2:g}"
                ax.fill_between(  # cones that open at the last known close
                    start,
                    [forecast.last_close, *(fan[low] for fan in fans)],
                    [forecast.last_close, *(fan[high] for fan in fans)],
                    color=COLORS["model"],
                    alpha=alpha,
                    lw=0,
                    label=f"{level:.0%} interval",
                )
        elif all(value is not None for value in (*lowers, *uppers)):
            level = getattr(forecast, "interval_level", None)
            ax.fill_between(  # a cone that opens at the last known close
                [pd.Timestamp(forecast.last_date), *dates],
                [forecast.last_close, *lowers],
                [forecast.last_close, *uppers],
                color=COLORS["model"],
                alpha=0.15,
                lw=0,
                label=f"{level:.0%} interval" if level else "interval",
            )
        ax.plot(
            [pd.Timestamp(forecast.last_date), *dates],
            [forecast.last_close, *closes],
            color=COLORS["model"],
            ls="--",
            marker="o",
            ms=4,
            label=f"forecast, {len(dates)} trading days ({forecast.version_id})",
        )
        ax.annotate(
            f"{dates[-1]:%Y-%m-%d}\n{closes[-1]:.2f}",
            (dates[-1], closes[-1]),
            textcoords="offset points",
            xytext=(6, 0),
            va="center",
            fontsize="small",
            color=COLORS["model"],
        )
        ax.hlines(
            forecast.last_close,
            pd.Timestamp(forecast.last_date),
            dates[-1],
            color=COLORS["persistence"],
            ls=":",
            lw=1.2,
            label=f"persistence (last close {forecast.last_close:.2f})",
        )
        ax.axvline(pd.Timestamp(forecast.last_date), color="black", lw=0.8, ls=":")
        ax.set_ylabel(_price_label(currency))
        ax.set_xlabel("Date")
        ax.set_title(f"{forecast.ticker}: forecast after {forecast.last_date:%Y-%m-%d}")
        ax.margins(y=0.12)
        _date_axis(ax)
    # The right panel zooms on the forecast: a few weeks of history and the fan.
    recent = history.index[-min(len(history), max(15, 3 * len(forecast.predictions))) :]
    zoom.set_xlim(recent[0], pd.Timestamp(forecast.predictions[-1].date) + pd.Timedelta(days=2))
    in_view = history.loc[recent[0] :]
    bounds = [in_view.min(), in_view.max()]
    for point in forecast.predictions:
        values = [point.close, point.lower, point.upper, *(point.quantiles or {}).values()]
        bounds += [v for v in values if v is not None]
    pad = 0.05 * (max(bounds) - min(bounds) or 1.0)
    zoom.set_ylim(min(bounds) - pad, max(bounds) + pad)
    zoom.set_title("zoom on the forecast")
    # One legend for both panels, below them: inside, it covered the price line.
    handles, labels = full.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize="small")
    return fig


test_forecast.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite the name


def interval_forecasters_over_time(
    frame: pd.DataFrame,
    *,
    ticker: str,
    level: float = 0.9,
    currency: str | None = None,
    anchor: str = "garch_t",
) -> Figure:
    """Next-day closes against the model's online interval and ``anchor``'s (pass the
    strongest), then every forecaster's width.

    ``frame``: a backtest's rows at one horizon (``backtest.csv`` columns, indexed by target
    day). Misses of the model's interval are marked; the lower panel shows how each
    forecaster's width (in % of the close) follows volatility.
    """
    from stock_lstm.evaluation.intervals import COMBINATIONS, FORECASTER_LABELS

    fig = _new_figure(TALL)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    top.plot(frame.index, frame["actual"], color="black", lw=0.9, label="actual close")
    top.fill_between(
        frame.index,
        frame["lower"],
        frame["upper"],
        color=COLORS["model"],
        alpha=0.25,
        lw=0,
        label=f"model {level:.0%} interval (online calibration)",
    )
    for side in ("lower", "upper"):
        top.plot(
            frame.index,
            frame[f"{anchor}_{side}"],
            color=COLORS["persistence"],
            ls="--",
            lw=0.8,
            label=f"{FORECASTER_LABELS.get(anchor, anchor)} interval" if side == "lower" else None,
        )
    missed = (frame["actual"] < frame["lower"]) | (frame["actual"] > frame["upper"])
    top.scatter(
        frame.index[missed],
        frame["actual"][missed],
        color=COLORS["band"],
        s=12,
        zorder=3,
        label=f"outside the model's interval ({missed.mean():.1%})",
    )
    top.set_ylabel(_price_label(currency))
    top.set_title(f"{ticker}: next-day intervals over the backtest")
    top.legend(loc="upper left", fontsize="small")
    colors = forecaster_colors(len(FORECASTER_LABELS))
    for (name, label), color in zip(FORECASTER_LABELS.items(), colors, strict=True):
        prefix = "" if name == "model" else f"{name}_"
        if f"{prefix}upper" not in frame or name in COMBINATIONS:
            continue
        width = 100 * (frame[f"{prefix}upper"] - frame[f"{prefix}lower"]) / frame["persistence"]
        bottom.plot(frame.index, width, color=color, lw=1.0, label=label)
    bottom.set_ylabel("interval width (% of close)")
    bottom.set_xlabel("target day")
    bottom.legend(loc="upper left", fontsize="small", ncols=2)
    _date_axis(bottom)
    return fig


def coverage_and_pit(
    coverage: pd.DataFrame, pit: np.ndarray, *, level: float = 0.9, bins: int = 10
) -> Figure:
    """Left: each forecaster's interval coverage by horizon around the nominal level.
    Right: the model's PIT histogram at h=1 (flat = calibrated; U = too narrow; hump = too
    wide). ``coverage``: forecasters as columns, horizons as index."""
    fig = _new_figure()
    left, right = fig.subplots(1, 2)
    colors = forecaster_colors(len(coverage.columns))
    for column, color in zip(coverage.columns, colors, strict=True):
        left.plot(coverage.index, coverage[column], marker="o", ms=4, color=color, label=column)
    left.axhline(level, color="black", ls="--", lw=1, label=f"nominal {level:.0%}")
    low = min(level - 0.1, float(np.nanmin(coverage.to_numpy())) - 0.02)
    left.set(xlabel="horizon (trading days)", ylabel="share of closes inside", ylim=(low, 1.0))
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_title(f"{level:.0%} interval coverage")
    left.legend(fontsize="small")
    values = pit[np.isfinite(pit)]
    right.hist(values, bins=bins, range=(0, 1), color=COLORS["model"], alpha=0.8)
    right.axhline(values.size / bins, color="black", ls="--", lw=1, label="uniform")
    right.set(xlabel="PIT (forecast CDF at the outcome)", ylabel="origins")
    right.set_title("Model PIT at h=1")
    right.legend(fontsize="small")
    return fig
