"""The price cache's command: ``sync``."""

from __future__ import annotations

import argparse
import sys

from stock_lstm.cli.common import _context, _emit, _range_options, _source_option


def add_sync(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``sync TICKER``: fill the price cache."""
    sync = commands.add_parser(
        "sync",
        parents=[common],
        help="download or refresh a ticker's prices into the cache",
        description="Fill the price cache for TICKER. Cached rows younger than the expiry are "
        "reused; otherwise only the missing days are fetched where the source allows it.",
    )
    sync.add_argument("ticker", help="Yahoo Finance symbol, e.g. AAPL or PETR4.SA")
    sync.add_argument("--force", action="store_true", help="re-download even if the cache is fresh")
    _source_option(sync)
    _range_options(sync)
    sync.set_defaults(handler=_cmd_sync)


def _cmd_sync(args: argparse.Namespace) -> int:
    from stock_lstm.workflows import sync_ticker

    result = sync_ticker(
        _context(args), args.ticker, force=args.force, start=args.start, end=args.end
    )
    if result.warning:
        print(f"warning: {result.warning}", file=sys.stderr)

    def human() -> str:
        how = "from cache" if result.from_cache else "downloaded"
        if result.incremental:
            how = "incremental download"
        dropped = ""
        if result.dropped_rows:
            reasons = ", ".join(f"{n} {why}" for why, n in result.drop_reasons.items())
            dropped = f"; dropped {result.dropped_rows} rows ({reasons})"
        return (
            f"{result.ticker}: {result.rows} rows {result.first_date}..{result.last_date} "
            f"({how}, {result.downloaded_rows} written{dropped})"
        )

    _emit(args, result.to_dict(), human)
    return 0
