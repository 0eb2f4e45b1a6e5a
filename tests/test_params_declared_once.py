"""Each training parameter is declared once (``models.params.PARAMETERS``); the CLI's flags,
the API's request fields and notebook 03's parameters all follow it, so they cannot drift."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import pytest

from stock_lstm.api import create_app
from stock_lstm.cli import build_parser
from stock_lstm.models.params import (
    PARAMETERS,
    STRUCTURED_PARAMETERS,
    TrainParams,
    parameter_help,
    parameter_rows,
)
from stock_lstm.workflows import AppContext

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_train.ipynb"


def test_every_train_params_field_is_declared_and_nothing_else() -> None:
    declared = set(PARAMETERS) | set(STRUCTURED_PARAMETERS)
    assert set(TrainParams.model_fields) == declared


def _subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices[name]


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_the_cli_flags_are_made_from_the_declaration(command: str) -> None:
    actions = {a.dest: a for a in _subcommand(command)._actions}
    for name in PARAMETERS:
        if command == "backtest" and name == "horizon":
            continue  # the backtest's own --horizon is the horizon scored
        assert actions[name].help == parameter_help(name), name


def test_the_api_fields_are_made_from_the_declaration(ctx: AppContext) -> None:
    schema = create_app(context=ctx).openapi()["components"]["schemas"]
    properties = schema["TrainingStartRequest"]["properties"]
    for name, spec in PARAMETERS.items():
        assert properties[name]["description"].startswith(spec.help), name


def test_notebook_03_declares_every_parameter_and_passes_it_on() -> None:
    """03's training parameters are generated from TrainParams (``make notebook-params``)
    and passed on whole, so nothing here copies the list."""
    import subprocess
    import sys

    check = subprocess.run(
        [sys.executable, str(NOTEBOOK.parents[1] / "scripts" / "notebook_params.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    (parameters,) = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    declared = {
        node.targets[0].id
        for node in ast.parse("".join(parameters["source"])).body
        if isinstance(node, ast.Assign)
    }
    assert set(PARAMETERS) <= declared
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "params = train_params_from(globals())" in code


def test_a_stale_notebook_03_is_found_and_rewritten(tmp_path: Path) -> None:
    """The check can fail: a notebook whose block lost a parameter is stale until rewritten."""
    import subprocess
    import sys

    stale = tmp_path / "03_train.ipynb"
    notebook = json.loads(NOTEBOOK.read_text())
    for cell in notebook["cells"]:
        cell["source"] = [line for line in cell["source"] if not line.startswith("epochs = ")]
    stale.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    script = str(NOTEBOOK.parents[1] / "scripts" / "notebook_params.py")

    def run(*extra: str) -> int:
        command = [sys.executable, script, "--notebook", str(stale), *extra]
        return subprocess.run(command, capture_output=True, timeout=60).returncode

    assert "epochs = 100" not in stale.read_text()
    assert run("--check") == 1
    assert run() == 0 and run("--check") == 0
    assert stale.read_text() == NOTEBOOK.read_text()


def test_notebook_03_defaults_are_the_declared_defaults() -> None:
    """The parameters cell is what a user edits in JupyterLab: its values must be
    ``TrainParams``' defaults, or ``make train`` and the notebook would train different
    models with the same parameters left unset."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    (parameters,) = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse("".join(parameters["source"])).body
        if isinstance(node, ast.Assign)
    }
    defaults = TrainParams()
    assert {name: values[name] for name in PARAMETERS} == {
        name: getattr(defaults, name) for name in PARAMETERS
    }


def test_the_notebook_table_is_made_from_the_declaration() -> None:
    rows = parameter_rows(TrainParams(epochs=5))
    assert [row["parameter"] for row in rows if row["group"] == "network"] == [
        name for name, spec in PARAMETERS.items() if spec.group == "network"
    ]
    assert {row["parameter"] for row in rows} == set(PARAMETERS)
    epochs = next(row for row in rows if row["parameter"] == "epochs")
    assert (epochs["value"], epochs["default"]) == ("5", "100")
    assert epochs["meaning"] == PARAMETERS["epochs"].help and epochs["accepts"] == "1..1000"


def test_a_network_takes_exactly_the_declared_architecture_options() -> None:
    from stock_lstm.models.networks import NETWORK_CLASSES, network_class

    architecture = {name for name, spec in PARAMETERS.items() if spec.group == "network"}
    options = {name: set(network_class(name).options()) for name in NETWORK_CLASSES}
    for name, declared in options.items():
        # A parameter a network's constructor names is an architecture parameter; the rest
        # of its arguments are its own options (``network_options``).
        assert declared & set(PARAMETERS) <= architecture, name
    assert set().union(*options.values()) == architecture - {"network"}
