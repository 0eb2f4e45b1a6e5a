"""The notebooks are committed clean and keep their parameter contract with the runner.

Also the helpers every notebook's first cell calls (``stock_lstm.pipeline.notebook``).
"""

from __future__ import annotations

import logging
import os
import re
from datetime import date, datetime
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest

from stock_lstm.errors import InvalidParameterError
from stock_lstm.models.params import PARAMETERS as TRAIN_PARAMETERS
from stock_lstm.models.params import TrainParams, python_literal
from stock_lstm.pipeline.notebook import (
    FIGURE_DPI,
    PANDAS_MAX_COLWIDTH,
    find_project_root,
    parse_date,
    setup_notebook,
)

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
KERNELSPEC = {"name": "stock-lstm", "display_name": "Python (stock-lstm)", "language": "python"}
COMMON = {"ticker": '"AAPL"', "source": "None", "start": "None", "end": "None"}
#: Parameter name -> default (as papermill reports it), per notebook: the runner's contract.
PARAMETERS: dict[str, dict[str, str]] = {
    "01_sync": {**COMMON, "force": "False"},
    "02_eda": {**COMMON, "sequence_length": "60", "rolling_window": "21", "max_lag": "20"},
    "03_train": {
        **COMMON,
        # Generated from TrainParams (make notebook-params): each field's default.
        **{name: python_literal(getattr(TrainParams(), name)) for name in TRAIN_PARAMETERS},
        "job_id": "None",
        "report_path": "None",
        "activate": "True",
        "force": "False",
    },
    "04_predict": {**COMMON, "days": "5", "history_days": "120", "trained_version": "None"},
    "05_backtest": {
        **COMMON,
        "horizon": "5",
        "origins": "100",
        "step": "1",
        "refit_every": "None",
        "epochs": "100",
        "sequence_length": "60",
        "target": '"log_return"',
        "strategy": '"direct"',
        "inputs": '"ohlcv"',
        "output": '"student_t"',
        "seed": "42",
        "output_dir": "None",
    },
    "06_universe": {
        "ticker": '"AAPL"',
        "source": "None",
        "universe_dir": "None",
        "until": "None",
        "held_out": "40",
        "epochs": "100",
        "seed": "42",
        "activate": "True",
        "force": "False",
        "job_id": "None",
        "report_path": "None",
    },
}


def read(stem: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS_DIR / f"{stem}.ipynb", as_version=4)


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_exactly_the_pipeline_notebooks() -> None:
    assert sorted(path.stem for path in NOTEBOOKS_DIR.glob("*.ipynb")) == sorted(PARAMETERS)


@pytest.mark.parametrize("stem", sorted(PARAMETERS))
def test_notebook_is_committed_clean(stem: str) -> None:
    notebook = read(stem)
    nbformat.validate(notebook)
    for cell in code_cells(notebook):
        assert cell.outputs == [], f"{stem}: a cell has outputs: clear them before committing"
        assert cell.execution_count is None, f"{stem}: a cell has an execution count"
    assert notebook.metadata.kernelspec == KERNELSPEC


@pytest.mark.parametrize("stem", sorted(PARAMETERS))
def test_notebook_opens_with_a_title_then_one_parameters_cell(stem: str) -> None:
    notebook = read(stem)
    title = notebook.cells[0]
    assert title.cell_type == "markdown" and title.source.startswith("# ")
    how_to = notebook.cells[1]  # how to run it: on top here, last in the report
    assert how_to.cell_type == "markdown" and "how-to" in how_to.metadata.get("tags", [])
    assert f"make {stem.split('_', 1)[1]}" in how_to.source
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert tagged[0] is code_cells(notebook)[0]


@pytest.mark.parametrize("stem", sorted(PARAMETERS))
def test_papermill_sees_the_declared_parameters(stem: str) -> None:
    declared = papermill.inspect_notebook(str(NOTEBOOKS_DIR / f"{stem}.ipynb"))
    assert {name: info["default"] for name, info in declared.items()} == PARAMETERS[stem]


