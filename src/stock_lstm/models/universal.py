"""Universal versions: networks trained on a whole folder of tickers, kept apart from the
per-ticker registry.

A universal version belongs to no ticker, so it is not a ``ModelRegistry`` row (whose rows
each serve one ticker and carry that ticker's scaler, gate and calibration). It is two files
in ``<models>/universal/``: the weights (``<VERSION>.pt``, plain tensors, loaded with
``weights_only``) and a manifest (``<VERSION>.json``: parameters, tickers, cut-off, the
weights' sha256). ``activate VERSION --ticker X`` then registers an ordinary version of X
from it (X's own encoder, gate on X's validation rows, X's own calibration state), recorded
as ``universal_version`` in that version's parameters; ``train X --from VERSION`` fine-tunes
from its weights. Version ids are checked against ``VERSION_PATTERN`` before they name a file.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from stock_lstm.errors import ArtifactError, InvalidParameterError, ModelNotFoundError

#: ``UNIVERSAL_YYYYmmdd_HHMMSS`` (a suffix ``_2`` when two are made in one second).
VERSION_PATTERN = re.compile(r"^UNIVERSAL_\d{8}_\d{6}(_\d{1,3})?$")
FOLDER = "universal"


class UniversalRecord(BaseModel):
    """The manifest of a universal version."""

    model_config = ConfigDict(frozen=True)

    version_id: str
    created_at: datetime
    params: dict[str, Any]
    tickers: list[str]
    source_dir: str
    until: date | None
    validation_start: date
    train_origins: int
    epochs_run: int
    best_epoch: int
    train_seconds: float
    sha256: str
    #: Per epoch: train and validation loss (manifests from before it have none).
    history: list[dict[str, float]] = []


def is_universal_id(version_id: str) -> bool:
    """Whether ``version_id`` names a universal version (by its form alone)."""
    return bool(VERSION_PATTERN.match(version_id))


def _folder(models_dir: Path) -> Path:
    return Path(models_dir) / FOLDER


def _checked(version_id: object) -> str:
    if not isinstance(version_id, str) or not VERSION_PATTERN.match(version_id):
        raise InvalidParameterError(
            f"{version_id!r} is not a universal version id (UNIVERSAL_YYYYmmdd_HHMMSS): "
            "list them with `stock-lstm models`"
        )
    return version_id


def save_universal(
    models_dir: Path,
    model: Any,
    *,
    created_at: datetime,
    params: dict[str, Any],
    tickers: list[str],
    source_dir: str,
    until: date | None,
    validation_start: date,
    train_origins: int,
    epochs_run: int,
    best_epoch: int,
    train_seconds: float,
    history: list[dict[str, float]] | None = None,
) -> UniversalRecord:
    """Write the weights and then the manifest (each atomically); the new record."""
    import torch

    from stock_lstm.models.artifacts import ensure_writable_directory, sha256_file

    folder = _folder(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    ensure_writable_directory(folder)
    base = f"UNIVERSAL_{created_at:%Y%m%d_%H%M%S}"
    version_id, n = base, 1
    while (folder / f"{version_id}.json").exists() or (folder / f"{version_id}.pt").exists():
        n += 1
        version_id = f"{base}_{n}"
    weights = folder / f"{version_id}.pt"
    payload = {"network": model.network, "config": model.config(), "state": model.state_dict()}
    _atomic(weights, lambda path: torch.save(payload, path))
    record = UniversalRecord(
        version_id=version_id,
        created_at=created_at,
        params=params,
        tickers=tickers,
        source_dir=source_dir,
        until=until,
        validation_start=validation_start,
        train_origins=train_origins,
        epochs_run=epochs_run,
        history=history or [],
        best_epoch=best_epoch,
        train_seconds=round(train_seconds, 1),
        sha256=sha256_file(weights),
    )
    _atomic(folder / f"{version_id}.json", lambda path: path.write_text(record.model_dump_json()))
    return record


def _atomic(path: Path, write: Any) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def get_universal(models_dir: Path, version_id: str) -> UniversalRecord:
    """The manifest of ``version_id``; ``ModelNotFoundError`` when there is none."""
    path = _folder(models_dir) / f"{_checked(version_id)}.json"
    if not path.is_file():
        raise ModelNotFoundError(
            f"no universal version {version_id} in {_folder(models_dir)}: train one with "
            "`stock-lstm train-universe --csv-dir DIR` or list them with `stock-lstm models`"
        )
    try:
        return UniversalRecord.model_validate_json(path.read_text())
    except ValueError as exc:
        raise ArtifactError(f"the manifest {path} is unreadable: {exc}") from None


def load_universal_network(models_dir: Path, record: UniversalRecord) -> Any:
    """The network of ``record``, its weights checked against the manifest's sha256 first."""
    import torch

    from stock_lstm.models.artifacts import sha256_file
    from stock_lstm.models.networks import build_network

    weights = _folder(models_dir) / f"{_checked(record.version_id)}.pt"
    if not weights.is_file() or sha256_file(weights) != record.sha256:
        raise ArtifactError(
            f"the weights of {record.version_id} are missing or do not match their manifest: "
            "train the universal model again"
        )
    saved = torch.load(weights, weights_only=True)
    model = build_network(saved["network"], **saved["config"])
    model.load_state_dict(saved["state"])
    model.eval()
    return model


def list_universal(models_dir: Path) -> list[UniversalRecord]:
    """Every readable universal version, newest first (an unreadable manifest is skipped)."""
    folder = _folder(models_dir)
    if not folder.is_dir():
        return []
    records = []
    for path in folder.glob("UNIVERSAL_*.json"):
        try:
            records.append(UniversalRecord.model_validate_json(path.read_text()))
        except ValueError:
            continue
    return sorted(records, key=lambda r: r.created_at, reverse=True)
