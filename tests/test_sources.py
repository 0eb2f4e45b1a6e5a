"""Price sources and normalization: yfinance frames, both CSV layouts, dirt real files carry."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from yfinance_fakes import (
    YFINANCE_WARNING_FILTER,
    FakeClock,
    TickerCalls,
    history_frame,
    install_ticker,
    make_fake_ticker,
    make_raising_ticker,
    real_download,
)

from stock_lstm.data.frames import PRICE_COLUMNS, normalize_ohlcv
from stock_lstm.data.sources import CsvSource, YahooSource, source_from_spec
from stock_lstm.data.synthetic import synthetic_prices, write_flat_csv, write_yfinance_csv
from stock_lstm.errors import DataSourceError, InvalidParameterError, InvalidTickerError

pytestmark = pytest.mark.filterwarnings(YFINANCE_WARNING_FILTER)

SHARED_PRICES = Path("/work/shared/data/prices")
SHARED_DOWNLOAD = Path("/work/shared/data/yfinance-layouts/PETR4.SA_download.csv")


def assert_canonical(frame: pd.DataFrame) -> None:
    """The layout every consumer relies on."""
    assert tuple(frame.columns) == PRICE_COLUMNS
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert frame.index.name == "date"
    assert frame.index.tz is None
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert (frame.index == frame.index.normalize()).all()


def yfinance_download_frame(monkeypatch: pytest.MonkeyPatch, ticker: str = "AAPL") -> Any:
    """What the real ``yfinance.download`` returns for a successful one-ticker call."""
    install_ticker(monkeypatch, make_fake_ticker({ticker: history_frame(ticker)}, TickerCalls()))
    return real_download()(
        ticker.lower(), auto_adjust=True, progress=False, threads=False, actions=False
    )


def blank_days(frame: pd.DataFrame, days: list[str]) -> pd.DataFrame:
    """Empty every field on ``days``, the way real files mark days the market was closed."""
    blanked = frame.astype("float64")
    blanked.loc[pd.DatetimeIndex(days), :] = np.nan
    return blanked


# --- normalize_ohlcv ---------------------------------------------------------------------


def test_normalize_reads_real_yfinance_multiindex_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = yfinance_download_frame(monkeypatch)
    assert isinstance(raw.columns, pd.MultiIndex)
    assert list(raw.columns.names) == ["Price", "Ticker"]

    prices = normalize_ohlcv(raw, "aapl")

    assert_canonical(prices.frame)
    assert len(prices.frame) == 40
    assert prices.dropped_rows == 0 and prices.drop_reasons == {}
    assert prices.frame["adj_close"].isna().all()
    expected = history_frame("AAPL")["Close"].to_numpy()
    np.testing.assert_allclose(prices.frame["close"].to_numpy(), expected)


def test_normalize_selects_the_requested_ticker_among_several() -> None:
    index = pd.DatetimeIndex(["2024-01-02", "2024-01-03"], name="Date")
    columns = pd.MultiIndex.from_product(
        [["Close", "Open"], ["MSFT", "AAPL"]], names=["Price", "Ticker"]
    )
    raw = pd.DataFrame([[1.0, 10.0, 1.5, 10.5], [2.0, 20.0, 2.5, 20.5]], index, columns)

    frame = normalize_ohlcv(raw, "aapl").frame

    assert frame["close"].tolist() == [10.0, 20.0]
    assert frame["open"].tolist() == [10.5, 20.5]
    with pytest.raises(DataSourceError, match="IBM"):
        normalize_ohlcv(raw, "IBM")


def test_normalize_flat_columns_case_insensitive_with_fallbacks() -> None:
    raw = pd.DataFrame(
        {"DATE": ["2024-01-03", "2024-01-02"], "close": ["11.5", "10.0"], "adj close": [1, 2]}
    )

    frame = normalize_ohlcv(raw, "X").frame

    assert_canonical(frame)
    assert frame.index.strftime("%Y-%m-%d").tolist() == ["2024-01-02", "2024-01-03"]
    assert frame["open"].tolist() == frame["close"].tolist() == [10.0, 11.5]
    assert frame["high"].tolist() == frame["low"].tolist() == [10.0, 11.5]
    assert frame["volume"].tolist() == [0.0, 0.0]
    assert frame["adj_close"].tolist() == [2.0, 1.0]


def test_normalize_missing_adj_close_is_nan() -> None:
    raw = pd.DataFrame({"Date": ["2024-01-02"], "Open": [1.0], "Close": [2.0], "Volume": [5]})
    frame = normalize_ohlcv(raw, "X").frame
    assert np.isnan(frame["adj_close"].iloc[0])
    assert frame["volume"].iloc[0] == 5.0


def test_normalize_aware_index_keeps_the_local_calendar_date() -> None:
    # Midnight in Tokyo is the previous day in UTC: the bar must stay on its local date.
    index = pd.DatetimeIndex(["2024-01-04", "2024-01-05"], name="Date").tz_localize("Asia/Tokyo")
    raw = pd.DataFrame({"Close": [1.0, 2.0]}, index=index)

    frame = normalize_ohlcv(raw, "7203.T").frame

    assert frame.index.tz is None
    assert frame.index.strftime("%Y-%m-%d").tolist() == ["2024-01-04", "2024-01-05"]


def test_normalize_drops_and_counts_dirty_rows() -> None:
    raw = pd.DataFrame(
        {
            "Date": [
                "2024-01-02",
                "2024-01-03",  # holiday: all prices empty
                "2024-01-04",  # close missing
                "2024-01-05",  # close zero
                "2024-01-08",
                "2024-01-08",  # duplicate: this one wins
                "not a date",
            ],
            "Open": [1.0, np.nan, 1.0, 1.0, 1.0, 2.0, 1.0],
            "High": [1.0, np.nan, 1.0, 1.0, 1.0, 2.0, 1.0],
            "Low": [1.0, np.nan, 1.0, 1.0, 1.0, 2.0, 1.0],
            "Close": [1.0, np.nan, np.nan, 0.0, 1.0, 2.0, 1.0],
            "Volume": [1, np.nan, 1, 1, 1, 2, 1],
        }
    )

    prices = normalize_ohlcv(raw, "X")

    assert prices.drop_reasons == {
        "unparseable date": 1,
        "no prices": 1,
        "missing or non-positive close": 2,
        "duplicate date": 1,
    }
    assert prices.dropped_rows == 5
    assert prices.frame.index.strftime("%Y-%m-%d").tolist() == ["2024-01-02", "2024-01-08"]
    assert prices.frame.loc["2024-01-08", "close"] == 2.0


def test_normalize_without_close_names_ticker_and_fix() -> None:
    raw = pd.DataFrame({"Date": ["2024-01-02"], "Open": [1.0]})
    with pytest.raises(DataSourceError, match=r"ABC.*no Close column"):
        normalize_ohlcv(raw, "ABC")


def test_normalize_with_nothing_left_raises() -> None:
    raw = pd.DataFrame({"Date": ["2024-01-02", "2024-01-03"], "Close": [np.nan, -1.0]})
    with pytest.raises(DataSourceError, match=r"no usable price rows for ABC"):
        normalize_ohlcv(raw, "ABC")


# --- YahooSource -------------------------------------------------------------------------


class RecordingDownload:
    """An injected ``download`` that records its arguments and returns a fixed frame."""

    def __init__(self, result: pd.DataFrame | Exception) -> None:
        self.result = result
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        self.calls.append((args, kwargs))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_yahoo_passes_inclusive_range_and_yfinance_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    download = RecordingDownload(yfinance_download_frame(monkeypatch))
    source = YahooSource(clock=FakeClock(), download=download)

    prices = source.fetch("aapl", date(2024, 1, 5), date(2024, 1, 31))

    (args, kwargs) = download.calls[0]
    assert args == ("AAPL",)
    assert kwargs == {
        "start": "2024-01-05",
        "end": "2024-02-01",  # yfinance's end is exclusive
        "auto_adjust": True,
        "progress": False,
        "threads": False,
        "multi_level_index": True,
        "actions": False,
    }
    assert prices.frame.index.min() == pd.Timestamp("2024-01-05")
    assert prices.frame.index.max() == pd.Timestamp("2024-01-31")
    assert source.name == "yahoo" and source.supports_incremental


def test_yahoo_default_range_is_history_years_until_today(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    download = RecordingDownload(yfinance_download_frame(monkeypatch))
    clock = FakeClock()  # 2024-03-01 21:00 UTC
    YahooSource(history_years=3, clock=clock, download=download).fetch("AAPL")

    kwargs = download.calls[0][1]
    assert kwargs["start"] == "2021-03-01"
    assert kwargs["end"] == "2024-03-02"


def test_yahoo_through_real_download_with_fake_ticker(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = TickerCalls()
    install_ticker(monkeypatch, make_fake_ticker({"AAPL": history_frame()}, calls))
    source = YahooSource(clock=FakeClock(), download=real_download())

    prices = source.fetch("AAPL", date(2024, 1, 10), date(2024, 1, 19))

    assert calls.history[0]["start"] == "2024-01-10"
    assert calls.history[0]["end"] == "2024-01-20"
    assert calls.history[0]["auto_adjust"] is True
    assert prices.frame.index.strftime("%Y-%m-%d").tolist() == [
        "2024-01-10",
        "2024-01-11",
        "2024-01-12",
        "2024-01-15",
        "2024-01-16",
        "2024-01-17",
        "2024-01-18",
        "2024-01-19",
    ]
    assert_canonical(prices.frame)


def test_importing_sources_does_not_import_yfinance() -> None:
    code = "import sys, stock_lstm.data.cache; assert 'yfinance' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_yahoo_default_download_calls_yfinance(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = TickerCalls()
    install_ticker(monkeypatch, make_fake_ticker({"MSFT": history_frame("MSFT")}, calls))
    prices = YahooSource(clock=FakeClock()).fetch("MSFT", date(2024, 1, 2), date(2024, 1, 3))
    assert len(prices.frame) == 2
    assert calls.constructed == ["MSFT"]


def test_yahoo_empty_frame_from_real_download_explains_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_ticker(monkeypatch, make_fake_ticker({}, TickerCalls()))
    empty = real_download()("ZZZZ", progress=False, threads=False, auto_adjust=True)
    assert empty.empty
    assert list(empty.columns.get_level_values(0)) == [
        "Adj Close",
        "Close",
        "High",
        "Low",
        "Open",
        "Volume",
    ]
    source = YahooSource(clock=FakeClock(), download=real_download())

    with pytest.raises(DataSourceError) as caught:
        source.fetch("ZZZZ")

    message = str(caught.value)
    assert "no prices came back for ZZZZ from Yahoo Finance" in message
    assert "symbol may be wrong or Yahoo unreachable" in message
    assert "--source csv:DIR" in message
    assert "YFPricesMissingError" in message and "no price data found" in message


def test_yahoo_unreachable_reason_is_quoted_and_shortened(monkeypatch: pytest.MonkeyPatch) -> None:
    long_reason = (
        "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com " * 5
    )
    install_ticker(monkeypatch, make_raising_ticker(ConnectionError(long_reason)))
    source = YahooSource(clock=FakeClock(), download=real_download())

    with pytest.raises(DataSourceError, match="Could not resolve host") as caught:
        source.fetch("AAPL")

    quoted = str(caught.value).split("yfinance said: ")[1].split(")")[0]
    assert len(quoted) <= 160


def test_yahoo_wraps_exceptions_from_download() -> None:
    source = YahooSource(clock=FakeClock(), download=RecordingDownload(RuntimeError("boom")))
    with pytest.raises(DataSourceError, match=r"AAPL.*RuntimeError: boom.*csv:DIR") as caught:
        source.fetch("AAPL")
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_yahoo_validates_before_downloading() -> None:
    download = RecordingDownload(RuntimeError("must not be called"))
    source = YahooSource(clock=FakeClock(), download=download)
    with pytest.raises(InvalidTickerError):
        source.fetch("../etc")
    with pytest.raises(InvalidParameterError, match="after end"):
        source.fetch("AAPL", date(2024, 2, 1), date(2024, 1, 1))
    assert download.calls == []


# --- CsvSource ---------------------------------------------------------------------------


def test_csv_reads_flat_and_yfinance_layouts_alike(tmp_path: Path) -> None:
    raw = synthetic_prices("AAPL", rows=50)
    write_flat_csv(raw, tmp_path / "flat" / "AAPL.csv")
    write_yfinance_csv(raw, "AAPL", tmp_path / "yf" / "AAPL.csv")

    flat = CsvSource(tmp_path / "flat").fetch("AAPL")
    downloaded = CsvSource(tmp_path / "yf").fetch("aapl")

    for prices in (flat, downloaded):
        assert_canonical(prices.frame)
        assert len(prices.frame) == 50 and prices.dropped_rows == 0
    pd.testing.assert_frame_equal(
        flat.frame.drop(columns="adj_close"),
        downloaded.frame.drop(columns="adj_close"),
        rtol=1e-6,
    )
    np.testing.assert_allclose(flat.frame["adj_close"], raw["Adj Close"], rtol=1e-6)
    assert downloaded.frame["adj_close"].isna().all()


@pytest.mark.parametrize("layout", ["flat", "yfinance"])
def test_csv_holiday_rows_are_dropped_and_counted(tmp_path: Path, layout: str) -> None:
    raw = blank_days(synthetic_prices("KO", rows=30), ["2018-01-15", "2018-02-09"])
    path = tmp_path / "KO.csv"
    if layout == "flat":
        write_flat_csv(raw, path)
    else:
        write_yfinance_csv(raw, "KO", path)
    assert ",,,," in path.read_text()

    prices = CsvSource(tmp_path).fetch("KO")

    assert prices.dropped_rows == 2
    assert prices.drop_reasons == {"no prices": 2}
    assert len(prices.frame) == 28
    assert pd.Timestamp("2018-01-15") not in prices.frame.index
    assert pd.Timestamp("2018-01-16") in prices.frame.index


def test_csv_clips_to_inclusive_range(tmp_path: Path) -> None:
    write_flat_csv(synthetic_prices("IBM", rows=20, start="2024-01-01"), tmp_path / "IBM.csv")
    source = CsvSource(tmp_path)

    frame = source.fetch("IBM", date(2024, 1, 3), date(2024, 1, 9)).frame

    assert frame.index.strftime("%Y-%m-%d").tolist() == [
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
        "2024-01-08",
        "2024-01-09",
    ]
    with pytest.raises(DataSourceError, match="nothing within"):
        source.fetch("IBM", date(2030, 1, 1))
    assert source.name == f"csv:{tmp_path}" and not source.supports_incremental


def test_csv_missing_file_lists_available_tickers(tmp_path: Path) -> None:
    for ticker in ("AAPL", "MSFT"):
        write_flat_csv(synthetic_prices(ticker, rows=5), tmp_path / f"{ticker}.csv")
    with pytest.raises(DataSourceError) as caught:
        CsvSource(tmp_path).fetch("TSLA")
    message = str(caught.value)
    assert str(tmp_path / "TSLA.csv") in message
    assert "AAPL, MSFT" in message


def test_csv_listing_is_capped_at_ten(tmp_path: Path) -> None:
    for index in range(12):
        (tmp_path / f"T{index:02d}.csv").write_text("Date,Close\n2024-01-02,1\n")
    with pytest.raises(DataSourceError, match=r"T09 and 2 more") as caught:
        CsvSource(tmp_path).fetch("ZZ")
    assert "T10" not in str(caught.value)


def test_csv_missing_folder_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataSourceError, match=str(missing)):
        CsvSource(missing).fetch("AAPL")


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe\x00garbage\x00\x81", b"Date,Open\n2024-01-02,1\n", b"a,b\n1,2\n"],
    ids=["empty", "binary", "no-close", "no-date"],
)
def test_csv_unparseable_file_raises_data_source_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "BAD.csv").write_bytes(content)
    with pytest.raises(DataSourceError, match=r"BAD\.csv"):
        CsvSource(tmp_path).fetch("BAD")


def test_csv_file_name_matches_case_insensitively(tmp_path: Path) -> None:
    write_flat_csv(synthetic_prices("PETR4.SA", rows=5), tmp_path / "petr4.sa.csv")
    assert len(CsvSource(tmp_path).fetch("PETR4.SA").frame) == 5


def test_csv_index_ticker_maps_to_safe_file_stem(tmp_path: Path) -> None:
    write_flat_csv(synthetic_prices("^GSPC", rows=5), tmp_path / "_GSPC.csv")
    assert len(CsvSource(tmp_path).fetch("^gspc").frame) == 5


def test_shared_jpm_file_drops_its_six_holiday_rows() -> None:
    path = SHARED_PRICES / "JPM.csv"
    if not path.exists():
        pytest.skip("shared real-price files are not available on this machine")
    prices = CsvSource(SHARED_PRICES).fetch("JPM")
    assert prices.dropped_rows == 6
    assert prices.drop_reasons == {"no prices": 6}
    assert len(prices.frame) == 2943 - 6
    assert pd.Timestamp("2012-10-29") not in prices.frame.index


def test_shared_yfinance_download_file_is_read() -> None:
    if not SHARED_DOWNLOAD.exists():
        pytest.skip("shared yfinance layout file is not available on this machine")
    frame = normalize_ohlcv(pd.read_csv(SHARED_DOWNLOAD, header=[0, 1], index_col=0), "PETR4.SA")
    assert frame.frame.index[0] == pd.Timestamp("2015-01-02")
    assert frame.frame["close"].iloc[0] == pytest.approx(2.572509527206421)


# --- source_from_spec --------------------------------------------------------------------


def test_source_from_spec_builds_each_source(tmp_path: Path) -> None:
    yahoo = source_from_spec("yahoo", history_years=2, clock=FakeClock())
    assert isinstance(yahoo, YahooSource) and yahoo.history_years == 2
    csv = source_from_spec(f"csv:{tmp_path}")
    assert isinstance(csv, CsvSource) and csv.directory == tmp_path


@pytest.mark.parametrize("spec", ["", "csv:", "google", "csv", "file:/tmp"])
def test_source_from_spec_rejects_unknown_forms(spec: str) -> None:
    with pytest.raises(InvalidParameterError, match=r"'yahoo' or 'csv:DIR'"):
        source_from_spec(spec)


def test_yahoo_rejects_a_future_start_without_end() -> None:
    download = RecordingDownload(RuntimeError("must not be called"))
    with pytest.raises(InvalidParameterError, match="in the future"):
        YahooSource(clock=FakeClock(), download=download).fetch("AAPL", date(2030, 1, 1))
    assert download.calls == []


def test_csv_reads_download_layout_grouped_by_ticker(tmp_path: Path) -> None:
    raw = synthetic_prices("MSFT", rows=10)
    write_yfinance_csv(raw, "MSFT", tmp_path / "MSFT.csv")
    swapped = pd.read_csv(tmp_path / "MSFT.csv", header=[0, 1], index_col=0)
    swapped.columns = swapped.columns.swaplevel(0, 1)
    swapped.to_csv(tmp_path / "MSFT.csv")
    assert (tmp_path / "MSFT.csv").read_text().startswith("Ticker,")

    frame = CsvSource(tmp_path).fetch("MSFT").frame

    np.testing.assert_allclose(frame["close"].to_numpy(), raw["Close"].to_numpy(), rtol=1e-9)


def test_a_mistyped_csv_ticker_gets_a_did_you_mean(tmp_path: Path) -> None:
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.data.synthetic import write_fixture_folder

    folder = write_fixture_folder(tmp_path / "prices", ("AAPL", "MSFT"), rows=50)
    with pytest.raises(DataSourceError, match=r"APPL \(did you mean AAPL\?\)"):
        CsvSource(folder).check_ticker("APPL")
    with pytest.raises(DataSourceError) as caught:
        CsvSource(folder).check_ticker("ZZZZ")
    assert "did you mean" not in str(caught.value) and "AAPL, MSFT" in str(caught.value)
    assert CsvSource(folder).check_ticker("aapl").name == "AAPL.csv"


def test_run_refuses_a_missing_csv_ticker_before_any_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stock_lstm.cli import main
    from stock_lstm.data.synthetic import write_fixture_folder
    from stock_lstm.pipeline import runner

    folder = write_fixture_folder(tmp_path / "prices", ("AAPL",), rows=50)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "run_pipeline", lambda *a, **k: pytest.fail("kernel started"))
    code = main(["run", "train", "--ticker", "APPL", "--source", f"csv:{folder}"])
    assert code == 2
    assert "did you mean AAPL?" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()
