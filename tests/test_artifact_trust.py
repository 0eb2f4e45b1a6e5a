"""The registry is data, not code: a row that anyone with write access to the database could
craft never makes the model host load a file outside the models folder, an unfingerprinted
file, or a pickle that is not an encoder, and a failed load is not remembered.

(Issue 14, item 8: a crafted row with ``scaler_path`` elsewhere and an empty sha256 ran a
shell command on the next ``POST /predict``.)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import pytest
from api_helpers import TINY_PARAMS
from fastapi.testclient import TestClient
from sqlalchemy import update

from stock_lstm.api import create_app
from stock_lstm.data.encoding import encoder_from_state
from stock_lstm.db import ModelRegistry
from stock_lstm.errors import ArtifactError
from stock_lstm.models.artifacts import sha256_file
from stock_lstm.models.registry import ModelRecord
from stock_lstm.models.training import TrainParams
from stock_lstm.workflows import AppContext, predict_ticker, register_outcome, train_ticker


class CreatesAFile:
    """Unpickling this opens ``path`` for writing: proof that a pickle ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.fixture
def record(ctx: AppContext) -> ModelRecord:
    outcome = train_ticker(ctx, "AAPL", TrainParams.from_dict(TINY_PARAMS))
    return register_outcome(ctx, outcome, force=True)


def rewrite_row(ctx: AppContext, version_id: str, **values: Any) -> None:
    """What someone with write access to the database can do."""
    with ctx.db.transaction() as session:
        session.execute(
            update(ModelRegistry).where(ModelRegistry.version_id == version_id).values(**values)
        )
    ctx.model_cache.clear()


def refused(ctx: AppContext, match: str) -> None:
    with pytest.raises(ArtifactError, match=match):
        predict_ticker(ctx, "AAPL", 3)


def test_a_new_scaler_is_plain_json_numbers(record: ModelRecord) -> None:
    path = Path(record.scaler_path)
    assert path.name == f"{record.version_id}_scaler.json"
    state = json.loads(path.read_text())
    assert state["kind"] == "ReturnFeaturesEncoder"
    assert encoder_from_state(state).scale_ == pytest.approx(state["scale"])


@pytest.mark.parametrize("fingerprint", ["", "matching"])
def test_a_scaler_outside_the_models_folder_never_loads(
    ctx: AppContext, record: ModelRecord, tmp_path: Path, fingerprint: str
) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.joblib"
    joblib.dump(CreatesAFile(marker), evil)
    sha = sha256_file(evil) if fingerprint else ""
    rewrite_row(ctx, record.version_id, scaler_path=str(evil), scaler_sha256=sha)
    refused(ctx, "outside the models folder")
    with TestClient(create_app(context=ctx)) as client:
        response = client.post("/api/v1/predict", json={"ticker": "AAPL", "days_ahead": 3})
    assert response.status_code == 409
    assert not marker.exists()


@pytest.mark.parametrize(
    "path_of",
    [
        lambda models, v: models / ".." / "models" / ".." / f"{v}_scaler.json",  # climbs out
        lambda models, v: models / f"OTHER_{v}_scaler.json",  # another version's name
    ],
    ids=["dotdot", "other-name"],
)
def test_a_path_that_climbs_out_or_names_another_file_is_refused(
    ctx: AppContext, record: ModelRecord, path_of: Callable[[Path, str], Path]
) -> None:
    models = Path(ctx.settings.models_dir)
    target = path_of(models, record.version_id)
    shutil.copyfile(record.scaler_path, target)
    rewrite_row(ctx, record.version_id, scaler_path=str(target))
    refused(ctx, "outside the models folder or under another name")


@pytest.mark.parametrize("kind", ["model", "scaler"])
def test_an_empty_fingerprint_is_refused(ctx: AppContext, record: ModelRecord, kind: str) -> None:
    rewrite_row(ctx, record.version_id, **{f"{kind}_sha256": ""})
    refused(ctx, "no recorded fingerprint")


