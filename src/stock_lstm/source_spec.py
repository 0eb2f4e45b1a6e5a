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
CSV = "csv"
CSV_PREFIX = "csv:"


@dataclass(frozen=True)
class SourceKind:
    """A kind of price source: the class that reads it (``"module:Class"``, imported only
    when one is built) and what follows ``name:`` in its spec (``None``: nothing)."""

    path: str
    argument: str | None = None
    #: What the argument is, for every error about a spec.
    meaning: str = ""


#: Every price source by the name its spec starts with: the one table a new source is added
#: to (its class in ``data/sources.py`` or anywhere, with a ``from_spec`` classmethod).
SOURCE_KINDS: dict[str, SourceKind] = {
    YAHOO: SourceKind("stock_lstm.data.sources:YahooSource"),
    CSV: SourceKind("stock_lstm.data.sources:CsvSource", "DIR", "a folder of <TICKER>.csv files"),
}
#: Kinds whose argument is a folder the cluster's workers must share.
FOLDER_KINDS = (CSV,)


def accepted() -> str:
    """What a source setting accepts, as every error about one says it."""
    forms = []
    for name, kind in SOURCE_KINDS.items():
        form = f"'{name}'" if kind.argument is None else f"'{name}:{kind.argument}'"
        forms.append(f"{form} ({kind.meaning})" if kind.meaning else form)
    return " or ".join(forms)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source: its kind's name and the argument after ``name:`` (``""``: none)."""

    kind: str = YAHOO
    argument: str = ""

    @property
    def folder(self) -> Path | None:
        """The folder of a folder kind (``csv:DIR``), else None."""
        return Path(self.argument) if self.kind in FOLDER_KINDS else None

    @classmethod
    def csv(cls, folder: Path) -> SourceSpec:
        return cls(CSV, str(folder))

    def __str__(self) -> str:
        return f"{self.kind}:{self.argument}" if self.argument else self.kind


def parse_source(spec: object) -> SourceSpec:
    """``spec`` parsed (case-insensitive name, spaces trimmed); ``ValueError`` naming what
    is accepted. A folder is not checked here: that needs the file system."""
    text = spec.strip() if isinstance(spec, str) else ""
    name, _, argument = text.partition(":")
    name, argument = name.strip().lower(), argument.strip()
    kind = SOURCE_KINDS.get(name)
    if kind is not None and bool(argument) == (kind.argument is not None):
        if name in FOLDER_KINDS:
            argument = str(Path(argument).expanduser())
        return SourceSpec(name, argument)
    raise ValueError(f"source {spec!r} is not recognised: use {accepted()}")
