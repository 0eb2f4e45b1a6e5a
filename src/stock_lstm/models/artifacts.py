"""Model and scaler files: written atomically, fingerprinted, verified before deserializing.

A crash while saving never leaves a half file under the final name (write to a temporary
name in the same folder, fsync, rename). Loading checks the sha256 recorded in the registry
*before* unpickling anything, because a joblib file is a pickle and a replaced one could run
code.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from stock_lstm.errors import ArtifactError
from stock_lstm.tickers import ticker_file_stem

ARTIFACT_FORMAT = 1
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class SavedArtifacts:
    """Where a version's files went and their fingerprints."""

    version_id: str
    model_path: Path
    scaler_path: Path
    model_sha256: str
    scaler_sha256: str


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def new_version_id(ticker: str, directory: Path, created_at: datetime) -> str:
    """``{TICKER}_{YYYYmmdd_HHMMSS}``, with ``_2``, ``_3``... if that second is taken."""
    stem = f"{ticker_file_stem(ticker)}_{created_at.strftime('%Y%m%d_%H%M%S')}"
    candidate, counter = stem, 1
    while (directory / f"{candidate}.pt").exists() or (
        directory / f"{candidate}_scaler.joblib"
    ).exists():
        counter += 1
        candidate = f"{stem}_{counter}"
    return candidate


def _write_atomically(path: Path, write: Callable[[Path], None]) -> str:
    """Write via ``write(tmp_path)``, fsync, rename onto ``path``; return the file's sha256."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        write(tmp_path)
        with tmp_path.open("rb") as handle:
            os.fsync(handle.fileno())
        digest = sha256_file(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return digest


def save_artifacts(
    *,
    directory: Path,
    version_id: str,
    model_config: dict[str, Any],
    state_dict: dict[str, Any],
    scaler: Any,
    metadata: dict[str, Any] | None = None,
) -> SavedArtifacts:
    """Save ``{version_id}.pt`` (config + weights, loadable with ``weights_only=True``) and
    ``{version_id}_scaler.joblib``. Raises ``ArtifactError`` if the folder is not writable."""
    import joblib
    import torch

    model_path = directory / f"{version_id}.pt"
    scaler_path = directory / f"{version_id}_scaler.joblib"
    payload = {
        "format": ARTIFACT_FORMAT,
        "config": dict(model_config),
        "metadata": dict(metadata or {}),
        "state_dict": state_dict,
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        model_sha = _write_atomically(model_path, lambda tmp: torch.save(payload, tmp))
        scaler_sha = _write_atomically(scaler_path, lambda tmp: joblib.dump(scaler, tmp))
    except OSError as exc:
        with contextlib.suppress(OSError):
            model_path.unlink(missing_ok=True)
        raise ArtifactError(
            f"cannot write model files to {directory}: {exc.strerror or exc}; "
            "make the folder writable or set STOCK_LSTM_MODELS_DIR"
        ) from exc
    return SavedArtifacts(version_id, model_path, scaler_path, model_sha, scaler_sha)


def _verify(path: Path, expected_sha256: str | None, version_id: str, kind: str) -> None:
    hint = f"retrain the ticker or activate another version (version {version_id})"
    if not path.is_file():
        raise ArtifactError(f"{kind} file {path} of version {version_id} is missing: {hint}")
    if expected_sha256 and sha256_file(path) != expected_sha256:
        raise ArtifactError(
            f"{kind} file {path} of version {version_id} does not match the fingerprint "
            f"recorded when it was saved (truncated or replaced); refusing to load it: {hint}"
        )


def load_model_payload(path: Path, expected_sha256: str | None, version_id: str) -> dict[str, Any]:
    """The verified ``.pt`` payload: ``{"format", "config", "metadata", "state_dict"}``."""
    import torch

    _verify(path, expected_sha256, version_id, "model")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            f"model file {path} of version {version_id} is unreadable ({type(exc).__name__}): "
            "retrain the ticker or activate another version"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(
            f"model file {path} of version {version_id} is not a stock-lstm artifact "
            f"(format {ARTIFACT_FORMAT}): retrain the ticker"
        )
    return payload


def load_scaler(path: Path, expected_sha256: str | None, version_id: str) -> Any:
    """The verified scaler object."""
    import joblib

    _verify(path, expected_sha256, version_id, "scaler")
    try:
        return joblib.load(path)
    except Exception as exc:
        raise ArtifactError(
            f"scaler file {path} of version {version_id} is unreadable ({type(exc).__name__}): "
            "retrain the ticker or activate another version"
        ) from exc
