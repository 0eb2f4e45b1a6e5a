"""Training's commands: ``train`` (train, register and activate a model) and
``train-universe`` (one network on a whole folder of tickers)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stock_lstm.cli.common import (
    _context,
    _emit,
    _iso_date,
    _push,
    _range_options,
    _source_option,
    add_train_param_flags,
    given_train_params,
)
from stock_lstm.cli.formatting import format_interval_table, format_metrics_table


def add_train(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``train TICKER``: train, register and activate a model."""
    train = commands.add_parser(
        "train",
        parents=[common],
        help="train, register and activate a model for a ticker",
        description="Train an LSTM on TICKER's closes (chronological 70/15/15 split, scaler "
        "fitted on the training slice only, early stopping on validation loss), report "
        "test-set MAE/RMSE/MAPE beside persistence, save the artifacts and make the model "
        "the ticker's active one.",
    )
    train.add_argument("ticker", help="Yahoo Finance symbol, e.g. AAPL")
    add_train_param_flags(train)
    train.add_argument(
        "--force",
        action="store_true",
        help="activate the new model even if it fails the promotion gate (validation rMAE at "
        "h=1 above STOCK_LSTM_GATE_THRESHOLD, default 1.0)",
    )
    train.add_argument("--force-sync", action="store_true", help="re-download prices first")
    train.add_argument(
        "--warm-start",
        action="store_true",
        help="start from the active model's weights when it has the same network (a daily "
        "retrain then needs a few epochs; early stopping still decides on this validation slice)",
    )
    train.add_argument(
        "--from",
        dest="from_version",
        metavar="UNIVERSAL_VERSION",
        help="fine-tune a universal version (`stock-lstm train-universe`) on this ticker: its "
        "network and data settings, trained further from its weights",
    )
    train.add_argument("--job-id", help="record progress in this TrainingJob row")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _source_option(train)
    _range_options(train)
    train.set_defaults(handler=_cmd_train)


def _train_params(args: argparse.Namespace) -> Any:
    from stock_lstm.models.params import TrainParams  # no torch: checked in milliseconds

    return TrainParams.from_dict(given_train_params(args))


def _cmd_train(args: argparse.Namespace) -> int:
    params = _train_params(args)  # a bad value is one line before torch is even imported
    from stock_lstm.workflows import register_outcome, train_ticker

    ctx = _context(args)
    if args.from_version:
        from stock_lstm.universal_workflows import fine_tune_from_universal

        given = given_train_params(args)
        outcome = fine_tune_from_universal(
            ctx,
            args.from_version,
            args.ticker,
            given,
            force=args.force,
            show_progress=not (args.no_progress or args.json),
        )
    else:
        outcome = train_ticker(
            ctx,
            args.ticker,
            params,
            start=args.start,
            end=args.end,
            force_sync=args.force_sync,
            job_id=args.job_id,
            show_progress=not (args.no_progress or args.json),
            warm_start=args.warm_start,
        )
        register_outcome(ctx, outcome, force=args.force, job_id=args.job_id)
    _push(
        ctx.settings,
        "stock-lstm-train",
        training_seconds=outcome.result.train_seconds,
        status="completed",
        ticker=outcome.ticker,
        cache_hits=int(outcome.sync.from_cache),
        cache_misses=int(not outcome.sync.from_cache),
    )
    gate = outcome.gate
    if gate is None or gate.status != "passed":
        status, reason = (gate.status, gate.reason) if gate else (None, None)
        print(f"warning: gate: {status}: {reason}", file=sys.stderr)

    def human() -> str:
        from stock_lstm.evaluation.eda import baseline_verdict
        from stock_lstm.models.registry import registry_outcome

        prices, result, artifacts = outcome.prices, outcome.result, outcome.artifacts
        version = artifacts.version_id if artifacts else None
        active = bool(outcome.record and outcome.record.is_active)
        return "\n".join(
            [
                f"{outcome.ticker}: model {version} ({'active' if active else 'inactive'})",
                f"data: {len(prices)} rows {prices.index[0].date()}..{prices.index[-1].date()}; "
                f"{result.epochs_run} epochs (best {result.best_epoch}) "
                f"in {result.train_seconds:.1f} s"
                + (
                    f", warm-started from {outcome.warm_started_from}"
                    if outcome.warm_started_from
                    else ""
                ),
                f"test set ({outcome.metrics.n} days), model beside persistence "
                "(tomorrow = today):",
                format_metrics_table(outcome.metrics),
                *filter(None, [format_interval_table(outcome.metrics)]),
                baseline_verdict(outcome.metrics),
                *([registry_outcome(ctx.db, version)] if version else []),
                *(
                    [f"artifacts: {artifacts.model_path}, {artifacts.scaler_path}"]
                    if artifacts
                    else []
                ),
            ]
        )

    payload = outcome.to_dict()
    _emit(args, payload, human)
    return 0


def add_train_universe(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``train-universe --csv-dir DIR``: one network trained on every ticker of a folder."""
    parser = commands.add_parser(
        "train-universe",
        parents=[common],
        help="train one universal network on every ticker of a CSV folder",
        description="Pool the windows of every <TICKER>.csv in --csv-dir (each ticker encoded "
        "from its own training rows, so the network applies to tickers it never saw), validate "
        "on the universe's last 15%% of dates, and keep the network as a universal version. "
        "`activate VERSION --ticker X` then serves it for X; `train X --from VERSION` "
        "fine-tunes it.",
    )
    parser.add_argument("--csv-dir", required=True, help="folder of <TICKER>.csv files")
    parser.add_argument(
        "--until", type=_iso_date, help="read nothing dated on or after this day (YYYY-MM-DD)"
    )
    parser.add_argument("--tickers", help="comma-separated subset (default: every file)")
    add_train_param_flags(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the epoch lines")
    parser.set_defaults(handler=_cmd_train_universe)


def _cmd_train_universe(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stock_lstm.universal_workflows import train_universe

    quiet = args.no_progress or args.json

    def progress(epoch: int, train_loss: float, val_loss: float) -> None:
        if not quiet:
            print(
                f"epoch {epoch}: train {train_loss:.4f}, validation {val_loss:.4f}", file=sys.stderr
            )

    record = train_universe(
        _context(args),
        Path(args.csv_dir),
        _train_params(args),
        until=args.until,
        tickers=[t.strip() for t in args.tickers.split(",")] if args.tickers else None,
        progress=progress,
    )
    payload = record.model_dump(mode="json")
    payload["tickers"] = len(record.tickers)

    def human() -> str:
        return "\n".join(
            [
                f"universal version {record.version_id}: {len(record.tickers)} tickers, "
                f"{record.train_origins} training origins, validation from "
                f"{record.validation_start}"
                + (f", nothing read on or after {record.until}" if record.until else ""),
                f"{record.epochs_run} epochs (best {record.best_epoch}) in "
                f"{record.train_seconds:.1f} s",
                f"serve it: stock-lstm activate {record.version_id} --ticker TICKER",
            ]
        )

    _emit(args, payload, human)
    return 0
