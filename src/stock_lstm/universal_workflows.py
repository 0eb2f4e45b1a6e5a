"""What the CLI does with a universal model: train one on a folder, serve it for a ticker.

* ``train_universe``: one pooled fit (``models.pooled``) on every ticker of a CSV folder,
  nothing dated on or after ``until`` read, kept as a universal version
  (``models.universal``).
* ``activate_universal``: make a universal version ticker X's model. X gets an ordinary
  registry version whose network is the universal one, unchanged, with X's own encoder
  (fitted on X's training rows: the inputs are scale-free), the promotion gate judged on X's
  own validation rows, X's own test scores and its own online calibration state. So
  ``predict X`` works for a ticker that was never trained alone, and a second ticker's
  activation never touches the first one's calibration.
* ``fine_tune_from_universal``: ``train X --from VERSION``, the same but trained further on
  X's rows from the universal weights.
* ``score_on_tickers``: a version's test-slice scores on tickers read from a folder, with
  nothing registered (notebook 06's quick look at tickers it never saw).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from stock_lstm.data.encoding import needs_market
from stock_lstm.data.market import MARKET_TICKER, attach_market, market_frames
from stock_lstm.errors import InvalidParameterError
from stock_lstm.models import jobs
from stock_lstm.models.training import TrainParams
from stock_lstm.models.universal import (
    UniversalRecord,
    get_universal,
    load_universal_network,
    save_universal,
)
from stock_lstm.tickers import validate_ticker
from stock_lstm.workflows import AppContext, TrainOutcome, register_outcome, train_ticker


def train_universe(
    ctx: AppContext,
    csv_dir: Path,
    params: TrainParams,
    *,
    until: date | None = None,
    tickers: list[str] | None = None,
    progress: Any = None,
    job_id: str | None = None,
) -> UniversalRecord:
    """Fit one network on every ticker of ``csv_dir`` (or ``tickers`` of it) and keep it.

    ``progress(epoch, train_loss, val_loss)`` after each pooled epoch; with ``job_id`` (a
    universal training started by the API) the job records each epoch too, and a cancelled
    job stops the fit at its next epoch (``JobCancelledError``)."""
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.models.pooled import prepare_universe, train_pooled

    params = params.validate()
    source = CsvSource(csv_dir).check_folder()
    names = [validate_ticker(t) for t in tickers] if tickers else source.available_tickers()
    if not names:
        raise InvalidParameterError(
            f"the folder {csv_dir} holds no .csv files: point --csv-dir at a folder of "
            "<TICKER>.csv files"
        )
    frames = {name: source.fetch(name).frame for name in names}
    if needs_market(params.inputs):
        frames = market_frames(frames, _market_from(source, csv_dir))
    cutoff = pd.Timestamp(until) if until else None
    data = prepare_universe(frames, params, until=cutoff)

    def report(epoch: int, train_loss: float, val_loss: float) -> None:
        if job_id:
            jobs.record_epoch(
                ctx.db,
                job_id,
                epoch=epoch,
                total_epochs=params.epochs,
                train_loss=train_loss,
                val_loss=val_loss,
            )
        if progress:
            progress(epoch, train_loss, val_loss)

    result = train_pooled(data, params, threads=ctx.settings.torch_threads, progress=report)
    return save_universal(
        Path(ctx.settings.models_dir),
        result.model,
        created_at=ctx.clock(),
        params=params.to_dict(),
        tickers=result.tickers,
        source_dir=str(csv_dir),
        until=until,
        validation_start=result.validation_start.date(),
        train_origins=result.train_origins,
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        train_seconds=result.train_seconds,
        history=result.history,
    )


def _market_from(source: Any, csv_dir: Path) -> pd.DataFrame:
    """The market ticker's prices from the universe folder (one clear line if it lacks it)."""
    if MARKET_TICKER not in source.available_tickers():
        raise InvalidParameterError(
            f"inputs 'ohlcv_market' read the market ticker {MARKET_TICKER}, which {csv_dir} "
            f"does not hold: add {MARKET_TICKER}.csv or use inputs 'ohlcv'"
        )
    return source.fetch(MARKET_TICKER).frame


def _universal(ctx: AppContext, version_id: str) -> tuple[UniversalRecord, Any, TrainParams]:
    models_dir = Path(ctx.settings.models_dir)
    record = get_universal(models_dir, version_id)
    params = TrainParams.from_dict(record.params)
    return record, load_universal_network(models_dir, record), params


