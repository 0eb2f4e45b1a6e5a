"""One function per user action (sync, train, register, predict), shared by CLI, notebooks and API.

Each function validates its input before touching the cache, the registry or the disk, so
bad input changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import InitVar, dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stock_lstm import __version__
from stock_lstm.clock import Clock, utc_now
from stock_lstm.config import Settings, get_settings
from stock_lstm.data.cache import PriceStore, SyncResult
from stock_lstm.data.price_frames import PriceFrames
from stock_lstm.data.sources import PriceSource, check_date_range, source_from_spec
from stock_lstm.db import Database
from stock_lstm.errors import (
    DataSourceError,
    ModelNotFoundError,
    StockLSTMError,
)
from stock_lstm.evaluation.combination import anchor_log_bounds
from stock_lstm.models import jobs
from stock_lstm.models.forecasting import Forecast, ModelCache, make_forecast, validate_days
from stock_lstm.models.records import GateDecision, TrainingMetrics, TrainingRun
from stock_lstm.models.registry import (
    ModelRecord,
    TrainingDataSummary,
    active_version_id,
    get_active_model,
    register_model,
)
from stock_lstm.tickers import validate_ticker

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from stock_lstm.data.preprocessing import PreparedData
    from stock_lstm.evaluation.model_evaluation import TestEvaluation
    from stock_lstm.models.artifacts import SavedArtifacts
    from stock_lstm.models.training import TrainParams, TrainResult

log = logging.getLogger(__name__)

#: Forecasts one process computes at once. A forecast is CPU work that mostly holds the GIL,
#: so the API's request threads beyond a few only queue for it, and each holds a database
#: connection meanwhile: past the pool's 5 they open (and close) new ones per request.
FORECAST_SLOTS = 4


@dataclass
class AppContext:
    """The side effects every action needs, built once per process (or per test)."""

    settings: Settings
    db: Database
    source: PriceSource
    clock: Clock = utc_now
    model_cache: ModelCache = field(default_factory=ModelCache)
    #: Price frames reused while their rows are unchanged (forecasts read whole histories);
    #: they live on in ``prices`` (a new, empty memo when not given).
    price_frames: InitVar[PriceFrames | None] = None
    #: Forecasts running at once (see ``FORECAST_SLOTS``), shared by every copy of the context.
    forecast_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(FORECAST_SLOTS)
    )
    #: The price cache every action reads prices through: this context's database, source
    #: and clock, with the settings' ``cache_expiry_hours`` as they were when it was built.
    prices: PriceStore = field(init=False)

    def __post_init__(self, price_frames: PriceFrames | None) -> None:
        self.prices = PriceStore(
            self.db,
            self.source,
            expiry_hours=self.settings.cache_expiry_hours,
            clock=self.clock,
            frames=PriceFrames() if price_frames is None else price_frames,
        )

    @classmethod
    def create(
        cls,
        settings: Settings | None = None,
        *,
        source: str | None = None,
        clock: Clock = utc_now,
    ) -> AppContext:
        """Context from settings (environment by default); ``source`` overrides the setting."""
        settings = settings or get_settings()
        source_spec = source or settings.source
        return cls(
            settings=settings,
            db=Database(
                settings.database_url, busy_timeout_seconds=settings.sqlite_busy_timeout_seconds
            ),
            source=source_from_spec(source_spec, history_years=settings.history_years, clock=clock),
            clock=clock,
            model_cache=ModelCache(
                settings.model_cache_size,
                threads=settings.torch_threads,
                models_dir=Path(settings.models_dir),
            ),
            price_frames=PriceFrames(recheck_seconds=settings.price_recheck_seconds),
        )


def sync_ticker(
    ctx: AppContext,
    ticker: str,
    *,
    force: bool = False,
    start: date | None = None,
    end: date | None = None,
) -> SyncResult:
    """Bring a ticker's cached prices up to date under the cache rule."""
    check_date_range(start, end)
    return ctx.prices.sync(ticker, force=force, start=start, end=end)


