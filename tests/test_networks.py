"""Networks by name: ``--network gru`` trains, registers and predicts like the LSTM; the
artifact records its network; a model saved before networks had names still predicts."""

from __future__ import annotations

import pytest
import torch
from api_helpers import TINY_PARAMS

from stock_lstm.cli import main
from stock_lstm.config import Settings
from stock_lstm.errors import ArtifactError, InvalidParameterError
from stock_lstm.models.gru import GRUForecaster
from stock_lstm.models.lstm import LSTMForecaster
from stock_lstm.models.networks import (
    NETWORK_CLASSES,
    build_network,
    network_class,
    network_for_artifact,
)
from stock_lstm.models.training import PARAM_CHOICES, TrainParams
from stock_lstm.workflows import AppContext, predict_ticker, register_outcome, train_ticker

PARAMS = TrainParams.from_dict(TINY_PARAMS)


def test_the_networks_are_listed_without_importing_torch() -> None:
    """The registry holds "module:Class" strings: the parameter's choices (the CLI's, the
    API schema's) come from it in a process that never imports torch."""
    import subprocess
    import sys

    probe = (
        "import sys; from stock_lstm.models.params import PARAM_CHOICES; "
        "print(','.join(PARAM_CHOICES['network']), 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.split() == [",".join(NETWORK_CLASSES), "False"], done.stderr
    assert PARAM_CHOICES["network"] == tuple(NETWORK_CLASSES) and TrainParams().network == "lstm"
    with pytest.raises(InvalidParameterError, match="network must be one of lstm, gru"):
        PARAMS.replace(network="transformer").validate()


@pytest.mark.parametrize("name", list(NETWORK_CLASSES))
def test_a_network_has_the_heads_shapes_and_a_causal_chunk_output(name: str) -> None:
    model = build_network(name, n_features=3, hidden_size=8, num_layers=2, horizon=4)
    assert model.network == name and type(model) is network_class(name)
    x = torch.randn(2, 12, 3)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 4)
        torch.testing.assert_close(model.forward_steps(x, 11)[:, 0], model(x))
    rebuilt = network_class(name)(**model.config())
    rebuilt.load_state_dict(model.state_dict())  # config() rebuilds the same network


def test_an_lstm_keeps_the_weight_names_every_saved_artifact_has() -> None:
    names = LSTMForecaster(hidden_size=4, num_layers=1).state_dict()
    assert "lstm.weight_ih_l0" in names
    assert "gru.weight_ih_l0" in GRUForecaster(hidden_size=4, num_layers=1).state_dict()


def test_an_artifact_without_a_network_is_an_lstm_and_an_unknown_one_is_refused() -> None:
    assert network_for_artifact({"config": {}}) is LSTMForecaster
    assert network_for_artifact({"network": "gru"}) is GRUForecaster
    with pytest.raises(ArtifactError, match=r"'mamba' network.*upgrade stock-lstm"):
        network_for_artifact({"network": "mamba"})


def test_a_gru_trains_registers_and_predicts(ctx: AppContext) -> None:
    outcome = train_ticker(ctx, "AAPL", PARAMS.replace(network="gru"))
    assert isinstance(outcome.result.model, GRUForecaster)
    record = register_outcome(ctx, outcome, force=True)
    assert record.network == "gru" and record.to_dict()["network"] == "gru"
    ctx.model_cache.clear()
    forecast = predict_ticker(ctx, "AAPL", 3)
    assert forecast.version_id == record.version_id and len(forecast.predictions) == 3
    assert isinstance(ctx.model_cache.loaded(record.version_id).model, GRUForecaster)


def test_a_model_saved_before_networks_had_names_still_predicts(ctx: AppContext) -> None:
    """Its ``.pt`` has no ``network`` and its registry params no ``network``."""
    from pathlib import Path

    from sqlalchemy import update

    from stock_lstm.db import ModelRegistry
    from stock_lstm.models.artifacts import sha256_file

    record = register_outcome(ctx, train_ticker(ctx, "AAPL", PARAMS), force=True)
    path = Path(record.model_path)
    payload = torch.load(path, weights_only=True)
    del payload["network"]
    torch.save(payload, path)
    params = {k: v for k, v in record.params.items() if k != "network"}
    with ctx.db.transaction() as session:
        session.execute(
            update(ModelRegistry)
            .where(ModelRegistry.version_id == record.version_id)
            .values(model_sha256=sha256_file(path), params=params)
        )
    ctx.model_cache.clear()
    assert len(predict_ticker(ctx, "AAPL", 2).predictions) == 2


def test_cli_train_network_gru_then_models_json_shows_it(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    tiny = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_PARAMS.items()]
    assert main(["train", "MSFT", "--no-progress", "--network", "gru", *tiny]) == 0
    capsys.readouterr()
    assert main(["predict", "MSFT", "--days", "2"]) == 0
    capsys.readouterr()
    assert main(["models", "MSFT", "--json"]) == 0
    (model,) = json.loads(capsys.readouterr().out)["models"]
    assert model["network"] == "gru" and model["params"]["network"] == "gru"


def test_the_api_trains_a_gru_when_asked(ctx: AppContext) -> None:
    from api_helpers import fast_training, wait_until
    from fastapi.testclient import TestClient

    from stock_lstm.api import create_app

    with TestClient(create_app(context=ctx, run_training=fast_training)) as client:
        started = client.post("/api/v1/training/start", json={"ticker": "AAPL", "network": "gru"})
        assert started.status_code == 202, started.text
        url = started.json()["status_url"]
        job = wait_until(
            lambda: (body := client.get(url).json())["status"] == "completed" and body,
            timeout=60,
            what="the GRU job",
        )
        assert job["params"]["network"] == "gru"
        model = client.get("/api/v1/models/AAPL/active").json()
        assert model["version_id"] == job["version_id"]
        refused = client.post("/api/v1/training/start", json={"ticker": "AAPL", "network": "x"})
        assert refused.status_code == 422
