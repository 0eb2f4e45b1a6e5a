"""The promotion gate: a worse model never replaces a serving one unless forced."""

from __future__ import annotations

import pytest

from stock_lstm.models.registry import get_active_model, list_models, registry_outcome
from stock_lstm.models.training import TrainParams
from stock_lstm.workflows import AppContext, gate_decision, register_outcome, train_ticker

SMALL = TrainParams(epochs=2, patience=0, sequence_length=10, hidden_size=8, num_layers=1)


@pytest.mark.parametrize(
    ("value", "has_active", "force", "activate", "status"),
    [
        (0.98, True, False, True, "passed"),
        (1.0, True, False, True, "passed"),
        (1.02, True, False, False, "failed"),
        (1.02, False, False, True, "failed"),
        (1.02, True, True, True, "forced"),
        (None, True, False, False, "failed"),
    ],
)
def test_gate_decision(
    value: float | None, has_active: bool, force: bool, activate: bool, status: str
) -> None:
    decided, gate = gate_decision(value, threshold=1.0, has_active_model=has_active, force=force)
    assert decided is activate and gate.status == status and gate.reason


def test_gate_keeps_the_old_model_active_when_the_new_one_is_worse(ctx: AppContext) -> None:
    first_outcome = train_ticker(ctx, "AAPL", SMALL)
    first = register_outcome(ctx, first_outcome)
    assert first.is_active  # the first model is activated whatever the gate says

    strict = AppContext(
        ctx.settings.model_copy(update={"gate_threshold": 1e-6}),
        ctx.db,
        ctx.source,
        ctx.clock,
        ctx.model_cache,
    )
    worse = register_outcome(strict, train_ticker(strict, "AAPL", SMALL))
    assert not worse.is_active and worse.metrics.gate.status == "failed"
    assert "registered inactive" in worse.metrics.gate.reason
    assert get_active_model(ctx.db, "AAPL").version_id == first.version_id
    # What the train commands print: the registry's state, read back, not inferred.
    line = registry_outcome(ctx.db, worse.version_id)
    assert line.startswith(f"AAPL: {worse.version_id} was registered inactive (gate failed")
    assert line.endswith(f"{first.version_id} keeps serving AAPL")
    assert registry_outcome(ctx.db, first.version_id) == (
        f"AAPL: {first.version_id} is now the active model (gate "
        f"{first.metrics.gate.status}: {first.metrics.gate.reason})"
    )

    forced = register_outcome(strict, train_ticker(strict, "AAPL", SMALL), force=True)
    assert forced.is_active and forced.metrics.gate.status == "forced"
    assert [r.version_id for r in list_models(ctx.db, "AAPL") if r.is_active] == [forced.version_id]
