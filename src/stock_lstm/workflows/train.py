"""Train a ticker: prices through the cache rule, a fit, its evaluation (in memory until
registered)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stock_lstm.data.cache import SyncResult
from stock_lstm.data.sources import check_date_range
from stock_lstm.errors import StockLSTMError
from stock_lstm.models import jobs
from stock_lstm.models.records import GateDecision, TrainingMetrics, TrainingRun
from stock_lstm.models.registry import (
    ModelRecord,
    get_active_model,
)
from stock_lstm.tickers import validate_ticker
from stock_lstm.workflows.context import (
    AppContext,
    load_prices,
    with_market,
)

if TYPE_CHECKING:
    import pandas as pd

    from stock_lstm.data.preprocessing import PreparedData
    from stock_lstm.evaluation.model_evaluation import TestEvaluation
    from stock_lstm.models.artifacts import SavedArtifacts
    from stock_lstm.models.training import TrainParams, TrainResult

log = logging.getLogger(__name__)

#: The parts of a version's metrics ``train --json`` prints (its headline and interval table).
TRAIN_JSON_METRICS = (
    *("mae", "rmse", "mape", "n", "rmae", "persistence", "drift"),
    *("validation", "interval_level", "intervals_h1"),
)


@dataclass
class TrainOutcome:
    """A trained model (in memory until registered) and everything a report shows about it."""

    ticker: str
    params: TrainParams
    sync: SyncResult
    prices: pd.DataFrame
    data: PreparedData
    result: TrainResult
    evaluation: TestEvaluation
    artifacts: SavedArtifacts | None = None
    record: ModelRecord | None = None
    gate: GateDecision | None = None
    #: The version whose weights this training started from (``train --warm-start``).
    warm_started_from: str | None = None

    @property
    def metrics(self) -> TrainingMetrics:
        """The evaluation's scores with the training run (the gate is added at registration)."""
        return self.evaluation.metrics.with_training(
            TrainingRun(
                best_epoch=self.result.best_epoch,
                best_val_loss=min(h["val_loss"] for h in self.result.history),
                epochs_run=self.result.epochs_run,
                stopped_early=self.result.stopped_early,
            )
        ).model_copy(update={"gate": self.gate})

    def to_dict(self) -> dict[str, Any]:
        """The CLI's ``train --json`` object."""
        metrics = self.evaluation.metrics.to_json()
        return {
            "version_id": self.artifacts.version_id if self.artifacts else None,
            "ticker": self.ticker,
            "active": bool(self.record and self.record.is_active),
            "registered": self.record is not None,
            "model_path": str(self.artifacts.model_path) if self.artifacts else None,
            "scaler_path": str(self.artifacts.scaler_path) if self.artifacts else None,
            "epochs_run": self.result.epochs_run,
            "best_epoch": self.result.best_epoch,
            "stopped_early": self.result.stopped_early,
            "train_seconds": round(self.result.train_seconds, 3),
            "params": self.params.to_dict(),
            "data": {
                "rows": len(self.prices),
                "first_date": self.prices.index[0].date().isoformat(),
                "last_date": self.prices.index[-1].date().isoformat(),
                "from_cache": self.sync.from_cache,
            },
            # The next-day headline and the tables' inputs; per-horizon rows and calibration
            # state are in the registry (``models --json``).
            "metrics": {key: metrics[key] for key in TRAIN_JSON_METRICS},
            "gate": self.gate.model_dump(mode="json") if self.gate else None,
        }


def _job_progress_writer(ctx: AppContext, job_id: str) -> Any:
    def write(report: Any) -> None:
        jobs.record_epoch(
            ctx.db,
            job_id,
            epoch=report.epoch,
            total_epochs=report.total_epochs,
            train_loss=report.train_loss,
            val_loss=report.val_loss,
        )

    return write