def load_prices(
    ctx: AppContext,
    ticker: str,
    *,
    force: bool = False,
    start: date | None = None,
    end: date | None = None,
    min_rows: int = 0,
    purpose: str = "this",
) -> tuple[pd.DataFrame, SyncResult]:
    """Prices of a ticker through the cache rule, clipped to ``start``/``end``.

    With ``min_rows``, too short a history raises ``NotEnoughDataError`` before anything
    is cached.
    """
    check_date_range(start, end)
    return ctx.prices.get(
        ticker, force=force, start=start, end=end, min_rows=min_rows, purpose=purpose
    )


def with_market(
    ctx: AppContext,
    prices: pd.DataFrame,
    inputs: str,
    *,
    force: bool = False,
    start: date | None = None,
    end: date | None = None,
) -> pd.DataFrame:
    """``prices`` with the market ticker's columns when ``inputs`` reads them: the market is
    synced through the same source and cache rule as any ticker (``data.market``)."""
    from stock_lstm.data.encoding import needs_market
    from stock_lstm.data.market import MARKET_TICKER, attach_market

    if not needs_market(inputs):
        return prices
    try:
        market, _sync = load_prices(ctx, MARKET_TICKER, force=force, start=start, end=end)
    except DataSourceError as exc:
        raise DataSourceError(
            f"inputs {inputs!r} read the market ticker {MARKET_TICKER} beside every ticker, "
            f"and it could not be loaded: {exc}"
        ) from exc
    return attach_market(prices, market)


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" if commit else __version__


def fingerprint_prices(prices: pd.DataFrame) -> str:
    """sha256 of the exact rows a model was trained on (dates and prices as CSV text)."""
    text = prices.to_csv(float_format="%.10g", date_format="%Y-%m-%d")
    return hashlib.sha256(text.encode()).hexdigest()


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
        data = prepare_data(
            prices,
            sequence_length=params.sequence_length,
            fractions=fractions,
            target=params.target,
            horizon=params.training_horizon,
            inputs=params.inputs,
        )
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
    from stock_lstm.models.registry import get_active_model
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


def gate_decision(
    validation_rmae: float | None,
    *,
    threshold: float,
    has_active_model: bool,
    force: bool = False,
) -> tuple[bool, GateDecision]:
    """The promotion gate: activate only a model whose validation rMAE at h=1 is at most
    ``threshold`` (1.0: at least as good as persistence), unless forced.

    A ticker without an active model still gets its first model activated, flagged
    ``failed`` with the reason, so a first ``train`` then ``predict`` works and warns.
    """
    value = validation_rmae
    passed = value is not None and value <= threshold
    shown = "n/a" if value is None else f"{value:.4f}"
    gate = GateDecision(status="passed", threshold=threshold, value=value)
    if passed:
        return True, gate.model_copy(update={"reason": f"validation rMAE {shown} <= {threshold}"})
    reason = (
        f"validation rMAE at h=1 is {shown} > {threshold}: its validation error is above "
        "the gate's bar (a rule on the ratio, not a test: see the test slice's verdict)"
    )
    if force:
        return True, gate.model_copy(
            update={"status": "forced", "reason": reason + "; activated by --force"}
        )
    if not has_active_model:
        return True, gate.model_copy(
            update={
                "status": "failed",
                "reason": reason + "; activated anyway as the ticker's first model",
            }
        )
    return False, gate.model_copy(
        update={
            "status": "failed",
            "reason": reason + "; registered inactive, the current active model keeps serving",
        }
    )


