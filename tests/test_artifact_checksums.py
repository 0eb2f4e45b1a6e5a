"""Every artifact is checked against the sha256 the registry recorded *before* it is
deserialized: a truncated or replaced ``.pt`` or ``_scaler.joblib`` is refused with an error
naming the file and the version to retrain, and a malicious pickle never runs.

(``test_registry_artifacts.py`` covers the round trip and missing/unreadable files.)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import joblib
import pytest
import torch
from api_helpers import TINY_PARAMS
from fastapi.testclient import TestClient

from stock_lstm.api import create_app
from stock_lstm.errors import ArtifactError
from stock_lstm.models.registry import ModelRecord, activate_version
from stock_lstm.models.training import TrainParams
from stock_lstm.workflows import AppContext, predict_ticker, register_outcome, train_ticker


class CreatesAFile:
    """Unpickling this opens ``path`` for writing: proof that a pickle ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def train(ctx: AppContext, **params: int) -> ModelRecord:
    outcome = train_ticker(ctx, "AAPL", TrainParams.from_dict({**TINY_PARAMS, **params}))
    return register_outcome(ctx, outcome, force=True)


@pytest.fixture
def record(ctx: AppContext) -> ModelRecord:
    return train(ctx)


@pytest.fixture
def deserialized(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file that reaches torch.load or joblib.load (which still load it)."""
    seen: list[Path] = []
    for module in (torch, joblib):
        original = module.load

        def recording(path: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            seen.append(Path(path))
            return _original(path, *args, **kwargs)

        monkeypatch.setattr(module, "load", recording)
    return seen


def assert_refused(
    ctx: AppContext, record: ModelRecord, path: Path, deserialized: list[Path] | None = None
) -> None:
    """Predicting refuses ``path`` with the error a user can act on, without loading it."""
    ctx.model_cache.clear()
    with pytest.raises(ArtifactError) as refused:
        predict_ticker(ctx, "AAPL", 3)
    message = str(refused.value)
    assert str(path) in message and "does not match the fingerprint" in message
    assert f"version {record.version_id}" in message and "retrain" in message
    if deserialized is not None:
        assert path not in deserialized


@pytest.mark.parametrize("kind", ["model", "scaler"])
def test_a_truncated_artifact_is_refused_before_deserializing(
    ctx: AppContext, record: ModelRecord, deserialized: list[Path], kind: str
) -> None:
    path = Path(record.model_path if kind == "model" else record.scaler_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_refused(ctx, record, path, deserialized)


def test_a_model_file_replaced_by_another_valid_model_is_refused(
    ctx: AppContext, record: ModelRecord, deserialized: list[Path]
) -> None:
    ctx.clock.advance(seconds=1)
    other = train(ctx, hidden_size=4, seed=3)  # a perfectly loadable, different network
    shutil.copyfile(other.model_path, record.model_path)
    # Serve the first version again, now with the other version's weights under its name.
    activate_version(ctx.db, record.version_id)
    assert_refused(ctx, record, Path(record.model_path), deserialized)


def test_a_malicious_scaler_pickle_is_refused_and_never_runs(
    ctx: AppContext, record: ModelRecord, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    joblib.dump(CreatesAFile(marker), record.scaler_path)
    # The payload is live: loading a copy without the check does create the file.
    copy = tmp_path / "copy.joblib"
    shutil.copyfile(record.scaler_path, copy)
    joblib.load(copy)
    assert marker.exists()
    marker.unlink()

    assert_refused(ctx, record, Path(record.scaler_path))
    assert not marker.exists()
    # The API refuses it the same way: a 409 naming the file, not a 500, and no code run.
    with TestClient(create_app(context=ctx)) as client:
        response = client.post("/api/v1/predict", json={"ticker": "AAPL", "days_ahead": 3})
    assert response.status_code == 409
    assert record.scaler_path in response.json()["detail"]
    assert not marker.exists()