def train_ticker(
    ctx: AppContext,
    ticker: str,
    params: TrainParams,
    *,
    start: date | None = None,
    end: date | None = None,
    force_sync: bool = False,
    job_id: str | None = None,
    show_progress: bool = False,
    callbacks: tuple[Any, ...] = (),
    warm_start: bool = False,
    start_from: Any = None,
    fine_tune: bool = True,
) -> TrainOutcome:
    """Sync, preprocess, train, evaluate against persistence and save artifacts.

    ``start_from``: a network (a universal version's) to start from instead of random
    weights; with ``fine_tune=False`` it is not trained at all, only scored on this ticker's
    validation and test slices (``activate VERSION --ticker``).

    The models folder is checked for writability first. Nothing is written to the models
    folder or the registry here: ``register_outcome`` does that as the last step, so a run
    that fails halfway (say, a notebook cell after training) leaves no files and no registry
    row behind. With ``job_id`` the ``TrainingJob`` row follows along and is marked failed if
    anything here raises.
    """
    from stock_lstm.data.encoding import make_encoder
    from stock_lstm.data.preprocessing import SplitFractions, minimum_rows, prepare_data
    from stock_lstm.evaluation.model_evaluation import evaluate_model
    from stock_lstm.models.artifacts import ensure_writable_directory
    from stock_lstm.models.training import MAX_HORIZON, train_model

    ticker = validate_ticker(ticker)
    params = params.validate()
    check_date_range(start, end)
    if job_id:
        jobs.ensure_job(ctx.db, job_id, ticker, params.to_dict())
        jobs.mark_running(ctx.db, job_id, clock=ctx.clock)
    try:
        # Fail in a second, not after the training, when the models folder cannot take files.
        ensure_writable_directory(Path(ctx.settings.models_dir))
        fractions = SplitFractions()
        prices, sync = load_prices(
            ctx,
            ticker,
            force=force_sync,
            start=start,
            end=end,
            min_rows=minimum_rows(
                params.sequence_length,
                fractions,
                params.training_horizon,
                make_encoder(params.target, params.inputs).first_valid_row,
            ),
            purpose=f"training with sequence_length {params.sequence_length} and a "
            f"{fractions.label()} split",
        )
        prices = with_market(ctx, prices, params.inputs, force=force_sync, start=start, end=end)
        data = prepare_data(prices, fractions=fractions, **params.data_options)
        all_callbacks = [*callbacks]
        if job_id:
            all_callbacks.append(_job_progress_writer(ctx, job_id))
        warm = _warm_start_from(ctx, ticker, params, data) if warm_start else None
        initial = start_from if start_from is not None else (warm.model if warm else None)
        if start_from is not None and not fine_tune:
            result = untrained_result(start_from, data)
        else:
            result = train_model(
                data,
                params,
                callbacks=all_callbacks,
                threads=ctx.settings.torch_threads,
                show_progress=show_progress,
                initial_state=initial.state_dict() if initial is not None else None,
            )
        evaluation = evaluate_model(
            result.model,
            data,
            params.strategy,
            params.horizon if params.strategy == "direct" else MAX_HORIZON,
            interval_level=ctx.settings.interval_level,
        )
    except Exception as exc:
        if job_id:
            jobs.mark_failed(ctx.db, job_id, str(exc) or type(exc).__name__, clock=ctx.clock)
        raise
    outcome = TrainOutcome(ticker, params, sync, prices, data, result, evaluation)
    outcome.warm_started_from = warm.record.version_id if warm else None
    return outcome


def untrained_result(model: Any, data: PreparedData) -> Any:
    """A ``TrainResult`` for a network used as it is: zero epochs, its validation loss."""
    from stock_lstm.models.training import TrainResult, _as_tensor, _evaluation_loss

    loss = _evaluation_loss(model, _as_tensor(data.X_val), _as_tensor(data.y_val))
    history = [{"epoch": 0, "train_loss": float("nan"), "val_loss": loss}]
    return TrainResult(model, history, 0, 0, False, 0.0)


def _warm_start_from(
    ctx: AppContext, ticker: str, params: TrainParams, data: PreparedData
) -> Any | None:
    """The ticker's active model, if it has exactly the network these params would build
    (same inputs, size, horizon and head): a warm start needs every weight to fit. Else
    ``None``, with a warning saying why the training starts from random weights."""
    from stock_lstm.models.training import new_network

    try:
        loaded = ctx.model_cache.get(get_active_model(ctx.db, ticker))
    except StockLSTMError as exc:
        log.warning("no warm start (%s): training from random weights", exc)
        return None
    fresh = new_network(params, int(data.X_train.shape[2]), int(data.y_train.shape[1]))
    wanted = {"network": fresh.network, **fresh.config()}
    if {"network": loaded.model.network, **loaded.model.config()} != wanted:
        log.warning(
            "no warm start: the active model %s has another network (%s, wanted %s): "
            "training from random weights",
            loaded.record.version_id,
            loaded.model.config(),
            wanted,
        )
        return None
    return loaded
