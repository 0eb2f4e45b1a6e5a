"""The walk-forward experiments: ``backtest`` one model, ``sweep`` a grid, ``evaluate``
the protocol over a folder of tickers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stock_lstm.cli.common import (
    _context,
    _emit,
    _range_options,
    _settings_from,
    _source_option,
    add_train_param_flags,
    given_train_params,
)
from stock_lstm.cli.formatting import format_backtest_intervals, format_backtest_points


def add_backtest(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``backtest TICKER``: a walk-forward backtest beside persistence and drift."""
    backtest = commands.add_parser(
        "backtest",
        parents=[common],
        help="walk-forward backtest of the model against persistence and drift",
        description="Rolling-origin backtest: fit on data strictly before the first origin "
        "(refit every --refit-every origins), forecast --horizon trading days from each of "
        "--origins origins, and score the model beside persistence (tomorrow = today) and "
        "drift on the same days: rMAE, Diebold-Mariano p-values, directional accuracy and "
        "interval coverage per horizon. Writes backtest.csv and summary.json.",
    )
    backtest.add_argument("ticker", help="Yahoo Finance symbol, e.g. AAPL")
    backtest.add_argument("--horizon", type=int, default=5, help="days ahead scored (1..30, 5)")
    backtest.add_argument("--origins", type=int, default=100, help="forecast origins (100)")
    backtest.add_argument("--step", type=int, default=1, help="trading days between origins (1)")
    backtest.add_argument(
        "--refit-every", type=int, help="refit every K origins (default: one fit for all)"
    )
    backtest.add_argument("--output-dir", help="where to write (default reports/<T>/backtest_*)")
    backtest.add_argument(
        "--cold-start",
        action="store_true",
        help="train every refit from random weights (default: a refit starts from the "
        "previous fit's weights, which is several times cheaper)",
    )
    backtest.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_train_param_flags(backtest, skip=("horizon",))
    _source_option(backtest)
    _range_options(backtest)
    backtest.add_argument(
        "--universe",
        metavar="UDIR",
        help="backtest the universal model of UDIR instead (each block's network trained on "
        "UDIR's rows before it, its held-out tickers never; fits kept in <models>/universal-fits)",
    )
    backtest.set_defaults(handler=_cmd_backtest)