@pytest.mark.parametrize("stem", sorted(PARAMETERS))
def test_check_output_markers_open_their_cell(stem: str) -> None:
    for cell in code_cells(read(stem)):
        if "NBVAL_CHECK_OUTPUT" in cell.source:
            assert cell.source.splitlines()[0] == "# NBVAL_CHECK_OUTPUT"


def test_training_registers_only_in_its_last_code_cell() -> None:
    """The last cell that does work; only the answer (tagged ``summary``: it reads the
    registry, writes nothing, and leads the report) comes after it."""
    cells = [
        cell
        for cell in code_cells(read("03_train"))
        if "summary" not in (cell.metadata.get("tags") or [])
    ]
    calls = [i for i, cell in enumerate(cells) if re.search(r"register_outcome\(", cell.source)]
    assert calls == [len(cells) - 1]
    assert "activate=activate" in cells[-1].source
    assert "report_path=report_path" in cells[-1].source
    assert "job_id=job_id" in cells[-1].source


def test_sanitize_config_pairs_every_regex_with_a_replacement() -> None:
    text = (NOTEBOOKS_DIR / "nbval_sanitize.cfg").read_text(encoding="utf-8")
    pairs = re.findall(r"^regex: (.*)$\n^replace: (.*)$", text, flags=re.MULTILINE)
    assert len(pairs) == text.count("regex: ") >= 5
    for pattern, _ in pairs:
        re.compile(pattern)
    sanitized = "AAPL_20260101_120000 at 2026-01-05T12:00:01.5+00:00 in /tmp/x/models, 0.123456789"
    for pattern, replacement in pairs:
        sanitized = re.sub(pattern, replacement, sanitized)
    assert not re.search(r"\d{4}", sanitized), sanitized


# --- stock_lstm.pipeline.notebook --------------------------------------------------------------


def test_parse_date() -> None:
    assert parse_date(None) is None
    assert parse_date("  ") is None
    assert parse_date("2020-01-31") == date(2020, 1, 31)
    assert parse_date(date(2020, 1, 31)) == date(2020, 1, 31)
    assert parse_date(datetime(2020, 1, 31, 15, 30)) == date(2020, 1, 31)
    with pytest.raises(InvalidParameterError, match="start '31/01/2020' is not a date"):
        parse_date("31/01/2020", name="start")


def make_checkout(root: Path, name: str = "stock-lstm") -> Path:
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n', encoding="utf-8")
    return root


def test_find_project_root_walks_up_to_this_project(tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "checkout")
    deep = root / "notebooks" / "scratch"
    deep.mkdir()
    assert find_project_root(deep) == root.resolve()
    other = make_checkout(tmp_path / "other", name="something-else")
    assert find_project_root(other / "notebooks") is None


def test_setup_notebook_moves_to_the_root_and_reads_the_settings(
    tmp_path: Path, price_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib

    from stock_lstm.config import get_settings

    root = make_checkout(tmp_path / "checkout")
    monkeypatch.chdir(root / "notebooks")
    monkeypatch.setenv("STOCK_LSTM_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("STOCK_LSTM_SOURCE", "csv:elsewhere")
    package_logger = logging.getLogger("stock_lstm")
    level = package_logger.level
    get_settings.cache_clear()
    try:
        with (
            matplotlib.rc_context(),
            pd.option_context("display.max_colwidth", 50, "display.precision", 6),
        ):
            ctx = setup_notebook(f"csv:{price_dir}")
            assert matplotlib.rcParams["figure.dpi"] == FIGURE_DPI
            assert pd.get_option("display.max_colwidth") == PANDAS_MAX_COLWIDTH
        assert Path(os.getcwd()) == root.resolve()
        assert ctx.source.name == f"csv:{price_dir}"  # the parameter beats the setting
        assert package_logger.level == logging.WARNING
        ctx.db.dispose()
    finally:
        get_settings.cache_clear()
        package_logger.setLevel(level)
