"""Trading-day arithmetic on real exchange calendars (``exchange_calendars``), not guesses."""

from __future__ import annotations

import contextlib
import warnings
from datetime import date
from functools import lru_cache
from typing import Any

import pandas as pd

#: Yahoo symbol suffix -> ISO 10383 MIC of the exchange calendar. No suffix: NYSE.
SUFFIX_TO_EXCHANGE: dict[str, str] = {
    "SA": "BVMF",
    "L": "XLON",
    "TO": "XTSE",
    "DE": "XETR",
    "F": "XFRA",
    "PA": "XPAR",
    "AS": "XAMS",
    "MI": "XMIL",
    "MC": "XMAD",
    "SW": "XSWX",
    "T": "XTKS",
    "HK": "XHKG",
    "AX": "XASX",
    "NS": "XBOM",
    "BO": "XBOM",
    "KS": "XKRX",
    "SS": "XSHG",
    "SZ": "XSHG",
    "MX": "XMEX",
}
DEFAULT_EXCHANGE = "XNYS"


def exchange_for_ticker(ticker: str) -> str:
    """The exchange calendar a Yahoo ticker trades on (``PETR4.SA`` -> ``BVMF``)."""
    if "." in ticker:
        return SUFFIX_TO_EXCHANGE.get(ticker.rsplit(".", 1)[1], DEFAULT_EXCHANGE)
    return DEFAULT_EXCHANGE


@lru_cache(maxsize=16)
def _calendar(exchange: str) -> Any:
    import exchange_calendars

    with warnings.catch_warnings():
        # exchange_calendars still uses pandas APIs that pandas 3.1 deprecates; not ours to fix.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        with contextlib.suppress(ImportError):
            from pandas.errors import Pandas4Warning

            warnings.simplefilter("ignore", Pandas4Warning)
        return exchange_calendars.get_calendar(exchange)


def next_trading_days(ticker: str, after: date, count: int) -> list[date]:
    """The ``count`` sessions strictly after ``after`` on the ticker's exchange.

    Falls back to weekdays (Mon-Fri) beyond the calendar's known range, which exchange
    calendars only publish about a year ahead. Answers are remembered: every forecast of a
    ticker asks the same question until its prices gain a day.
    """
    return list(_next_sessions(exchange_for_ticker(ticker), after, count))


@lru_cache(maxsize=1024)
def _next_sessions(exchange: str, after: date, count: int) -> tuple[date, ...]:
    calendar = _calendar(exchange)
    start = pd.Timestamp(after) + pd.Timedelta(days=1)
    days: list[date] = []
    if calendar.first_session <= start <= calendar.last_session:
        end = min(calendar.last_session, start + pd.Timedelta(days=count * 3 + 14))
        sessions = calendar.sessions_in_range(start, end)
        days = [session.date() for session in sessions[:count]]
    cursor = pd.Timestamp(days[-1] if days else after)
    while len(days) < count:
        cursor = cursor + pd.offsets.BDay(1)
        days.append(cursor.date())
    return tuple(days)
