"""The commands on notebook runs: ``run`` stages (one ticker here, many on Dask) and
rebuild their ``reports`` index."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stock_lstm.cli.common import (
    _context,
    _emit,
    _push,
    _reconcile_database,
    _settings_from,
    _source_option,
)
from stock_lstm.cli.formatting import (
    format_backtest_headline,
    format_interval_table,
    format_metrics_table,
)
from stock_lstm.evaluation.results import BacktestSummary
from stock_lstm.models.records import TrainingMetrics
from stock_lstm.models.registry import registry_outcome


def add_run(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``run STAGE... --ticker T`` (or ``--tickers``): execute notebook stages."""
    run = commands.add_parser(
        "run",
        parents=[common],
        help="run notebook stages with papermill and render HTML reports",
        description="Execute the notebooks of STAGE(s) (sync eda train predict backtest, or "
        "all = the first four) for a "
        "ticker with papermill into reports/<TICKER>/<run_id>/, render each to HTML and "
        "rebuild reports/index.html. The train stage registers and activates its model in "
        "its last cell, so a failed run registers nothing.",
        epilog="example: stock-lstm run train --ticker AAPL --source csv:../shared/data/prices "
        "-p epochs 20",
    )
    run.add_argument(
        "stages", nargs="+", metavar="STAGE", help="sync, eda, train, predict, backtest, all"
    )
    run.add_argument("--ticker", help="Yahoo Finance symbol, e.g. AAPL (runs here, in-process)")
    run.add_argument(
        "--tickers",
        help="comma-separated tickers, one Dask task each (local cluster, or the one at "
        "STOCK_LSTM_DASK_SCHEDULER), e.g. AAPL,MSFT,KO",
    )
    run.add_argument(
        "--tickers-file", type=Path, help="tickers one per line (# comments), like --tickers"
    )
    run.add_argument(
        "--csv-dir",
        type=Path,
        help="every <TICKER>.csv of this folder, like --tickers; prices come from it too "
        "(--source csv:DIR) unless --source says otherwise",
    )
    run.add_argument(
        "--workers",
        type=int,
        help="with --tickers: local cluster size in worker processes (default: one per core)",
    )
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="notebook parameter (repeatable), e.g. -p epochs 20 -p days 10",
    )
    run.add_argument("--run-id", help="name of the run folder (default: UTC time + random)")
    run.add_argument("--log-output", action="store_true", help="echo notebook output to the log")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _source_option(run)
    run.set_defaults(handler=_cmd_run)


