"""Model and scaler files: written atomically, fingerprinted, verified before deserializing.

The registry is data, not code: a row names the files to load, so a database writable by more
people than the model host must not be able to make it run anything. Files load only from
inside the models folder, under their version's own name, with a recorded sha256 that matches;
the weights load with ``torch.load(weights_only=True)`` and the scaler is plain JSON numbers
(``{version}_scaler.json``). Nothing on the load path unpickles: a version saved before that
format (``_scaler.joblib``, a pickle) is refused with one line until the operator converts it
once with ``stock-lstm migrate-artifacts`` (``models.legacy``).

A crash while saving never leaves a half file under the final name: each file is written to
a temporary name in the same folder (``.<name>.<random>.tmp``), fsynced, renamed, and the
folder is fsynced so the rename itself survives a power cut; only then does the caller commit
the registry row. A process killed mid-save leaves at worst a temporary file nobody reads
(the next save removes it once it is ``STALE_TEMP_SECONDS`` old) or final files no registry
row names. Loading checks the sha256 recorded in the registry *before* reading anything.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from stock_lstm.errors import ArtifactError
from stock_lstm.tickers import ticker_file_stem

ARTIFACT_FORMAT = 1
#: The scaler file of versions saved now (plain numbers) and of older ones (a joblib pickle,
#: converted by ``stock-lstm migrate-artifacts``, never loaded).
SCALER_SUFFIX = "_scaler.json"
LEGACY_SCALER_SUFFIX = "_scaler.joblib"
_HASH_CHUNK = 1 << 20
#: Suffix of files being written; they never carry a final name, so nothing loads them.
TEMP_SUFFIX = ".tmp"
#: A temporary file this old (seconds) belongs to a save that died; another process's save in
#: progress takes well under a second, so an hour leaves it alone.
STALE_TEMP_SECONDS = 3600.0


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


def _reservation(directory: Path, version_id: str) -> Path:
    return directory / f".{version_id}.id{TEMP_SUFFIX}"


def _files_exist(directory: Path, version_id: str) -> bool:
    return any(
        (directory / f"{version_id}{suffix}").exists()
        for suffix in (".pt", SCALER_SUFFIX, LEGACY_SCALER_SUFFIX)
    )


def new_version_id(
    ticker: str,
    directory: Path,
    created_at: datetime,
    *,
    taken: Callable[[str], bool] | None = None,
) -> str:
    """A version id no other process can get: ``{TICKER}_{YYYYmmdd_HHMMSS}``, with ``_2``,
    ``_3``... when that second is taken.

    Two trainings of one ticker finishing in the same second (two CLI runs, or the CLI and the
    API) would otherwise pick the same id, and the loser's clean-up would delete the files the
    winner had registered. The id is reserved by creating ``.{id}.id.tmp`` exclusively (one
    atomic ``O_EXCL`` create: exactly one process wins it); ``save_artifacts`` releases it once
    the files under the id exist, and a reservation left by a dead process goes with the other
    stale temporary files. ``taken`` adds ids known elsewhere (the registry, when several
    machines share a database but not a models folder).
    """
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{ticker_file_stem(ticker)}_{created_at.strftime('%Y%m%d_%H%M%S')}"
    for counter in range(1, 10_000):
        candidate = stem if counter == 1 else f"{stem}_{counter}"
        if _files_exist(directory, candidate) or (taken is not None and taken(candidate)):
            continue
        try:
            os.close(os.open(_reservation(directory, candidate), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        if _files_exist(directory, candidate):  # saved between our check and the create
            _reservation(directory, candidate).unlink(missing_ok=True)
            continue
        return candidate
    raise ArtifactError(f"no free version id for {ticker} at {stem} in {directory}")


def release_version_id(directory: Path, version_id: str) -> None:
    """Drop ``version_id``'s reservation (its files, or their absence, decide from now on)."""
    with contextlib.suppress(OSError):
        _reservation(directory, version_id).unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    """Make renames in ``directory`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(fd)


def _write_atomically(path: Path, write: Callable[[Path], None]) -> str:
    """Write via ``write(tmp_path)``, fsync, rename onto ``path``, fsync the folder; return the
    file's sha256 (of the bytes that were fsynced, before the rename)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
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
    _fsync_directory(path.parent)
    return digest


def remove_stale_temp_files(
    directory: Path, *, older_than: float = STALE_TEMP_SECONDS, now: float | None = None
) -> list[Path]:
    """Delete temporary files that saves killed mid-write left in ``directory``.

    Only our own pattern (``.<name>.<random>.tmp``) older than ``older_than`` seconds is
    removed, so another process's save in progress is never touched. Returns what was removed.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    for path in directory.glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if path.is_file() and now - path.stat().st_mtime > older_than:
                path.unlink()
                removed.append(path)
    return removed


def ensure_writable_directory(directory: Path) -> None:
    """Create ``directory`` if needed and prove a file can be written in it, or raise
    ``ArtifactError`` naming it: called before training, so a read-only models folder fails
    in a second instead of after an hour of training."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=directory, prefix=".write-check.", suffix=TEMP_SUFFIX
        ) as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as exc:
        raise ArtifactError(_unwritable_message(directory, exc)) from exc