def _legacy_scaler(ctx: AppContext, record: ModelRecord, content: Any) -> Path:
    """A ``_scaler.joblib`` as versions saved before the JSON format have, row updated."""
    from stock_lstm.data.encoding import encoder_state

    legacy = Path(record.scaler_path).with_name(f"{record.version_id}_scaler.joblib")
    if content == "encoder":
        content = encoder_from_state(json.loads(Path(record.scaler_path).read_text()))
        assert encoder_state(content)["kind"] == "ReturnFeaturesEncoder"
    joblib.dump(content, legacy)
    rewrite_row(ctx, record.version_id, scaler_path=str(legacy), scaler_sha256=sha256_file(legacy))
    return legacy


def test_a_legacy_pickle_is_never_loaded_and_names_the_migration(
    ctx: AppContext, record: ModelRecord, tmp_path: Path
) -> None:
    """Even a legacy pickle whose sha256 matches the row (someone who can write the database
    and the models folder) is refused before it is read: its payload never runs."""
    marker = tmp_path / "pwned"
    _legacy_scaler(ctx, record, CreatesAFile(marker))
    refused(ctx, "stock-lstm migrate-artifacts")
    with TestClient(create_app(context=ctx)) as client:
        response = client.post("/api/v1/predict", json={"ticker": "AAPL", "days_ahead": 3})
    assert response.status_code == 409
    assert not marker.exists()


def test_migrate_artifacts_converts_encoders_and_refuses_anything_else(
    ctx: AppContext, record: ModelRecord, tmp_path: Path
) -> None:
    from stock_lstm.models.legacy import migrate_artifacts

    models = Path(ctx.settings.models_dir)
    legacy = _legacy_scaler(ctx, record, "encoder")
    assert migrate_artifacts(ctx.db, models, dry_run=True).converted == [record.version_id]
    assert legacy.exists()
    report = migrate_artifacts(ctx.db, models)
    assert report.converted == [record.version_id] and report.refused == {}
    assert not legacy.exists()
    ctx.model_cache.clear()
    assert len(predict_ticker(ctx, "AAPL", 3).predictions) == 3
    assert migrate_artifacts(ctx.db, models).converted == []  # once is enough

    marker = tmp_path / "pwned"
    evil = _legacy_scaler(ctx, record, CreatesAFile(marker))
    report = migrate_artifacts(ctx.db, models)
    assert report.converted == [] and "names" in report.refused[record.version_id]
    assert not marker.exists() and evil.exists()  # refused, and left for a person to see
    _legacy_scaler(ctx, record, {"not": "an encoder"})
    assert "not an encoder" in migrate_artifacts(ctx.db, models).refused[record.version_id]


@pytest.mark.parametrize(
    "state",
    [
        {"kind": "os.system", "target_index": 0},
        {"kind": "LogReturnEncoder", "target_index": 0, "scale": "nan"},
        {"kind": "LogReturnEncoder", "target_index": 0, "scale": -1.0},
        {"kind": "ReturnFeaturesEncoder", "target_index": 3, "scale": 1.0, "mean": [0.0]},
        {"kind": "PriceEncoder", "target_index": 5, "data_min": [1.0], "data_max": [2.0]},
        ["LogReturnEncoder"],
    ],
)
def test_an_encoder_state_that_is_not_one_is_refused(state: object) -> None:
    with pytest.raises(ValueError):
        encoder_from_state(state)


def test_an_artifact_error_names_server_files_only_to_who_may_see_them(
    ctx: AppContext, record: ModelRecord, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The refusal names the models folder: a token holder reads it, any other client of a
    server with a token gets a generic sentence (the full text goes to the server log)."""
    from stock_lstm.api.redaction import GENERIC_ARTIFACT_ERROR

    moved = tmp_path / "elsewhere.pt"
    shutil.copyfile(record.model_path, moved)
    rewrite_row(ctx, record.version_id, model_path=str(moved))
    ctx.settings.api_token = "secret"
    body = {"ticker": "AAPL", "days_ahead": 3}
    with TestClient(create_app(context=ctx)) as client:
        anonymous = client.post("/api/v1/predict", json=body)
        holder = client.post(
            "/api/v1/predict", json=body, headers={"Authorization": "Bearer secret"}
        )
    assert anonymous.status_code == holder.status_code == 409
    assert anonymous.json()["detail"] == GENERIC_ARTIFACT_ERROR
    assert str(ctx.settings.models_dir) in holder.json()["detail"]
    assert str(ctx.settings.models_dir) in caplog.text
