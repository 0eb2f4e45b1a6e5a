"""The first cell of every notebook: the same working folder, settings and figures as ``make``.

A notebook opened in JupyterLab starts in ``notebooks/``, while papermill and ``make`` run
from the project root; ``setup_notebook`` moves to the root so the relative default paths
(``data/``, ``models/``, ``reports/``) point at the same files either way.
"""

from __future__ import annotations

import html
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stock_lstm.errors import InvalidParameterError

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

    from stock_lstm.models.params import TrainParams
    from stock_lstm.workflows import AppContext

#: ``[project] name`` in the pyproject.toml that marks the project root.
PROJECT_NAME = "stock-lstm"
#: Resolution of inline figures (matplotlib's default of 100 looks soft in HTML reports).
FIGURE_DPI = 110
#: Characters a table cell shows before "..." (pandas' default of 50 cuts artifact paths).
PANDAS_MAX_COLWIDTH = 200
NOTEBOOK_RC: dict[str, object] = {
    "figure.dpi": FIGURE_DPI,
    "figure.figsize": (10.0, 4.5),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": "medium",
    "axes.titleweight": "bold",
    "legend.frameon": False,
    "font.size": 9.5,
}


#: Characters that start Markdown syntax (emphasis, links, code, headings, lists, tables,
#: math, autolinks via ``:``); a backslash makes each one literal (CommonMark, mistune, marked).
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:$<>])")


def escape_markdown(text: object) -> str:
    """``text`` as literal Markdown: shown as written, never interpreted as markup or HTML.

    Why: data reaches reports through ``display(Markdown(...))`` (a price file's column names
    inside a source error, a warning); an ``<img onerror=...>`` column header ran script in the
    rendered report. HTML is escaped to entities (``<`` -> ``&lt;``), Markdown syntax is
    backslash-escaped, and line breaks become spaces so the text stays inside its sentence.
    """
    flat = re.sub(r"\s*[\r\n]+\s*", " ", str(text))
    return _MARKDOWN_SYNTAX.sub(r"\\\1", html.escape(flat, quote=False))


#: An ISO 8601 date and time as ``to_dict``/JSON forms write them.
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)?$")