def register_outcome(
    ctx: AppContext,
    outcome: TrainOutcome,
    *,
    activate: bool = True,
    force: bool = False,
    report_path: str | None = None,
    job_id: str | None = None,
    universal_version: str | None = None,
) -> ModelRecord:
    """Save the artifacts and register the model; the promotion gate decides activation.

    ``universal_version``: the universal version the weights come from (recorded in the
    version's parameters, shown by ``models``).

    ``activate=False`` never activates; ``force=True`` activates even a model that fails the
    gate. Files are written atomically first; if registration then fails they are deleted,
    so the registry never points at a missing file and no orphan files are left.

    With ``job_id`` the job records the version in the registration's transaction and is
    completed there, or, with a ``report_path``, by the runner once that report is written
    (a client polling the job then always finds the report); a job registers one model at
    most: if another attempt of it (a Dask task retried after its
    worker died) registered first, that model is returned and these files are deleted.
    """
    from stock_lstm.models.artifacts import SavedArtifacts, new_version_id, save_artifacts
    from stock_lstm.models.registry import AlreadyRegisteredError, get_model

    prices = outcome.prices
    try:  # one indexed column: decoding every version of a nightly-retrained ticker was slow
        has_active = bool(active_version_id(ctx.db, outcome.ticker))
    except ModelNotFoundError:
        has_active = False
    should_activate, gate = gate_decision(
        outcome.evaluation.metrics.validation.rmae_h1,
        threshold=ctx.settings.gate_threshold,
        has_active_model=has_active,
        force=force,
    )
    outcome.gate = gate
    try:
        models_dir = Path(ctx.settings.models_dir)
        artifacts = save_artifacts(
            directory=models_dir,
            version_id=new_version_id(
                outcome.ticker, models_dir, ctx.clock(), taken=lambda v: _registered(ctx, v)
            ),
            model_config=outcome.result.model.config(),
            network=outcome.result.model.network,
            state_dict=outcome.result.model.state_dict(),
            scaler=outcome.data.scaler,
            metadata={
                "ticker": outcome.ticker,
                "feature_columns": list(outcome.data.feature_columns),
                "target_column": outcome.data.target_column,
                "target_index": outcome.data.target_index,
                "sequence_length": outcome.data.sequence_length,
                "target": outcome.params.target,
                "strategy": outcome.params.strategy,
                "horizon": outcome.params.horizon,
            },
        )
        outcome.artifacts = artifacts
    except Exception as exc:
        if job_id:
            jobs.mark_failed(ctx.db, job_id, str(exc) or type(exc).__name__, clock=ctx.clock)
        raise
    try:
        record = register_model(
            ctx.db,
            ticker=outcome.ticker,
            artifacts=artifacts,
            params={
                **outcome.params.to_dict(),
                "feature_columns": list(outcome.data.feature_columns),
                "source": ctx.source.name,
                **({"universal_version": universal_version} if universal_version else {}),
            },
            metrics=outcome.metrics.with_gate(gate),
            data=TrainingDataSummary(
                first_date=prices.index[0].date(),
                last_date=prices.index[-1].date(),
                rows=len(prices),
                data_sha256=fingerprint_prices(prices),
            ),
            code_version=code_version(),
            activate=activate and should_activate,
            report_path=report_path,
            clock=ctx.clock,
            job_id=job_id,
            # A run with a report (the train notebook under a runner) completes its job only
            # once that report is written; see pipeline.runner.
            complete_job=report_path is None,
        )
    except AlreadyRegisteredError as exc:
        artifacts.model_path.unlink(missing_ok=True)
        artifacts.scaler_path.unlink(missing_ok=True)
        log.warning("%s", exc)
        record = get_model(ctx.db, exc.version_id)
        # This attempt's train_ticker marked the job running again: it is done (once its
        # report exists, when it has one).
        if report_path is None:
            jobs.mark_completed(ctx.db, exc.job_id, record.version_id, clock=ctx.clock)
        outcome.gate = record.metrics.gate or gate
        outcome.artifacts = SavedArtifacts(
            record.version_id,
            Path(record.model_path),
            Path(record.scaler_path),
            record.model_sha256,
            record.scaler_sha256,
        )
    except BaseException as exc:
        artifacts.model_path.unlink(missing_ok=True)
        artifacts.scaler_path.unlink(missing_ok=True)
        outcome.artifacts = None
        if job_id:
            jobs.mark_failed(ctx.db, job_id, str(exc) or type(exc).__name__, clock=ctx.clock)
        raise
    outcome.record = record
    return record


def _registered(ctx: AppContext, version_id: str) -> bool:
    """Whether the registry already has ``version_id`` (from another machine's models folder)."""
    from stock_lstm.models.registry import get_model

    try:
        get_model(ctx.db, version_id)
    except ModelNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class DatabaseCalibrationStore:
    """Versions' online calibration states in the database (``calibration_states``)."""

    ctx: AppContext

    def load(self, version_id: str) -> dict[str, Any] | None:
        from stock_lstm.models.registry import load_calibration_state

        return load_calibration_state(self.ctx.db, version_id)

    def save(self, version_id: str, through: date, state: dict[str, Any]) -> None:
        from stock_lstm.models.registry import save_calibration_state

        save_calibration_state(self.ctx.db, version_id, through, state, clock=self.ctx.clock)


