"""What every command shares: the common options, the settings a call's flags make, the
database context (after reconciling what a dead process left behind), printing and exit codes.

The names keep their leading underscore: they are for the command modules of this package
only, and keeping their old spelling keeps the handlers' bodies as they were in ``cli.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from stock_lstm.models.params import PARAMETERS, parameter_help, parameter_type

EXIT_USER_ERROR = 2


#: Every training parameter's flag type and help, made from its one declaration
#: (``models.params.PARAMETERS``): the API's fields and notebook 03's table come from there too.
TRAIN_PARAM_HELP: dict[str, tuple[type, str]] = {
    name: (parameter_type(name), parameter_help(name)) for name in PARAMETERS
}


def add_train_param_flags(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per training parameter (but ``skip``), and ``--network-option NAME=VALUE``
    for a network's own constructor options."""
    for name, (kind, text) in TRAIN_PARAM_HELP.items():
        if name not in skip:
            parser.add_argument(f"--{name.replace('_', '-')}", type=kind, dest=name, help=text)
    parser.add_argument(
        "--network-option",
        action="append",
        dest="network_options",
        metavar="NAME=VALUE",
        type=_network_option,
        help="an option of the network's own constructor that no flag names, e.g. "
        "kernel_size=5 for a convolutional network (repeatable)",
    )


def given_train_params(args: argparse.Namespace, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The training parameters given on the command line (None: not given), by name."""
    given = {
        name: getattr(args, name)
        for name in TRAIN_PARAM_HELP
        if name not in skip and getattr(args, name, None) is not None
    }
    options = getattr(args, "network_options", None)
    if options:
        given["network_options"] = dict(options)
    return given


def _network_option(text: str) -> tuple[str, Any]:
    """``kernel_size=5`` -> ("kernel_size", 5): a whole number, a number or a word."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE, e.g. kernel_size=5")
    for kind in (int, float):
        try:
            return name, kind(value)
        except ValueError:
            continue
    return name, value


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2020-01-31") from exc


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    common.add_argument(
        "--database-url", help="SQLAlchemy URL (env STOCK_LSTM_DATABASE_URL; SQLite by default)"
    )
    common.add_argument("--models-dir", help="artifact folder (env STOCK_LSTM_MODELS_DIR)")
    common.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    return common


def _source_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        help="price source: 'yahoo' (default, env STOCK_LSTM_SOURCE) or 'csv:DIR', a folder "
        "of <TICKER>.csv files (e.g. csv:../shared/data/prices)",
    )


def _range_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=_iso_date, help="first date to use (YYYY-MM-DD)")
    parser.add_argument("--end", type=_iso_date, help="last date to use (YYYY-MM-DD)")


#: CLI flags that override a setting: (argparse dest, Settings field, flag named in errors).
SETTING_FLAGS = (
    ("database_url", "database_url", "--database-url"),
    ("models_dir", "models_dir", "--models-dir"),
    ("source", "source", "--source"),
)


def _settings_from(args: argparse.Namespace) -> Any:
    """The environment's settings with this call's flags on top; a bad value in either is a
    ``SettingsError`` naming the flag or the variable it came from."""
    from stock_lstm.config import get_settings, load_settings

    overrides: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for dest, field, flag in SETTING_FLAGS:
        if getattr(args, dest, None):
            overrides[field] = getattr(args, dest)
            labels[field] = flag
    if not overrides:
        return get_settings()
    return load_settings(overrides, labels=labels)


def _context(args: argparse.Namespace) -> Any:
    from stock_lstm.workflows import AppContext

    ctx = AppContext.create(_settings_from(args))
    _reconcile_jobs(ctx.db)
    _reconcile_runs(ctx.settings)
    return ctx


def _reconcile_jobs(db: Any) -> None:
    """Fail the training jobs whose process on this host is gone (a kill -9, a crash), so
    every command sees the truth; one query when there are none."""
    from stock_lstm.models.jobs import reconcile_jobs

    for job_id in reconcile_jobs(db):
        print(f"warning: training job {job_id} was interrupted: marked failed", file=sys.stderr)


def _reconcile_runs(settings: Any) -> None:
    """Mark the runs whose process on this host is gone as failed (their ``run.json`` said
    ``running`` forever) and render what they had written; nothing to do is one glob."""
    from stock_lstm.pipeline.run_recovery import reconcile_runs

    marked = reconcile_runs(Path(settings.reports_dir))
    for run_dir in marked:
        print(f"warning: run {run_dir} was interrupted: marked failed", file=sys.stderr)
    if marked:
        from stock_lstm.pipeline.run_index import build_index

        build_index(Path(settings.reports_dir).resolve(), settings.database_url)


def _reconcile_database(settings: Any) -> None:
    """``_reconcile_jobs`` and ``_reconcile_runs`` for commands that hand the database to
    notebooks (``run``)."""
    from stock_lstm.db import Database

    db = Database(settings.database_url, busy_timeout_seconds=settings.sqlite_busy_timeout_seconds)
    try:
        _reconcile_jobs(db)
    finally:
        db.dispose()
    _reconcile_runs(settings)


def _json_value(value: Any) -> Any:
    """``--json``'s encoder for what ``json`` cannot write: a typed record in its JSON form
    (``str`` of one would be its repr), anything else (dates, paths) as text."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def _emit(args: argparse.Namespace, payload: dict[str, Any], human: Callable[[], str]) -> None:
    if args.json:
        print(json.dumps(payload, default=_json_value))
    else:
        print(human())


def _push(settings: Any, job: str, **values: Any) -> None:
    from stock_lstm.monitoring.pushgateway import push_batch_metrics

    push_batch_metrics(settings.pushgateway_url, job, **values)
