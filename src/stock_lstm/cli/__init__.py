"""``stock-lstm``: the command line. Thin: parse, call ``workflows``, print.

Every expected failure is a ``StockLSTMError``: printed as one line on stderr, exit code 2.
torch and friends are imported only by the commands that need them, so ``--help`` is instant.

One module per command group, each holding its commands' parsers (``add_<command>``) and
handlers (``_cmd_<command>``): ``data`` (sync), ``training`` (train), ``models`` (predict,
models, activate), ``runs`` (run, reports, compare), ``experiments`` (backtest, sweep, evaluate) and
``serve``; ``common`` has what they share, ``formatting`` the tables they print. A new
command is an ``add_<command>`` and its handler in its group's module, called below.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from stock_lstm import __version__
from stock_lstm.cli import data, experiments, models, runs, serve, training
from stock_lstm.cli.common import (
    EXIT_USER_ERROR,
    SETTING_FLAGS,
    TRAIN_PARAM_HELP,
    _common_options,
    _settings_from,
)
from stock_lstm.cli.formatting import (
    format_backtest_headline,
    format_backtest_intervals,
    format_interval_table,
    format_metrics_table,
)
from stock_lstm.errors import StockLSTMError

#: Exit status after the reader of stdout went away (128 + SIGPIPE, as a shell reports it).
EXIT_BROKEN_PIPE = 141

#: What ``stock_lstm.cli`` offered as a module, still importable from here.
__all__ = [
    "EXIT_USER_ERROR",
    "SETTING_FLAGS",
    "TRAIN_PARAM_HELP",
    "build_parser",
    "format_backtest_headline",
    "format_backtest_intervals",
    "format_interval_table",
    "format_metrics_table",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    """The whole CLI; each sub-command's --help explains what it does and prints."""
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="stock-lstm",
        description="Forecast daily stock prices with an LSTM, always beside the persistence "
        "forecast (tomorrow = today). Prices are cached in a database and refreshed when older "
        "than STOCK_LSTM_CACHE_EXPIRY_HOURS (24).",
        epilog="Offline? Use --source csv:DIR. Errors exit with code 2 and say what to do.",
    )
    parser.add_argument("--version", action="version", version=f"stock-lstm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # In the order --help lists them.
    data.add_sync(commands, common)
    training.add_train(commands, common)
    training.add_train_universe(commands, common)
    models.add_predict(commands, common)
    models.add_models(commands, common)
    models.add_activate(commands, common)
    models.add_migrate_artifacts(commands, common)
    runs.add_run(commands, common)
    experiments.add_backtest(commands, common)
    experiments.add_sweep(commands, common)
    experiments.add_evaluate(commands, common)
    runs.add_reports(commands, common)
    runs.add_compare(commands, common)
    serve.add_serve(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stock-lstm`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # yfinance logs every failed request itself; our error line already quotes the cause.
        logging.getLogger("yfinance").propagate = False
    try:
        _settings_from(args)  # every setting checked before any command does any work
        return int(args.handler(args))
    except StockLSTMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left early (`stock-lstm models --json | head`): not an error to report.
        # stdout goes to devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