def predict_ticker(
    ctx: AppContext,
    ticker: str,
    days: int,
    *,
    on_sync: Callable[[bool], None] | None = None,
) -> Forecast:
    """Forecast ``days`` trading days with the ticker's active model on fresh prices.

    ``on_sync`` is told whether the prices came from the cache (the API counts hits/misses).
    """
    days = validate_days(days)
    ticker = validate_ticker(ticker)
    with ctx.forecast_slots:
        loaded = ctx.model_cache.loaded(active_version_id(ctx.db, ticker))
        if loaded is None:
            loaded = ctx.model_cache.get(get_active_model(ctx.db, ticker))
        prices, sync = load_prices(ctx, ticker)
        prices = with_market(ctx, prices, loaded.encoder.inputs)
        if on_sync is not None:
            on_sync(sync.from_cache)
        forecast = make_forecast(
            loaded,
            prices,
            days,
            interval_level=ctx.settings.interval_level,
            store=DatabaseCalibrationStore(ctx),
            anchors=anchor_log_bounds,
        )
    if sync.warning:
        forecast.warnings.append(sync.warning)
    return forecast


@contextlib.contextmanager
def fit_progress_bar(config: Any, *, enabled: bool) -> Iterator[Any]:
    """A ``walk_forward`` progress callback drawing a tqdm bar over fits (``None`` when off).

    Drawn before the first fit starts (the longest: it is the only cold one) and moved once a
    fit has forecast its origins, so the estimate of the time left counts training and
    forecasting alike.
    """
    if not enabled:
        yield None
        return
    import math
    import sys

    from tqdm import tqdm

    per_fit = config.refit_every or config.origins
    bar = tqdm(
        total=math.ceil(config.origins / per_fit), desc="backtest", unit="fit", file=sys.stderr
    )
    bar.set_postfix(origins=f"0/{config.origins}")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.set_postfix(origins=f"{min(done * per_fit, config.origins)}/{config.origins}")
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        bar.close()


def backtest_ticker(
    ctx: AppContext,
    ticker: str,
    params: TrainParams,
    config: Any,
    *,
    output_dir: Path | None = None,
    start: date | None = None,
    end: date | None = None,
    show_progress: bool = False,
    fit: Any = None,
) -> tuple[Any, Path]:
    """Walk-forward backtest of ``ticker``; writes ``backtest.csv`` and ``summary.json``.

    ``fit``: how each block's model is made (default: trained on the ticker's window; a
    universal model's fit function from ``evaluation.universe``).

    ``show_progress``: a bar over the fits (and the origins they serve) with the time left.

    Returns the :class:`~stock_lstm.evaluation.backtest.BacktestResult` and the folder it
    was written to (default ``reports/<TICKER>/backtest_<UTC time>/``).
    """
    import json

    from stock_lstm.evaluation.backtest import walk_forward
    from stock_lstm.tickers import ticker_file_stem

    ticker = validate_ticker(ticker)
    params = params.validate()
    config = config.validate()
    prices, _sync = load_prices(ctx, ticker, start=start, end=end)
    prices = with_market(ctx, prices, params.inputs, start=start, end=end)
    with fit_progress_bar(config, enabled=show_progress) as progress:
        result = walk_forward(
            prices,
            params,
            config,
            threads=ctx.settings.torch_threads,
            progress=progress,
            fit=fit,
        )
    folder = output_dir or (
        Path(ctx.settings.reports_dir)
        / ticker_file_stem(ticker)
        / f"backtest_{ctx.clock().strftime('%Y%m%d_%H%M%S')}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    result.summary.update({"ticker": ticker, "fit_windows": result.fits})
    result.frame.to_csv(folder / "backtest.csv", index=False, float_format="%.6f")
    (folder / "summary.json").write_text(json.dumps(result.summary, indent=2, default=str))
    return result, folder
