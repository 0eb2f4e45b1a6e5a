"""Register a trained model: artifacts on disk, the registry row, the promotion gate's
decision, in that order (files first, deleted if the row fails)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from stock_lstm.errors import ModelNotFoundError
from stock_lstm.models import jobs
from stock_lstm.models.records import GateDecision
from stock_lstm.models.registry import (
    AlreadyRegisteredError,
    ModelRecord,
    TrainingDataSummary,
    active_version_id,
    register_model,
)
from stock_lstm.workflows.context import (
    AppContext,
    code_version,
    fingerprint_prices,
)
from stock_lstm.workflows.train import TrainOutcome

if TYPE_CHECKING:
    from stock_lstm.models.artifacts import SavedArtifacts

log = logging.getLogger(__name__)


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
    should_activate, gate = _gate(ctx, outcome, force=force)
    outcome.gate = gate
    artifacts = _save(ctx, outcome, job_id)
    prices = outcome.prices
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
        _delete(artifacts)
        log.warning("%s", exc)
        record = _adopt_earlier_registration(ctx, outcome, exc, gate, report_path)
    except BaseException as exc:
        _delete(artifacts)
        outcome.artifacts = None
        if job_id:
            jobs.mark_failed(ctx.db, job_id, str(exc) or type(exc).__name__, clock=ctx.clock)
        raise
    outcome.record = record
    return record


def _gate(ctx: AppContext, outcome: TrainOutcome, *, force: bool) -> tuple[bool, GateDecision]:
    """Whether the new version may become active, and the gate's verdict on it."""
    try:  # one indexed column: decoding every version of a nightly-retrained ticker was slow
        has_active = bool(active_version_id(ctx.db, outcome.ticker))
    except ModelNotFoundError:
        has_active = False
    return gate_decision(
        outcome.evaluation.metrics.validation.rmae_h1,
        threshold=ctx.settings.gate_threshold,
        has_active_model=has_active,
        force=force,
    )


def _save(ctx: AppContext, outcome: TrainOutcome, job_id: str | None) -> SavedArtifacts:
    """Write the version's files (atomically, under a version id reserved for it); a
    failure here fails the job."""
    from stock_lstm.models.artifacts import new_version_id, save_artifacts

    try:
        models_dir = Path(ctx.settings.models_dir)
        outcome.artifacts = save_artifacts(
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
    except Exception as exc:
        if job_id:
            jobs.mark_failed(ctx.db, job_id, str(exc) or type(exc).__name__, clock=ctx.clock)
        raise
    return outcome.artifacts


def _delete(artifacts: SavedArtifacts) -> None:
    artifacts.model_path.unlink(missing_ok=True)
    artifacts.scaler_path.unlink(missing_ok=True)


def _adopt_earlier_registration(
    ctx: AppContext,
    outcome: TrainOutcome,
    exc: AlreadyRegisteredError,
    gate: GateDecision,
    report_path: str | None,
) -> ModelRecord:
    """Another attempt of this job (a Dask task retried after its worker died) registered
    first: its version is this outcome's, and this attempt's job is done (once its report
    exists, when it has one: this attempt's train_ticker marked the job running again)."""
    from stock_lstm.models.artifacts import SavedArtifacts
    from stock_lstm.models.registry import get_model

    record = get_model(ctx.db, exc.version_id)
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
    return record


def _registered(ctx: AppContext, version_id: str) -> bool:
    """Whether the registry already has ``version_id`` (from another machine's models folder)."""
    from stock_lstm.models.registry import get_model

    try:
        get_model(ctx.db, version_id)
    except ModelNotFoundError:
        return False
    return True
