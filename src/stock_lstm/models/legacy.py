"""``stock-lstm migrate-artifacts``: convert legacy pickled scalers to JSON, once, on purpose.

Versions saved before the JSON scaler format have a ``{version}_scaler.joblib``: a pickle,
which runs whatever code its bytes name when loaded. The load path never unpickles
(``artifacts.load_scaler`` refuses such a version with one line naming this command). This
migration is the only place that reads them, and even here nothing runs: what it trusts is
written down in :data:`ALLOWED_GLOBALS`, the encoder classes and the numpy pieces an array
is rebuilt from; a pickle naming anything else (``os.system``, a class of another package)
is refused before any object is made. The file must also be the version's own, inside the
models folder, with the sha256 the registry recorded.

Each converted version gets ``{version}_scaler.json`` (written atomically) and its registry
row points at it, with the new sha256, in one transaction; then the pickle is deleted, so
nothing remains that a later version of this code could be talked into loading.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from stock_lstm.db import Database
from stock_lstm.db.models import ModelRegistry
from stock_lstm.errors import ArtifactError
from stock_lstm.models import artifacts
from stock_lstm.models.artifacts import LEGACY_SCALER_SUFFIX, SCALER_SUFFIX

#: (module, name) pairs a legacy scaler may name: the encoder classes and what numpy and
#: joblib rebuild an array from. Nothing else is ever imported while reading one.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("stock_lstm.data.encoding", "PriceEncoder"),
        ("stock_lstm.data.encoding", "LogReturnEncoder"),
        ("stock_lstm.data.encoding", "ReturnFeaturesEncoder"),
        ("stock_lstm.data.encoding", "MinMaxScaler"),
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }
)


def _restricted_unpickler(filename: str, handle: Any) -> Any:
    from joblib.numpy_pickle import NumpyUnpickler

    class EncoderOnlyUnpickler(NumpyUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) not in ALLOWED_GLOBALS:
                raise ArtifactError(
                    f"{Path(filename).name} names {module}.{name}, which a scaler never holds: "
                    "it was not written by stock-lstm; not loaded (retrain the ticker)"
                )
            return super().find_class(module, name)

    return EncoderOnlyUnpickler(filename, handle, ensure_native_byte_order=True)


def read_legacy_scaler(path: Path) -> Any:
    """The encoder in a legacy ``_scaler.joblib``, read with the allow-list above."""
    from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

    from stock_lstm.data.encoding import ENCODER_KINDS

    with (
        open(path, "rb") as raw,
        _validate_fileobject_and_memmap(raw, str(path), None) as (handle, _mode),
    ):
        if isinstance(handle, str):
            raise ArtifactError(f"{path.name} is from joblib < 0.10: retrain the ticker")
        try:
            encoder = _restricted_unpickler(str(path), handle).load()
        except ArtifactError:
            raise
        except Exception as exc:
            raise ArtifactError(f"{path.name} is not a readable scaler ({exc})") from exc
    if type(encoder) not in ENCODER_KINDS.values():
        raise ArtifactError(f"{path.name} holds a {type(encoder).__name__}, not an encoder")
    return encoder


@dataclass
class MigrationReport:
    """What one run converted, and what it refused and why (by version id)."""

    converted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


def migrate_artifacts(db: Database, models_dir: Path, *, dry_run: bool = False) -> MigrationReport:
    """Convert every registry version whose scaler is a legacy pickle (see the module doc)."""
    from stock_lstm.data.encoding import encoder_state

    report = MigrationReport()
    with db.session() as session:
        rows = session.execute(
            select(ModelRegistry.version_id, ModelRegistry.scaler_path, ModelRegistry.scaler_sha256)
        ).all()
    for version_id, scaler_path, sha256 in rows:
        if not str(scaler_path).endswith(LEGACY_SCALER_SUFFIX):
            continue
        try:
            path = artifacts._checked_path(
                Path(scaler_path), models_dir, version_id, "scaler", (LEGACY_SCALER_SUFFIX,)
            )
            artifacts._verify(path, sha256, version_id, "scaler")
            state = encoder_state(read_legacy_scaler(path))
        except (ArtifactError, OSError, TypeError) as exc:
            report.refused[version_id] = str(exc)
            continue
        if dry_run:
            report.converted.append(version_id)
            continue
        target = path.with_name(f"{version_id}{SCALER_SUFFIX}")
        text = json.dumps(state, allow_nan=False).encode()
        digest = artifacts._write_atomically(target, lambda tmp, data=text: tmp.write_bytes(data))
        with db.transaction() as session:
            row = session.get(ModelRegistry, version_id)
            if row is not None:
                row.scaler_path, row.scaler_sha256 = str(target), digest
        with contextlib.suppress(OSError):
            path.unlink()
        report.converted.append(version_id)
    return report


__all__ = ["ALLOWED_GLOBALS", "MigrationReport", "migrate_artifacts", "read_legacy_scaler"]