def _unwritable_message(directory: Path, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        remedy = "free some space on that disk or set STOCK_LSTM_MODELS_DIR to another one"
    else:
        remedy = "make the folder writable or set STOCK_LSTM_MODELS_DIR"
    return f"cannot write model files to {directory}: {exc.strerror or exc}; {remedy}"


def save_artifacts(
    *,
    directory: Path,
    version_id: str,
    model_config: dict[str, Any],
    state_dict: dict[str, Any],
    scaler: Any,
    metadata: dict[str, Any] | None = None,
    network: str = "lstm",
) -> SavedArtifacts:
    """Save ``{version_id}.pt`` (config + weights, loadable with ``weights_only=True``) and
    ``{version_id}_scaler.json`` (the encoder's numbers, see ``encoding.encoder_state``), then
    release the id's reservation. Raises ``ArtifactError`` if the folder is not writable."""
    import torch

    from stock_lstm.data.encoding import encoder_state

    model_path = directory / f"{version_id}.pt"
    scaler_path = directory / f"{version_id}{SCALER_SUFFIX}"
    scaler_bytes = json.dumps(encoder_state(scaler), indent=1).encode()
    payload = {
        "format": ARTIFACT_FORMAT,
        "network": str(network),
        # Plain JSON values (a Ticker is a str subclass): weights_only loading refuses any
        # class it does not know, and these must load in every later version.
        "config": json.loads(json.dumps(dict(model_config))),
        "metadata": json.loads(json.dumps(dict(metadata or {}))),
        "state_dict": state_dict,
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(directory)
        model_bytes = io.BytesIO()
        # Serialized in memory first: torch's own file writer reports a full disk as a bare
        # RuntimeError ("unexpected pos ..."); a plain write raises OSError(ENOSPC) instead.
        torch.save(payload, model_bytes)
        model_sha = _write_atomically(
            model_path, lambda tmp: tmp.write_bytes(model_bytes.getbuffer())
        )
        scaler_sha = _write_atomically(scaler_path, lambda tmp: tmp.write_bytes(scaler_bytes))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            model_path.unlink(missing_ok=True)  # no half pair: a model without its scaler
        if isinstance(exc, OSError):
            raise ArtifactError(_unwritable_message(directory, exc)) from exc
        raise
    finally:
        release_version_id(directory, version_id)
    return SavedArtifacts(version_id, model_path, scaler_path, model_sha, scaler_sha)


def _checked_path(
    path: Path, models_dir: Path, version_id: str, kind: str, suffixes: tuple[str, ...]
) -> Path:
    """``path`` resolved, if it is this version's own file directly inside ``models_dir``.

    The path comes from a registry row, and a row is only as trustworthy as everyone who can
    write the database: a path elsewhere (``/tmp/x``, ``../``, a symlink out) or with another
    version's name is refused before anything is read.
    """
    resolved = Path(path).resolve()
    folder = Path(models_dir).resolve()
    names = {f"{version_id}{suffix}" for suffix in suffixes}
    if resolved.parent != folder or resolved.name not in names:
        raise ArtifactError(
            f"{kind} file of version {version_id} is recorded outside the models folder or "
            f"under another name; refusing to load it (expected {' or '.join(sorted(names))} "
            f"in {folder}): retrain the ticker or activate another version"
        )
    return resolved


def _verify(path: Path, expected_sha256: str | None, version_id: str, kind: str) -> None:
    hint = f"retrain the ticker or activate another version (version {version_id})"
    if not expected_sha256:
        raise ArtifactError(
            f"{kind} file {path.name} of version {version_id} has no recorded fingerprint; "
            f"refusing to load an unverifiable file: {hint}"
        )
    if not path.is_file():
        raise ArtifactError(f"{kind} file {path} of version {version_id} is missing: {hint}")
    if sha256_file(path) != expected_sha256:
        raise ArtifactError(
            f"{kind} file {path} of version {version_id} does not match the fingerprint "
            f"recorded when it was saved (truncated or replaced); refusing to load it: {hint}"
        )


def load_model_payload(
    path: Path, expected_sha256: str | None, version_id: str, *, models_dir: Path
) -> dict[str, Any]:
    """The verified ``.pt`` payload: ``{"format", "config", "metadata", "state_dict"}``."""
    import torch

    path = _checked_path(path, models_dir, version_id, "model", (".pt",))
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


def load_scaler(
    path: Path, expected_sha256: str | None, version_id: str, *, models_dir: Path
) -> Any:
    """The verified encoder, rebuilt from its JSON numbers. A legacy ``_scaler.joblib`` is a
    pickle, which could run code however it was checked: refused, naming the one command
    that converts it."""
    from stock_lstm.data.encoding import encoder_from_state

    path = _checked_path(
        path, models_dir, version_id, "scaler", (SCALER_SUFFIX, LEGACY_SCALER_SUFFIX)
    )
    if path.name.endswith(LEGACY_SCALER_SUFFIX):
        raise ArtifactError(
            f"the scaler of version {version_id} is a legacy pickle ({path.name}), which is "
            "never loaded: run `stock-lstm migrate-artifacts` once to convert it, or retrain "
            "the ticker"
        )
    _verify(path, expected_sha256, version_id, "scaler")
    try:
        return encoder_from_state(json.loads(path.read_bytes()))
    except Exception as exc:
        raise ArtifactError(
            f"scaler file {path} of version {version_id} is unreadable or not an encoder "
            f"({type(exc).__name__}); retrain the ticker or activate another version"
        ) from exc
