"""The price source grammar, in one place: ``yahoo`` or ``csv:DIR``.

Why a module of its own: the settings check it, the source factory builds from it, and the
cluster rewrites its folder; each had its own copy of the parsing, and they disagreed on
case (``CSV:dir`` passed one and failed another). It imports nothing heavy, so the settings
can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

YAHOO = "yahoo"
CSV_PREFIX = "csv:"
#: What a source setting accepts, as every error about one says it.
ACCEPTED = "'yahoo' or 'csv:DIR' (a folder of <TICKER>.csv files)"


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source: Yahoo Finance, or a folder of CSV files (``folder`` set)."""

    folder: Path | None = None

    @property
    def is_csv(self) -> bool:
        return self.folder is not None

    def __str__(self) -> str:
        return f"{CSV_PREFIX}{self.folder}" if self.folder is not None else YAHOO


def parse_source(spec: object) -> SourceSpec:
    """``spec`` parsed (case-insensitive prefix, spaces trimmed); ``ValueError`` naming what
    is accepted. The folder is not checked here: that needs the file system."""
    text = spec.strip() if isinstance(spec, str) else ""
    if text.lower() == YAHOO:
        return SourceSpec()
    if text.lower().startswith(CSV_PREFIX) and text[len(CSV_PREFIX) :].strip():
        return SourceSpec(Path(text[len(CSV_PREFIX) :].strip()).expanduser())
    raise ValueError(f"source {spec!r} is not recognised: use {ACCEPTED}")