def readable(value: object) -> str:
    """A value as a table for people shows it: ``yes``/``no`` for booleans, a dash for
    nothing (``None``, ``{}``, ``[]``, ``""``), times to the minute in UTC, paths relative
    to the working folder (the project root in a report) when they are under it, floats
    to four significant digits, whole floats (a volume of ``560518000.0``) as integers,
    lists as their items joined by commas."""
    if value is None or (isinstance(value, dict | list | tuple | str) and not value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if hasattr(value, "to_pydatetime"):  # a pandas Timestamp: a date at midnight, else a time
        stamp = value.to_pydatetime()
        midnight = not (stamp.hour or stamp.minute or stamp.second or stamp.microsecond)
        return stamp.date().isoformat() if midnight and stamp.tzinfo is None else readable(stamp)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M") + (" UTC" if value.tzinfo else "")
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {readable(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(readable(item) for item in value)
    text = str(value)
    if ISO_TIME.match(text):  # a record's JSON form keeps times as ISO strings
        return readable(datetime.fromisoformat(text))
    if text.startswith("/"):
        try:
            return str(Path(text).resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return text
    return text


def for_people(values: dict[str, object]) -> dict[str, str]:
    """:func:`readable` applied to every value of a key/value table."""
    return {key: readable(value) for key, value in values.items()}


#: Column names the package's frames use, as a table header says them (the rest lose
#: their underscores): code keeps names a program can index, people read words.
HEADERS = {
    "n": "forecasts",
    "rmae": "rMAE",
    "model_mae": "model MAE",
    "persistence_mae": "persistence MAE",
    "directional_accuracy": "direction hit rate",
    "dm_p_value": "DM p-value",
    "val_loss": "validation loss",
    "best_val_loss": "best validation loss",
}


def header(name: object) -> str:
    """A column or row name as a person reads it: ``dm_p_value`` -> ``DM p-value``."""
    text = str(name)
    return HEADERS.get(text, text.replace("_", " "))


def _left_aligned(frame: pd.DataFrame) -> Styler:
    return frame.style.set_properties(**{"text-align": "left"}).set_table_styles(
        [{"selector": "th", "props": [("text-align", "left")]}]
    )


def for_reading(frame: pd.DataFrame, *, digits: int = 4) -> Styler:
    """A frame for a report: human headers (:func:`header`), NaN as a dash, text
    left-aligned; float columns holding whole numbers (volumes) as integers with thousands
    separators, other floats to ``digits`` decimals (prices need no sixth decimal);
    booleans, dates and paths as :func:`readable` says them; a plain 0, 1, 2... row index
    hidden (it means nothing to a reader)."""
    import pandas as pd

    shown = frame.rename(columns=header)
    if shown.index.nlevels == 1 and shown.index.dtype == object:  # row names, not dates
        shown = shown.rename(index=header)
    shown.columns.name = header(frame.columns.name) if frame.columns.name else None
    shown.index.names = [header(name) if name else None for name in frame.index.names]
    formats: dict[Any, Any] = {}
    for column in shown.columns:
        values = shown[column]
        if values.dtype.kind == "f":
            finite = values[values.notna()]
            whole = len(finite) > 0 and bool((finite == finite.round()).all())
            big = whole and finite.abs().max() >= 1000
            formats[column] = "{:,.0f}" if big else f"{{:.{digits}f}}"
        elif values.dtype.kind in "bO":
            formats[column] = readable
    styled = _left_aligned(shown).format(na_rep="–").format(formats, na_rep="–")
    for level in range(shown.index.nlevels):  # dates without a 00:00:00, readable labels
        styled = styled.format_index(readable, axis=0, level=level)
    plain = isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
    return styled.hide(axis="index") if plain else styled


def key_values(values: dict[str, object], name: str) -> Styler:
    """A key/value table (one column named ``name``): human keys, :func:`readable` values,
    left-aligned so paths and sentences read from their start."""
    import pandas as pd

    column = pd.Series({header(key): readable(value) for key, value in values.items()}, name=name)
    return _left_aligned(column.to_frame())


def find_project_root(start: Path | None = None) -> Path | None:
    """The closest folder at or above ``start`` (default: cwd) holding this project's
    pyproject.toml, or ``None`` when ``start`` is not inside a checkout."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if not candidate.is_file():
            continue
        try:
            name = tomllib.loads(candidate.read_text(encoding="utf-8"))["project"]["name"]
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
            continue
        if name == PROJECT_NAME:
            return folder
    return None


def configure_matplotlib() -> None:
    """A clean house style and PNG rendering of returned ``Figure`` objects in notebooks.

    ``stock_lstm.plots`` builds figures without pyplot, so the notebook displays them as the
    value of a cell; this registers that PNG display when running inside IPython.
    """
    import matplotlib

    matplotlib.rcParams.update(NOTEBOOK_RC)
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:  # plain Python: nothing to display into
        return
    shell = get_ipython()
    if shell is not None:
        select_figure_formats(shell, {"png"})


def configure_pandas() -> None:
    """Tables that show paths, version ids and reasons in full, and floats to 6 digits."""
    import pandas as pd

    pd.set_option("display.max_colwidth", PANDAS_MAX_COLWIDTH)
    pd.set_option("display.precision", 6)


def show_expected_errors_in_one_line(shell: Any) -> None:
    """In an IPython shell, an expected error (``StockLSTMError``: its message says what to do
    next) shows as one line, like the CLI's; any other exception keeps its full traceback.
    The kernel still reports the error's name and message, so papermill and the runner do."""
    from stock_lstm.errors import StockLSTMError

    def one_line(shell: Any, etype: Any, value: Any, tb: Any, tb_offset: Any = None) -> None:
        mode = shell.InteractiveTB.mode
        shell.InteractiveTB.set_mode("Minimal")
        try:
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        finally:
            shell.InteractiveTB.set_mode(mode)

    shell.set_custom_exc((StockLSTMError,), one_line)


def _install_one_line_errors() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: errors raise as usual
        return
    shell = get_ipython()
    if shell is not None:
        show_expected_errors_in_one_line(shell)


def setup_notebook(source: str | None = None) -> AppContext:
    """Prepare a notebook kernel and return the context every ``workflows`` call takes.

    Moves to the project root when the kernel runs inside a checkout (JupyterLab starts in
    ``notebooks/``), styles figures and tables, keeps library logging to warnings and builds
    the context from the ``STOCK_LSTM_*`` settings; ``source`` (e.g.
    ``"csv:../shared/data/prices"``) overrides the price source, ``None`` keeps
    ``STOCK_LSTM_SOURCE``.
    """
    from stock_lstm.workflows import AppContext

    root = find_project_root()
    if root is not None and root != Path.cwd().resolve():
        os.chdir(root)
    _install_one_line_errors()
    configure_matplotlib()
    configure_pandas()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("stock_lstm").setLevel(logging.WARNING)
    return AppContext.create(source=source or None)


def parse_date(text: str | date | None, *, name: str = "date") -> date | None:
    """A notebook's date parameter (``"2020-01-31"``, ``None`` or ``""``) as a ``date``.

    ``name`` is the parameter's name, used in the error message.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, datetime):
        return text.date()
    if isinstance(text, date):
        return text
    try:
        return date.fromisoformat(str(text).strip())
    except ValueError:
        raise InvalidParameterError(
            f"{name} {text!r} is not a date: pass an ISO date such as '2020-01-31', or None"
        ) from None


def train_params_from(namespace: Mapping[str, Any]) -> TrainParams:
    """The ``TrainParams`` a notebook's parameters cell declares: every training parameter
    it holds (``globals()``), so a parameter added to ``TrainParams`` needs no line here."""
    from stock_lstm.models.params import PARAMETERS, TrainParams

    given = {name: namespace[name] for name in PARAMETERS if name in namespace}
    return TrainParams.from_dict(given)