def activate_universal(
    ctx: AppContext,
    version_id: str,
    ticker: str,
    *,
    force: bool = False,
    report_path: str | None = None,
    job_id: str | None = None,
) -> TrainOutcome:
    """Register universal version ``version_id`` as ``ticker``'s model (see the module doc);
    the promotion gate decides whether it becomes the active one, as for any training.
    ``report_path``: the report that did it (notebook 06), linked from the registry row;
    ``job_id``: the API job it finishes (the version is recorded in the job)."""
    ticker = validate_ticker(ticker)
    record, network, params = _universal(ctx, version_id)
    outcome = train_ticker(ctx, ticker, params, start_from=network, fine_tune=False, job_id=job_id)
    register_outcome(
        ctx,
        outcome,
        force=force,
        universal_version=record.version_id,
        report_path=report_path,
        job_id=job_id,
    )
    return outcome


def fine_tune_from_universal(
    ctx: AppContext,
    version_id: str,
    ticker: str,
    overrides: dict[str, Any],
    *,
    force: bool = False,
    show_progress: bool = False,
) -> TrainOutcome:
    """``train TICKER --from VERSION``: the universal network trained further on TICKER.

    The network's shape comes from the universal version; ``overrides`` may change only how
    it is trained (epochs, patience, learning rate, batch size, seed, chunk length)."""
    from stock_lstm.models.params import PARAMETERS

    record, network, params = _universal(ctx, version_id)
    shape = {name for name, spec in PARAMETERS.items() if spec.group != "training"}
    changed = sorted(
        name
        for name, value in overrides.items()
        if name in shape and value != getattr(params, name)
    )
    if changed:
        raise InvalidParameterError(
            f"--from {version_id} fixes the network and its data ({', '.join(changed)} cannot "
            "change): give only training settings, or train without --from"
        )
    tuned = params.replace(**{k: v for k, v in overrides.items() if k not in shape})
    outcome = train_ticker(
        ctx, ticker, tuned, start_from=network, fine_tune=True, show_progress=show_progress
    )
    outcome.warm_started_from = record.version_id
    register_outcome(ctx, outcome, force=force, universal_version=record.version_id)
    return outcome


def score_on_tickers(
    ctx: AppContext,
    version_id: str,
    csv_dir: Path,
    tickers: list[str],
    *,
    progress: Any = None,
) -> pd.DataFrame:
    """A universal version scored on the test slices of ``tickers`` read from ``csv_dir``,
    as ``activate`` would score it, but without registering or caching anything: notebook
    06's look at tickers it never trained on. One row per ticker: the 90% interval's
    coverage and Winkler score at h=1 (in % of the close) of the model and of the anchor
    strongest there, and the point forecast's rMAE. (The combination served with it needs
    an anchor chosen before the origins it scores, so only the backtest scores it.)

    The walk-forward ``evaluate --universe`` is the claim; this is the quick look (one
    split per ticker, no refits), so the notebook says which one it shows."""
    from stock_lstm.data.preprocessing import SplitFractions, prepare_data
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.evaluation.model_evaluation import evaluate_model
    from stock_lstm.models.training import MAX_HORIZON

    _record, network, params = _universal(ctx, version_id)
    source = CsvSource(csv_dir).check_folder()
    horizon = params.horizon if params.strategy == "direct" else MAX_HORIZON
    rows = []
    market = _market_from(source, csv_dir) if needs_market(params.inputs) else None
    for index, ticker in enumerate(validate_ticker(t) for t in tickers):
        frame = source.fetch(ticker).frame
        if market is not None:
            frame = attach_market(frame, market)
        data = prepare_data(
            frame,
            sequence_length=params.sequence_length,
            fractions=SplitFractions(),
            target=params.target,
            horizon=params.training_horizon,
            inputs=params.inputs,
        )
        metrics = evaluate_model(network, data, params.strategy, horizon).metrics
        scores = metrics.intervals_h1
        strongest = metrics.served_anchors[0]
        rows.append(
            {
                "ticker": ticker,
                "test_origins": metrics.horizons[0].n,
                "rmae_h1": metrics.horizons[0].rmae,
                "model_coverage": scores["model"].coverage,
                "model_winkler": scores["model"].winkler,
                "strongest_anchor": strongest,
                "anchor_winkler": scores[strongest].winkler,
            }
        )
        if progress:
            progress(index + 1, len(tickers))
    return pd.DataFrame(rows)