def add_sweep(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``sweep TICKER --grid ...``: backtest a grid and rank it."""
    sweep = commands.add_parser(
        "sweep",
        parents=[common],
        help="backtest a hyperparameter grid and rank it against persistence",
        description="Walk-forward backtest every point of the grid (the cartesian product of "
        "the --grid values; other parameters from the options below or their defaults), one "
        "Dask task per point on a local cluster or the one at STOCK_LSTM_DASK_SCHEDULER, and "
        "print the points ranked by rMAE at h=1 (model MAE / persistence MAE) with "
        "persistence and drift in the ranking. Registers nothing unless --register-best.",
        epilog="example: stock-lstm sweep AAPL --grid hidden_size=32,64 --grid "
        "sequence_length=30,60 --origins 50 --source csv:../shared/data/prices",
    )
    sweep.add_argument("ticker", help="Yahoo Finance symbol, e.g. AAPL")
    sweep.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="NAME=V1,V2",
        help="a training parameter and its values (repeatable), e.g. hidden_size=32,64",
    )
    sweep.add_argument("--horizon", type=int, default=5, help="days ahead scored (1..30, 5)")
    sweep.add_argument("--origins", type=int, default=100, help="forecast origins (100)")
    sweep.add_argument("--step", type=int, default=1, help="trading days between origins (1)")
    sweep.add_argument(
        "--refit-every", type=int, help="refit every K origins (default: one fit for all)"
    )
    add_train_param_flags(sweep, skip=("horizon",))
    sweep.add_argument(
        "--register-best",
        action="store_true",
        help="then train the best point with the train notebook (report, promotion gate) and "
        "register it",
    )
    sweep.add_argument(
        "--workers", type=int, help="local cluster size in worker processes (one per core)"
    )
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _source_option(sweep)
    _range_options(sweep)
    sweep.set_defaults(handler=_cmd_sweep)


#: Training parameters evaluate sets itself: the horizon (--horizon) and the seed (--seeds).
EVALUATE_SKIPS = ("horizon", "seed")


def add_evaluate(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``evaluate --csv-dir DIR``: the comparison table over every ticker."""
    evaluate = commands.add_parser(
        "evaluate",
        parents=[common],
        help="backtest every ticker of a CSV folder and write one comparison table",
        description="For each ticker: walk-forward backtests of the default model for each "
        "seed and of the original design (min-max prices, recursive), beside persistence and "
        "drift. Writes evaluation.md, evaluation.csv and runs.json to --output-dir.",
    )
    evaluate.add_argument("--csv-dir", required=True, help="folder of <TICKER>.csv files")
    evaluate.add_argument("--tickers", help="comma-separated subset (default: every file)")
    evaluate.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (1,2,3)")
    evaluate.add_argument("--horizon", type=int, default=5, help="days ahead scored (5)")
    evaluate.add_argument("--origins", type=int, default=500, help="origins per ticker (500)")
    evaluate.add_argument(
        "--refit-every", type=int, default=100, help="refit every K origins (100)"
    )
    evaluate.add_argument(
        "--workers",
        type=int,
        default=1,
        help="local Dask cluster size in worker processes (1); ignored when "
        "STOCK_LSTM_DASK_SCHEDULER names a cluster",
    )
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    evaluate.add_argument(
        "--original", action="store_true", help="also score the original design (one seed)"
    )
    evaluate.add_argument(
        "--point-model",
        action="store_true",
        help="also score the point model on the close (the default before quantiles; one seed)",
    )
    # The evaluated model's training parameters (all but the horizon, scored by --horizon,
    # and the seed, given by --seeds): the same flags as train's, from the same declarations.
    add_train_param_flags(evaluate, skip=EVALUATE_SKIPS)
    evaluate.add_argument(
        "--cold-start",
        action="store_true",
        help="train every refit from random weights (the protocol before warm starts)",
    )
    evaluate.add_argument(
        "--universe",
        metavar="UDIR",
        help="evaluate a universal model instead: for each refit block one network trained on "
        "every ticker of UDIR (rows before the block only, never a held-out ticker); with "
        "--csv-dir UDIR the held-out tickers are the ones scored",
    )
    evaluate.add_argument(
        "--held-out",
        type=int,
        default=40,
        help="universe tickers no universal fit sees, a fixed draw written to the output (40)",
    )
    evaluate.add_argument("--output-dir", default="bench/evaluation", help="(bench/evaluation)")
    evaluate.set_defaults(handler=_cmd_evaluate)


def _universal_fit(folder: Path, models_dir: Path) -> Any:
    """The walk-forward fit function of the universal model of ``folder`` (its fixed
    held-out draw excluded), with fits kept under ``models_dir/universal-fits``."""
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.evaluation.universe import (
        UniverseSpec,
        held_out_split,
        universal_fit_function,
        universe_dates,
    )

    names = CsvSource(folder).check_folder().available_tickers()
    held_out = held_out_split(names)[1] if len(names) > 40 else []
    spec = UniverseSpec(str(folder.resolve()), tuple(held_out), str(models_dir / "universal-fits"))
    return universal_fit_function(spec, universe_dates(spec))


def _cmd_backtest(args: argparse.Namespace) -> int:
    from stock_lstm.evaluation.backtest import BacktestConfig, headline
    from stock_lstm.models.training import TrainParams
    from stock_lstm.workflows import backtest_ticker

    given = given_train_params(args, skip=("horizon",))
    params = TrainParams.from_dict({**given, "horizon": max(args.horizon, 1)})
    config = BacktestConfig(
        horizon=args.horizon,
        origins=args.origins,
        step=args.step,
        refit_every=args.refit_every,
        warm_start=not args.cold_start,
    )
    ctx = _context(args)
    fit = None
    if args.universe:
        fit = _universal_fit(Path(args.universe), Path(ctx.settings.models_dir))
    result, folder = backtest_ticker(
        ctx,
        args.ticker,
        params,
        config,
        fit=fit,
        output_dir=Path(args.output_dir) if args.output_dir else None,
        start=args.start,
        end=args.end,
        show_progress=not (args.no_progress or args.json),
    )
    summary = result.summary
    payload = {
        **summary.model_dump(mode="json"),
        "headline": headline(summary),
        "output_dir": str(folder),
    }

    def human() -> str:
        warm = " (refits warm-started)" if config.warm_start and summary.fits > 1 else ""
        return "\n".join(
            [
                f"{summary.ticker}: {summary.n_origins} origins "
                f"{summary.first_origin}..{summary.last_origin}, {summary.fits} fit(s), "
                f"epochs per fit: {', '.join(str(n) for n in summary.epochs_per_fit)}{warm}",
                format_backtest_points(summary),
                format_backtest_intervals(summary),
                f"written: {folder / 'backtest.csv'}, {folder / 'summary.json'}",
            ]
        )

    _emit(args, payload, human)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    """Rank a grid by walk-forward rMAE at h=1; with --register-best, train the winner."""
    from stock_lstm.cluster import open_executor, worker_settings
    from stock_lstm.errors import InvalidParameterError
    from stock_lstm.evaluation.backtest import BacktestConfig
    from stock_lstm.evaluation.sweep import format_sweep, grid_points, parse_grid
    from stock_lstm.pipeline.batch import check_parameters, format_summary, run_tickers
    from stock_lstm.pipeline.experiments import run_sweep
    from stock_lstm.workflows import sync_ticker

    grid = parse_grid(args.grid)
    fixed = given_train_params(args, skip=("horizon",))
    clash = sorted(set(grid) & set(fixed))
    if clash:
        raise InvalidParameterError(f"{clash[0]} is both fixed (--{clash[0]}) and in --grid")
    config = BacktestConfig(
        horizon=args.horizon, origins=args.origins, step=args.step, refit_every=args.refit_every
    ).validate()
    grid_points(grid, {**fixed, "horizon": config.horizon})  # every point valid, or stop here
    ctx = _context(args)
    worker_settings(ctx.settings)  # SQLite or relative folders on a cluster: refused here
    if args.register_best:
        check_parameters(["train"], {})
    synced = sync_ticker(ctx, args.ticker, start=args.start, end=args.end)  # tasks read it
    if synced.warning:
        print(f"warning: {synced.warning}", file=sys.stderr)
    start = args.start.isoformat() if args.start else None
    end = args.end.isoformat() if args.end else None
    progress = not (args.no_progress or args.json)
    trained = None
    with open_executor(ctx.settings.dask_scheduler, workers=args.workers) as executor:
        result = run_sweep(
            executor,
            synced.ticker,
            ctx.settings,
            grid,
            fixed,
            config,
            start=start,
            end=end,
            progress=progress,
        )
        best = result.best
        if args.register_best and best is not None:
            parameters = {k: v for k, v in best["params"].items() if k != "horizon"}
            if start:
                parameters["start"] = start
            if end:
                parameters["end"] = end
            trained = run_tickers(
                executor, ["train"], [synced.ticker], ctx.settings, parameters, progress=progress
            )
    payload = result.to_dict()
    if trained is not None:
        payload["registered"] = trained.to_dict()

    def human() -> str:
        text = format_sweep(result)
        if trained is not None:
            text += "\nbest point trained and registered:\n" + format_summary(trained)
        elif not args.register_best:
            text += "\nnothing registered (add --register-best to train the best point)"
        return text

    _emit(args, payload, human)
    failed = list(result.failed) + (trained.failed if trained is not None else [])
    if args.register_best and result.best is None:
        failed.append("(no point to register)")
    if failed:
        print(f"error: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _universe_for(args: argparse.Namespace, tickers: list[str] | None) -> tuple[Any, list[str]]:
    """The universe spec of ``--universe`` and the tickers to score: those asked for, else
    the held-out draw when ``--csv-dir`` is the universe itself, else every file."""
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.errors import InvalidParameterError
    from stock_lstm.evaluation.universe import UniverseSpec, held_out_split

    folder = Path(args.universe)
    names = CsvSource(folder).check_folder().available_tickers()
    try:
        _training, held_out = held_out_split(names, args.held_out)
    except ValueError as exc:
        raise InvalidParameterError(f"--held-out: {exc}: give a smaller number") from None
    spec = UniverseSpec(
        str(folder.resolve()), tuple(held_out), str(Path(args.output_dir, "universal-fits"))
    )
    same_folder = Path(args.csv_dir).resolve() == folder.resolve()
    scored = tickers or (held_out if same_folder else None)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "universe-split.json").write_text(
        json.dumps({"universe": str(folder), "held_out": held_out, "scored": scored}, indent=1)
    )
    return spec, scored or CsvSource(Path(args.csv_dir)).available_tickers()


def _train_universal_fits(args: argparse.Namespace, spec: Any, tasks: list[Any]) -> None:
    """Train each (seed, cut-off) fit the universal backtests will ask for, once."""
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.evaluation.backtest import BacktestConfig
    from stock_lstm.evaluation.universe import needed_cutoffs, universe_dates
    from stock_lstm.models.training import TrainParams
    from stock_lstm.pipeline.experiments import train_universal_fits

    dates = universe_dates(spec)
    source = CsvSource(Path(args.csv_dir))
    config = BacktestConfig(
        horizon=args.horizon, origins=args.origins, refit_every=args.refit_every
    )
    cutoffs: list[Any] = []
    for ticker in sorted({task.ticker for task in tasks}):
        for cutoff in needed_cutoffs(source.fetch(ticker).frame, config, dates):
            if cutoff not in cutoffs:
                cutoffs.append(cutoff)
    params_by_seed = {
        int(task.params["seed"]): TrainParams.from_dict(task.params)
        for task in tasks
        if task.label == "model"
    }
    fits = train_universal_fits(
        spec,
        params_by_seed,
        sorted(cutoffs),
        workers=args.workers,
        scheduler=_settings_from(args).dask_scheduler,
        progress=not (args.no_progress or args.json),
    )
    Path(args.output_dir, "universal-fits.json").write_text(json.dumps(fits, indent=1))


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from stock_lstm.errors import InvalidParameterError
    from stock_lstm.evaluation.evaluate import build_tasks, default_params, write_outputs
    from stock_lstm.pipeline.experiments import run_tasks

    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError as exc:
        raise InvalidParameterError(f"--seeds must be whole numbers, got {args.seeds!r}") from exc
    tickers = [t.strip().upper() for t in args.tickers.split(",")] if args.tickers else None
    universe = None
    if args.universe:
        universe, tickers = _universe_for(args, tickers)
    tasks = build_tasks(
        Path(args.csv_dir),
        tickers,
        seeds or [1],
        horizon=args.horizon,
        origins=args.origins,
        refit_every=args.refit_every,
        base_params=default_params(
            {"horizon": max(args.horizon, 1), **given_train_params(args, skip=EVALUATE_SKIPS)}
        ),
        include_original=args.original,
        include_point=args.point_model,
        warm_start=not args.cold_start,
        universe=universe,
        output_dir=args.output_dir,
    )
    if universe is not None:
        _train_universal_fits(args, universe, tasks)
    rows = run_tasks(
        tasks,
        workers=args.workers,
        scheduler=_settings_from(args).dask_scheduler,
        progress=not (args.no_progress or args.json),
    )
    markdown = write_outputs(Path(args.output_dir), rows, args.horizon)
    _emit(args, {"runs": rows}, lambda: markdown)
    failed = [row for row in rows if row["status"] != "ok"]
    return 1 if failed else 0