def add_reports(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``reports``: rebuild the index of run reports."""
    reports = commands.add_parser(
        "reports",
        parents=[common],
        help="rebuild reports/index.html from the runs on disk",
        description="Rebuild the index of run reports (STOCK_LSTM_REPORTS_DIR, default reports/).",
    )
    reports.add_argument(
        "--prune",
        action="store_true",
        help="first delete failed runs and manifest-less leftovers older than an hour (never "
        "a folder holding a registered model's report)",
    )
    reports.set_defaults(handler=_cmd_reports)


def add_compare(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``compare RUN RUN...``: runs side by side, tested differences marked."""
    compare = commands.add_parser(
        "compare",
        parents=[common],
        help="compare two or more runs side by side (reports/compare/...html)",
        description="Render two or more runs' parameters, metrics per horizon and interval "
        "scores side by side into reports/compare/. The first run is the reference: another "
        "run's difference is called better or worse only when the Diebold-Mariano test of the "
        "two runs' errors on the same dates says so (p < 0.05). Run ids are the index's "
        "second column (tick the runs there and it writes this command for you).",
    )
    compare.add_argument("run_ids", nargs="+", metavar="RUN", help="run ids, reference first")
    compare.set_defaults(handler=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from stock_lstm.pipeline.compare import build_comparison

    settings = _settings_from(args)
    page = build_comparison(Path(settings.reports_dir), list(args.run_ids), settings.database_url)
    _emit(args, {"page": str(page)}, lambda: f"wrote {page}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from stock_lstm.errors import InvalidParameterError
    from stock_lstm.pipeline.runner import (
        check_sources,
        check_training_parameters,
        coerce_parameter,
        run_pipeline,
        validate_run_id,
    )
    from stock_lstm.tickers import validate_ticker

    if args.run_id:
        validate_run_id(args.run_id)  # before the database or any folder is touched
    if args.tickers or args.tickers_file or args.csv_dir:
        if args.ticker:
            raise InvalidParameterError(
                "give --ticker T or --tickers A,B (--tickers-file, --csv-dir), not both"
            )
        return _cmd_run_many(args)
    if not args.ticker:
        raise InvalidParameterError(
            "name the ticker(s): --ticker AAPL, --tickers AAPL,MSFT or --tickers-file FILE"
        )
    if args.workers is not None:
        raise InvalidParameterError("--workers sizes the cluster of a --tickers run: drop it")
    parameters = {name: coerce_parameter(value) for name, value in args.parameter}
    check_training_parameters(parameters)  # a bad value: one line before anything else
    settings = _settings_from(args)
    # Before the database is opened: a ticker without its CSV file changes nothing.
    check_sources(args.ticker, settings, {"run": parameters})
    _reconcile_database(settings)
    status = "failed"
    train_seconds = None
    try:
        result = run_pipeline(
            args.stages,
            args.ticker,
            settings,
            parameters,
            run_id=args.run_id,
            progress=not (args.no_progress or args.json),
            log_output=args.log_output,
        )
        status = result.status
        train_seconds = next((s.seconds for s in result.stages if s.stage == "train"), None)
    finally:
        if settings.pushgateway_url:
            _push(
                settings,
                "stock-lstm-run",
                training_seconds=train_seconds,
                status=status,
                ticker=validate_ticker(args.ticker),
                cache_hits=0,
                cache_misses=0,
            )
    manifest = result.manifest()

    def human() -> str:
        lines = [f"{result.ticker}: run {result.run_id} ({result.status})"]
        for stage in result.stages:
            lines.append(f"  {stage.stage:<8} {stage.status:<7} {result.run_dir / str(stage.html)}")
        if result.version_id and result.metrics:
            metrics = TrainingMetrics.from_json(result.metrics)
            lines.append(registry_outcome(_context(args).db, result.version_id))
            lines.append("test set beside persistence:")
            lines.append(format_metrics_table(metrics))
            lines.extend(filter(None, [format_interval_table(metrics)]))
        backtest_summary = BacktestSummary.read(result.run_dir / "summary.json")
        if backtest_summary and any(
            stage.stage == "backtest" and stage.status == "ok" for stage in result.stages
        ):
            lines.extend(format_backtest_headline(backtest_summary))
        index = Path(_settings_from(args).reports_dir) / "index.html"
        lines.append(f"index: {index}")
        return "\n".join(lines)

    _emit(args, manifest, human)
    return 0


def _cmd_run_many(args: argparse.Namespace) -> int:
    """``run --tickers``: one Dask task per ticker; a failing ticker never stops the others,
    and the command exits 1 naming the failed ones."""
    from stock_lstm.cluster import open_executor, worker_settings
    from stock_lstm.pipeline.batch import (
        check_parameters,
        format_summary,
        parse_tickers,
        run_tickers,
    )
    from stock_lstm.pipeline.runner import coerce_parameter

    tickers = parse_tickers(args.tickers, args.tickers_file, args.csv_dir)
    if args.csv_dir and not args.source:
        # On a cluster every worker reads the folder itself: give it the absolute path.
        remote = _settings_from(args).dask_scheduler
        args.source = f"csv:{args.csv_dir.resolve() if remote else args.csv_dir}"
    parameters = {name: coerce_parameter(value) for name, value in args.parameter}
    settings = _settings_from(args)
    check_parameters(args.stages, parameters)
    worker_settings(settings)  # SQLite or relative folders on a cluster: refused before it starts
    _reconcile_database(settings)  # opening it also migrates it once, before workers open it
    with open_executor(settings.dask_scheduler, workers=args.workers) as executor:
        result = run_tickers(
            executor,
            args.stages,
            tickers,
            settings,
            parameters,
            run_id=args.run_id,
            progress=not (args.no_progress or args.json),
        )
    for row in result.rows:
        _push(
            settings,
            "stock-lstm-run",
            training_seconds=row.get("seconds"),
            status="completed" if row.get("status") == "ok" else "failed",
            ticker=row["ticker"],
            cache_hits=0,
            cache_misses=0,
        )
    _emit(args, result.to_dict(), lambda: format_summary(result))
    if result.failed:
        print(
            f"error: {len(result.failed)} of {len(result.rows)} ticker(s) failed: "
            f"{', '.join(result.failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_reports(args: argparse.Namespace) -> int:
    import shutil

    from stock_lstm.pipeline.reports import prunable_runs
    from stock_lstm.pipeline.run_index import build_index

    reports_dir = Path(_settings_from(args).reports_dir)
    pruned: list[Path] = []
    if args.prune:
        from stock_lstm.models.registry import list_models

        protected = {
            Path(record.report_path).parent
            for record in list_models(_context(args).db)
            if record.report_path
        }
        pruned = prunable_runs(reports_dir, protected)
        for folder in pruned:
            shutil.rmtree(folder)
    index = build_index(reports_dir, _settings_from(args).database_url)

    def human() -> str:
        lines = [f"removed {folder}" for folder in pruned]
        if args.prune and not pruned:
            lines.append("nothing to prune")
        return "\n".join([*lines, f"rebuilt {index}"])

    _emit(args, {"index": str(index), "pruned": [str(p) for p in pruned]}, human)
    return 0
