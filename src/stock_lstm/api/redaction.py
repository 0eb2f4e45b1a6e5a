"""One rule for what an anonymous client may read: no absolute path of the server.

Who is anonymous is ``guards.may_see_server_details``: with a token, a request without it;
without a token, one that arrived from outside the machine. For them every error text, the
models' parameters and the served reports go through :func:`redact`, which replaces the
server's folders (models, reports, CSV sources, the universe, the working folder, the home
and temporary folders) with a placeholder and every ``csv:/...`` source with
``csv:[folder]``. Known folders rather than a pattern for "a path": the texts also hold API
routes (``POST /api/v1/training/start``) that a client must keep reading.
"""

from __future__ import annotations

import functools
import re
import tempfile
from pathlib import Path
from typing import Any

from stock_lstm.config import Settings
from stock_lstm.errors import ArtifactError, StockLSTMError

_CSV_SOURCE = re.compile(r"csv:(?:/|[A-Za-z]:\\)[^\s'\"<>,;)]*")


def _folders(settings: Settings) -> tuple[tuple[str, str], ...]:
    """(folder, placeholder) pairs, longest folder first.

    Why cached: resolving a folder stats each of its parts, and a page of 100 versions
    redacts every version's parameters; the answer changes only with the settings' folders
    or the working folder, which are the cache's key.
    """
    return _resolved_folders(
        *(str(f) if f else "" for f in (settings.models_dir, settings.reports_dir)),
        str(settings.universe_dir or ""),
        str(Path.cwd()),
    )


@functools.lru_cache(maxsize=16)
def _resolved_folders(
    models: str, reports: str, universe: str, cwd: str
) -> tuple[tuple[str, str], ...]:
    named: list[tuple[Path | str | None, str]] = [
        (models, "[models]"),
        (reports, "[reports]"),
        (universe, "[universe]"),
        (cwd, "[server]"),
        (Path.home(), "[home]"),
        (tempfile.gettempdir(), "[tmp]"),
    ]
    pairs: dict[str, str] = {}
    for folder, label in named:
        if not folder:
            continue
        for form in {str(folder), str(Path(folder).expanduser().resolve())}:
            if form.startswith("/") and form != "/":
                pairs.setdefault(form.rstrip("/"), label)
    # Longest first, so /work/x/models becomes [models], not [server]/models.
    return tuple(sorted(pairs.items(), key=lambda item: len(item[0]), reverse=True))


def redact(text: str, settings: Settings) -> str:
    """``text`` without the server's folders or CSV source paths (see the module doc)."""
    return _redact(text, _folders(settings))


def _redact(text: str, folders: tuple[tuple[str, str], ...]) -> str:
    text = _CSV_SOURCE.sub("csv:[folder]", text)
    for folder, label in folders:
        text = text.replace(folder, label)
    return text


#: What a client that may not see server details reads instead of an artifact error's text
#: (which names the models folder and the files in it).
GENERIC_ARTIFACT_ERROR = (
    "the model files of this version cannot be loaded (the reason is in the server log): "
    "retrain the ticker or activate another version"
)


def client_detail(exc: StockLSTMError, *, show_details: bool, settings: Settings) -> str:
    """The error text of ``exc`` as this client may read it; every route and the batch use
    it, so one request cannot learn what another is refused."""
    if show_details:
        return str(exc)
    if isinstance(exc, ArtifactError):
        return GENERIC_ARTIFACT_ERROR
    return redact(str(exc), settings)


def redact_value(value: Any, settings: Settings) -> Any:
    """:func:`redact` applied to every string inside a JSON-like value.

    The folders are resolved once per value, not per string: resolving them stats every
    path, and a page of 100 versions' parameters spent 130 ms doing it for each string.
    """
    return _redact_value(value, _folders(settings))


def _redact_value(value: Any, folders: tuple[tuple[str, str], ...]) -> Any:
    if isinstance(value, str):
        return _redact(value, folders)
    if isinstance(value, dict):
        return {key: _redact_value(item, folders) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item, folders) for item in value]
    return value


__all__ = ["GENERIC_ARTIFACT_ERROR", "client_detail", "redact", "redact_value"]
