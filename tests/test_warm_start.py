"""``train --warm-start``: a retrain starts from the active model's weights when the network
is the same, and from random weights (saying why) when it is not."""

from __future__ import annotations

import pytest
import torch
from api_helpers import TINY_PARAMS

from stock_lstm.cli import main
from stock_lstm.config import Settings
from stock_lstm.models.training import TrainParams, _evaluation_loss
from stock_lstm.workflows import AppContext, register_outcome, train_ticker

PARAMS = TrainParams.from_dict({**TINY_PARAMS, "epochs": 6})


def test_a_warm_start_begins_where_the_active_model_ended(ctx: AppContext) -> None:
    trained = train_ticker(ctx, "AAPL", PARAMS)
    first = register_outcome(ctx, trained, force=True)
    ctx.clock.advance(seconds=1)
    warm = train_ticker(ctx, "AAPL", PARAMS, warm_start=True)
    assert warm.warm_started_from == first.version_id
    cold = train_ticker(ctx, "AAPL", PARAMS)
    assert cold.warm_started_from is None  # only when asked
    # Same seed, same data: a cold retrain repeats the first training; the warm one does not.
    assert cold.result.history == trained.result.history != warm.result.history

    def validation_loss(outcome: object) -> float:
        data = outcome.data  # type: ignore[attr-defined]
        model = outcome.result.model  # type: ignore[attr-defined]
        return _evaluation_loss(model, torch.as_tensor(data.X_val), torch.as_tensor(data.y_val))

    # The active model's weights are the bar: on the same data the retrain ends at least as
    # good on validation as the model it started from.
    assert validation_loss(warm) <= validation_loss(trained) + 1e-6


def test_another_network_trains_from_random_weights_and_says_so(
    ctx: AppContext, caplog: pytest.LogCaptureFixture
) -> None:
    register_outcome(ctx, train_ticker(ctx, "AAPL", PARAMS), force=True)
    bigger = PARAMS.replace(hidden_size=PARAMS.hidden_size * 2)
    outcome = train_ticker(ctx, "AAPL", bigger, warm_start=True)
    assert outcome.warm_started_from is None
    assert "another network" in caplog.text and "random weights" in caplog.text
    nothing = train_ticker(ctx, "MSFT", PARAMS, warm_start=True)  # no model yet
    assert nothing.warm_started_from is None


def test_cli_train_warm_start_names_the_version(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_PARAMS.items()]
    assert main(["train", "AAPL", "--no-progress", *tiny]) == 0
    first = capsys.readouterr().out.split("model ")[1].split()[0]
    assert main(["train", "AAPL", "--no-progress", "--warm-start", *tiny]) == 0
    assert f"warm-started from {first}" in capsys.readouterr().out
