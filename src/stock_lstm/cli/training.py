"""Training's command: ``train`` (train, register and activate a model)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stock_lstm.cli.common import (
    TRAIN_PARAM_HELP,
    _context,
    _emit,
    _push,
    _range_options,
    _source_option,
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
    for name, (kind, text) in TRAIN_PARAM_HELP.items():
        train.add_argument(f"--{name.replace('_', '-')}", type=kind, dest=name, help=text)
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
    train.add_argument("--job-id", help="record progress in this TrainingJob row")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _source_option(train)
    _range_options(train)
    train.set_defaults(handler=_cmd_train)


def _train_params(args: argparse.Namespace) -> Any:
    from stock_lstm.models.training import TrainParams

    given = {
        name: getattr(args, name) for name in TRAIN_PARAM_HELP if getattr(args, name) is not None
    }
    return TrainParams.from_dict(given)


def _cmd_train(args: argparse.Namespace) -> int:
    from stock_lstm.workflows import register_outcome, train_ticker

    params = _train_params(args)
    ctx = _context(args)
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
    payload = outcome.to_dict()
    gate = payload["gate"] or {}
    if gate.get("status") != "passed":
        print(f"warning: gate: {gate.get('status')}: {gate.get('reason')}", file=sys.stderr)

    def human() -> str:
        data = payload["data"]
        return "\n".join(
            [
                f"{payload['ticker']}: model {payload['version_id']} "
                f"({'active' if payload['active'] else 'inactive'})",
                f"data: {data['rows']} rows {data['first_date']}..{data['last_date']}; "
                f"{payload['epochs_run']} epochs (best {payload['best_epoch']}) "
                f"in {payload['train_seconds']:.1f} s"
                + (
                    f", warm-started from {outcome.warm_started_from}"
                    if outcome.warm_started_from
                    else ""
                ),
                f"test set ({payload['metrics']['n']} days), model beside persistence "
                "(tomorrow = today):",
                format_metrics_table(outcome.metrics),
                *filter(None, [format_interval_table(outcome.metrics)]),
                f"gate: {gate.get('status')} ({gate.get('reason')})",
                f"artifacts: {payload['model_path']}, {payload['scaler_path']}",
            ]
        )

    _emit(args, payload, human)
    return 0
