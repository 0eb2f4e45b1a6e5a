"""The commands on registered models: ``predict`` with the active one, list them
(``models``), ``activate`` one."""

from __future__ import annotations

import argparse
import sys

from stock_lstm.cli.common import EXIT_USER_ERROR, _context, _emit, _source_option
from stock_lstm.cli.formatting import _number, format_interval_table
from stock_lstm.paging import CLI_PAGE_SIZE, MAX_PAGE_SIZE


def add_predict(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``predict TICKER``: forecast with the ticker's active model."""
    predict = commands.add_parser(
        "predict",
        parents=[common],
        help="forecast the next trading days with the active model",
        description="Forecast DAYS trading days (exchange calendar) after the last cached close "
        "with TICKER's active model, feeding each prediction back as input.",
    )
    predict.add_argument(
        "ticker", nargs="?", help="a ticker with an active model (see `stock-lstm models`)"
    )
    predict.add_argument(
        "--all",
        action="store_true",
        help="every ticker with an active model: one line each, failures listed (exit 1)",
    )
    predict.add_argument("--days", type=int, default=5, help="trading days ahead, 1..30 (5)")
    _source_option(predict)
    predict.set_defaults(handler=_cmd_predict)


def add_models(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``models [TICKER]``: list the registered versions."""
    models = commands.add_parser(
        "models",
        parents=[common],
        help="list registered model versions",
        description="List model versions (newest first) with their test metrics beside "
        "persistence; * marks each ticker's active model.",
    )
    models.add_argument("ticker", nargs="?", help="only this ticker")
    models.add_argument(
        "--limit",
        type=int,
        default=CLI_PAGE_SIZE,
        metavar="N",
        help=f"versions per page, 1..{MAX_PAGE_SIZE} (default {CLI_PAGE_SIZE})",
    )
    models.add_argument(
        "--cursor", metavar="VERSION", help="start after this version (the line a page ends with)"
    )
    from stock_lstm.evaluation.metrics import POINT_METRICS  # numpy only: no torch

    models.add_argument(
        "--metric",
        choices=tuple(POINT_METRICS),
        default="mae",
        help="the test metric shown beside persistence's (default mae; rMAE stays the ratio "
        "of MAEs the gate and the Diebold-Mariano test read)",
    )
    models.set_defaults(handler=_cmd_models)


def add_activate(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``activate VERSION_ID``: make a version its ticker's active model."""
    activate = commands.add_parser(
        "activate",
        parents=[common],
        help="make a registered version its ticker's active model",
        description="Activate VERSION_ID; the ticker's previously active model becomes inactive "
        "in the same transaction.",
    )
    activate.add_argument("version_id", help="a version from `stock-lstm models`")
    activate.add_argument(
        "--ticker",
        help="with a universal version (UNIVERSAL_...): register it as this ticker's model, "
        "scored and gated on the ticker's own rows, and activate it if the gate passes",
    )
    activate.add_argument(
        "--force", action="store_true", help="with --ticker: activate even if the gate fails"
    )
    _source_option(activate)
    activate.set_defaults(handler=_cmd_activate)


def add_migrate_artifacts(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``migrate-artifacts``: convert legacy pickled scalers to JSON, once."""
    migrate = commands.add_parser(
        "migrate-artifacts",
        parents=[common],
        help="convert versions saved with a pickled scaler (_scaler.joblib) to JSON, once",
        description="Versions saved before the JSON scaler format are refused by predict (a "
        "pickle can run code). This reads each one with an unpickler that accepts only the "
        "encoder classes and numpy arrays, and only the version's own file in the models "
        "folder with its recorded sha256; it writes <version>_scaler.json, points the registry "
        "row at it and deletes the pickle. Anything else is refused and left as it was.",
    )
    migrate.add_argument(
        "--dry-run", action="store_true", help="say what would be converted; change nothing"
    )
    migrate.set_defaults(handler=_cmd_migrate_artifacts)


def _cmd_migrate_artifacts(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stock_lstm.models.legacy import migrate_artifacts

    ctx = _context(args)
    report = migrate_artifacts(ctx.db, Path(ctx.settings.models_dir), dry_run=args.dry_run)
    verb = "would convert" if args.dry_run else "converted"

    def human() -> str:
        lines = [f"{verb} {len(report.converted)} legacy scaler(s) to JSON"]
        lines += [f"  {version}" for version in report.converted]
        lines += [f"refused {version}: {why}" for version, why in report.refused.items()]
        return "\n".join(lines)

    _emit(args, {"converted": report.converted, "refused": report.refused}, human)
    return EXIT_USER_ERROR if report.refused else 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from stock_lstm.cli.formatting import combination_note
    from stock_lstm.errors import InvalidParameterError
    from stock_lstm.workflows import predict_ticker

    if args.all == (args.ticker is not None):
        raise InvalidParameterError(
            "name one TICKER or pass --all (every ticker with an active model), not both"
            if args.all
            else "name a TICKER to forecast, or pass --all for every ticker with an active model"
        )
    if args.all:
        return _predict_all(args)
    forecast = predict_ticker(_context(args), args.ticker, args.days)
    for warning in forecast.warnings:
        print(f"warning: {warning}", file=sys.stderr)

    def human() -> str:
        lines = [
            f"{forecast.ticker} ({forecast.version_id}): last close {forecast.last_close:.4f} "
            f"on {forecast.last_date}"
        ]
        level = forecast.interval_level
        header = f"  {'date':<12}{'close':>12}"
        if level:
            header += f"{f'{level:.0%} interval':>26}"
        lines.append(header)
        for point in forecast.predictions:
            line = f"  {point.date!s:<12}{point.close:>12.4f}"
            if point.lower is not None and point.upper is not None:
                line += f"{point.lower:>13.4f}{point.upper:>13.4f}"
            lines.append(line)
        if forecast.combined_with:
            lines.append(f"  {combination_note(forecast.combined_with)}")
        return "\n".join(lines)

    _emit(args, forecast.to_dict(), human)
    return 0


def _predict_all(args: argparse.Namespace) -> int:
    """Forecast every active ticker in this process, one after another; a ticker that fails
    is listed with its error and does not stop the rest (exit 1 when any failed).

    Why in-process: a forecast is tens of milliseconds once its model is loaded, so 200
    tickers take seconds; a Dask task each would cost more in start-up than it saves.
    """
    from stock_lstm.errors import StockLSTMError
    from stock_lstm.models.forecasting import validate_days
    from stock_lstm.models.registry import active_tickers
    from stock_lstm.workflows import predict_ticker

    days = validate_days(args.days)
    ctx = _context(args)
    tickers = active_tickers(ctx.db)
    forecasts, failed = [], {}
    for ticker in tickers:
        try:
            forecasts.append(predict_ticker(ctx, ticker, days))
        except StockLSTMError as exc:
            failed[ticker] = str(exc)
    warned = [f for f in forecasts if f.warnings]
    if warned:
        print(
            f"warning: {len(warned)} of {len(forecasts)} forecasts carry a warning (all in "
            f"--json), e.g. {warned[0].ticker}: {warned[0].warnings[0]}",
            file=sys.stderr,
        )
    payload = {
        "days": days,
        "forecasts": [f.to_dict() for f in forecasts],
        "failed": failed,
    }

    def human() -> str:
        if not tickers:
            return "no active models yet: train one with `make train TICKER=AAPL`"
        level = next((f.interval_level for f in forecasts if f.interval_level), None)
        interval = f"{level:.0%} interval" if level else ""
        lines = [
            f"  {'ticker':<8}{'last close':>12}  {'on':<12}{f'day {days}':>12}"
            f"{interval:>26}  version"
        ]
        for f in forecasts:
            last = f.predictions[-1]
            bounds = (
                f"{last.lower:>13.4f}{last.upper:>13.4f}"
                if last.lower is not None and last.upper is not None
                else f"{'':>26}"
            )
            lines.append(
                f"  {f.ticker:<8}{f.last_close:>12.4f}  {f.last_date!s:<12}{last.close:>12.4f}"
                f"{bounds}  {f.version_id}"
            )
        lines += [f"  {ticker:<8}failed: {why}" for ticker, why in failed.items()]
        lines.append(
            f"{len(forecasts)} of {len(tickers)} active tickers forecast {days} trading day(s)"
            + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else "")
        )
        return "\n".join(lines)

    _emit(args, payload, human)
    return 1 if failed else 0


def _cmd_models(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stock_lstm.models.registry import active_universal_sources, list_models_page
    from stock_lstm.models.universal import list_universal

    ctx = _context(args)
    page = list_models_page(ctx.db, args.ticker, limit=args.limit, cursor=args.cursor)
    records = page.items
    universal = list_universal(Path(ctx.settings.models_dir))
    serving: dict[str, list[str]] = {}
    for ticker, source in active_universal_sources(ctx.db).items():
        serving.setdefault(source, []).append(ticker)
    payload = {
        "total": page.total,
        "next_cursor": page.next_cursor,
        "universal": [
            {**u.model_dump(mode="json"), "serving": sorted(serving.get(u.version_id, []))}
            for u in universal
        ],
        "models": [
            {
                "version_id": r.version_id,
                "ticker": r.ticker,
                "created_at": r.created_at.isoformat(),
                "is_active": r.is_active,
                "network": r.network,
                "params": r.params,
                "metrics": r.metrics.to_json(),
                "report_path": r.report_path,
            }
            for r in records
        ],
    }

    def human() -> str:
        if not records and not universal:
            return "no models yet: train one with `make train TICKER=AAPL`"
        metric = args.metric
        lines = [
            f"  {'version':<28}{'created (UTC)':<22}{'network':<9}{f'test {metric.upper()}':>10}"
            f"{'persist.':>10}{'rMAE':>8}{'90% cov.':>10}  gate"
        ]
        for r in records:
            first = r.metrics.next_day
            value = first.model.get(metric) if first else None
            base_value = first.persistence.get(metric) if first else None
            rmae = r.metrics.rmae
            online = r.metrics.intervals_h1.get("model")
            coverage = online.coverage if online else None
            gate = r.metrics.gate.status if r.metrics.gate else "-"
            mark = "*" if r.is_active else " "
            created = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
            source = r.params.get("universal_version")
            lines.append(
                f"{mark} {r.version_id:<28}{created:<22}{r.network:<9}"
                f"{_number(value, 4):>10}{_number(base_value, 4):>10}"
                f"{_number(rmae, 3):>8}{_number(coverage, 3):>10}  {gate}"
                + (f"  (from {source})" if source else "")
            )
        lines.append(
            f"* = active; test {metric.upper()} at h=1 beside persistence's; rMAE = test MAE / "
            "persistence MAE; 90% cov. = test coverage"
        )
        if page.next_cursor:
            where = f" {args.ticker}" if args.ticker else ""
            lines.append(
                f"{len(records)} of {page.total} versions; the next {args.limit}: "
                f"stock-lstm models{where} --cursor {page.next_cursor}"
            )
        if universal:
            lines.append("universal versions (serve one: activate VERSION --ticker TICKER):")
            for u in universal:
                users = ", ".join(sorted(serving.get(u.version_id, []))) or "no ticker yet"
                cut = f", rows before {u.until}" if u.until else ""
                lines.append(f"  {u.version_id:<28}{len(u.tickers)} tickers{cut}; serving: {users}")
        return "\n".join(lines)

    _emit(args, payload, human)
    return 0


def _cmd_activate(args: argparse.Namespace) -> int:
    from stock_lstm.errors import InvalidParameterError
    from stock_lstm.models.registry import activate_version
    from stock_lstm.models.universal import is_universal_id

    if is_universal_id(args.version_id) or args.version_id.startswith("UNIVERSAL_"):
        if not args.ticker:
            raise InvalidParameterError(
                f"{args.version_id} is a universal version: say which ticker it serves with "
                "--ticker TICKER"
            )
        return _activate_universal(args)
    if args.ticker or args.force or args.source:
        raise InvalidParameterError(
            "--ticker, --force and --source go with a universal version (UNIVERSAL_...); "
            f"{args.version_id} already belongs to a ticker"
        )
    record = activate_version(_context(args).db, args.version_id)
    _emit(
        args,
        {"version_id": record.version_id, "ticker": record.ticker, "is_active": True},
        lambda: f"{record.ticker}: {record.version_id} is now the active model",
    )
    return 0


def _activate_universal(args: argparse.Namespace) -> int:
    from stock_lstm.errors import InvalidParameterError
    from stock_lstm.models.universal import is_universal_id
    from stock_lstm.universal_workflows import activate_universal

    if not is_universal_id(args.version_id):
        raise InvalidParameterError(
            f"{args.version_id!r} is not a universal version id (UNIVERSAL_YYYYmmdd_HHMMSS): "
            "list them with `stock-lstm models`"
        )

    ctx = _context(args)
    outcome = activate_universal(ctx, args.version_id, args.ticker, force=args.force)
    payload = outcome.to_dict()

    def human() -> str:
        from stock_lstm.models.registry import registry_outcome

        return "\n".join(
            [
                f"{payload['ticker']}: {args.version_id} registered as {payload['version_id']}",
                registry_outcome(ctx.db, payload["version_id"]),
                format_interval_table(outcome.metrics) or "",
            ]
        ).rstrip()

    _emit(args, payload, human)
    return 0
