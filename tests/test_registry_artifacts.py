"""Registry activation rules and artifact integrity (no training needed: tiny fake weights)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import torch
from sqlalchemy.exc import IntegrityError

from stock_lstm.data.encoding import PriceEncoder
from stock_lstm.db import Database, ModelRegistry
from stock_lstm.errors import ArtifactError, ModelNotFoundError
from stock_lstm.models.artifacts import (
    load_model_payload,
    load_scaler,
    new_version_id,
    save_artifacts,
    sha256_file,
)
from stock_lstm.models.lstm import LSTMForecaster
from stock_lstm.models.registry import (
    TrainingDataSummary,
    activate_version,
    get_active_model,
    list_models,
    register_model,
)

SUMMARY = TrainingDataSummary(date(2020, 1, 2), date(2021, 1, 4), 250, "0" * 64)


def _save(directory: Path, version_id: str):
    model = LSTMForecaster(n_features=1, hidden_size=4, num_layers=1, dropout=0.0)
    scaler = PriceEncoder().fit(torch.arange(10.0).reshape(-1, 1).numpy())
    return save_artifacts(
        directory=directory,
        version_id=version_id,
        model_config=model.config(),
        state_dict=model.state_dict(),
        scaler=scaler,
        metadata={"feature_columns": ["close"], "target_index": 0, "sequence_length": 5},
    )


def _register(db: Database, directory: Path, version_id: str, *, activate: bool = True):
    return register_model(
        db,
        ticker="AAPL",
        artifacts=_save(directory, version_id),
        params={"sequence_length": 5},
        metrics={"mae": 1.0, "persistence": {"mae": 1.1}},
        data=SUMMARY,
        code_version="test",
        activate=activate,
    )


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def test_new_model_replaces_active_one_atomically(db: Database, tmp_path: Path) -> None:
    first = _register(db, tmp_path, "AAPL_1")
    second = _register(db, tmp_path, "AAPL_2")
    assert get_active_model(db, "aapl").version_id == second.version_id
    states = {r.version_id: r.is_active for r in list_models(db, "AAPL")}
    assert states == {first.version_id: False, second.version_id: True}


def test_activate_switches_back_and_keeps_exactly_one_active(db: Database, tmp_path: Path) -> None:
    first = _register(db, tmp_path, "AAPL_1")
    _register(db, tmp_path, "AAPL_2")
    activate_version(db, first.version_id)
    active = [r.version_id for r in list_models(db) if r.is_active]
    assert active == [first.version_id]


def test_database_refuses_a_second_active_row(db: Database, tmp_path: Path) -> None:
    _register(db, tmp_path, "AAPL_1")
    with pytest.raises(IntegrityError), db.transaction() as session:
        row = session.get(ModelRegistry, "AAPL_1")
        assert row is not None
        session.add(
            ModelRegistry(
                **{c.name: getattr(row, c.name) for c in ModelRegistry.__table__.columns}
                | {"version_id": "AAPL_X"}
            )
        )


def test_unknown_version_and_missing_active_model_say_what_to_do(db: Database) -> None:
    with pytest.raises(ModelNotFoundError, match="stock-lstm models"):
        activate_version(db, "NOPE_1")
    with pytest.raises(ModelNotFoundError, match="make train TICKER=MSFT"):
        get_active_model(db, "MSFT")


def test_inactive_registration_leaves_active_model_alone(db: Database, tmp_path: Path) -> None:
    first = _register(db, tmp_path, "AAPL_1")
    _register(db, tmp_path, "AAPL_2", activate=False)
    assert get_active_model(db, "AAPL").version_id == first.version_id


def test_version_ids_are_file_safe_and_unique(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = new_version_id("^GSPC", tmp_path, moment)
    assert first == "_GSPC_20260102_030405"
    _save(tmp_path, first)
    assert new_version_id("^GSPC", tmp_path, moment) == "_GSPC_20260102_030405_2"


def test_a_version_id_is_never_handed_out_twice_before_its_files_exist(tmp_path: Path) -> None:
    """Two trainings finishing in the same second (two processes) both ask for an id before
    either has saved: they must get different ids, or the loser's clean-up deletes the
    files the winner registered (issue 14, item 5)."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: new_version_id("AAPL", tmp_path, moment), range(16)))
    assert len(set(ids)) == 16
    _save(tmp_path, ids[0])  # saving releases the reservation; the files keep the id taken
    assert not list(tmp_path.glob(f".{ids[0]}.*"))
    assert new_version_id("AAPL", tmp_path, moment) not in ids


def test_a_version_id_the_registry_knows_is_skipped(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    taken = {"AAPL_20260102_030405", "AAPL_20260102_030405_2"}
    assert new_version_id("AAPL", tmp_path, moment, taken=taken.__contains__) == (
        "AAPL_20260102_030405_3"
    )


def test_artifacts_round_trip_and_leave_no_temporary_files(tmp_path: Path) -> None:
    saved = _save(tmp_path, "AAPL_1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AAPL_1.pt", "AAPL_1_scaler.json"]
    payload = load_model_payload(
        saved.model_path, saved.model_sha256, "AAPL_1", models_dir=tmp_path
    )
    assert payload["config"]["hidden_size"] == 4
    scaler = load_scaler(saved.scaler_path, saved.scaler_sha256, "AAPL_1", models_dir=tmp_path)
    assert scaler.decode(scaler.encode_inputs([[9.0]]), None)[0, 0] == 9.0


@pytest.mark.parametrize("which", ["model", "scaler"])
def test_truncated_or_replaced_artifact_is_refused_before_loading(
    tmp_path: Path, which: str
) -> None:
    saved = _save(tmp_path, "AAPL_1")
    path = saved.model_path if which == "model" else saved.scaler_path
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ArtifactError, match="AAPL_1"):
        if which == "model":
            load_model_payload(path, saved.model_sha256, "AAPL_1", models_dir=tmp_path)
        else:
            load_scaler(path, saved.scaler_sha256, "AAPL_1", models_dir=tmp_path)


def test_missing_and_unreadable_artifacts_are_clear_errors(tmp_path: Path) -> None:
    saved = _save(tmp_path, "AAPL_1")
    garbage = tmp_path / "AAPL_2.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ArtifactError, match="unreadable"):
        load_model_payload(garbage, sha256_file(garbage), "AAPL_2", models_dir=tmp_path)
    saved.scaler_path.unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_scaler(saved.scaler_path, saved.scaler_sha256, "AAPL_1", models_dir=tmp_path)


def test_unwritable_models_folder_is_an_artifact_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ArtifactError, match="cannot write"):
        _save(blocker / "models", "AAPL_1")


def test_a_full_disk_is_an_artifact_error_and_leaves_no_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's own file writer reports ENOSPC as a bare RuntimeError; the model is written as
    plain bytes instead, so a full disk is the same one-line error as any unwritable folder."""

    def full(_path: Path, _data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(ArtifactError, match="No space left on device; free some space"):
        _save(tmp_path / "models", "AAPL_1")
    assert list((tmp_path / "models").iterdir()) == []
