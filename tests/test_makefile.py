"""The Makefile is a user interface too: typos fail loudly, variables reach the commands."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def dry_run(*arguments: str) -> subprocess.CompletedProcess[str]:
    """``make -n``: prints the commands a target would run, runs none of them."""
    return subprocess.run(
        ["make", "-n", "--no-print-directory", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_mistyped_variable_is_an_error_naming_the_known_ones() -> None:
    result = dry_run("train", "TICKR=MSFT", "SOURCE=csv:../shared/data/prices")
    assert result.returncode == 2
    assert "unknown variable(s) TICKR" in result.stderr
    assert "TICKER" in result.stderr and "EPOCHS" in result.stderr
    assert "stock-lstm run" not in result.stdout


def test_known_variables_reach_the_runner() -> None:
    result = dry_run("train", "TICKER=MSFT", "EPOCHS=3", "OUTPUT=point")
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip().splitlines()[-1]
    assert "--ticker MSFT" in command
    assert "-p epochs 3" in command and "-p output point" in command


def test_lab_passes_the_source_and_runs_as_root() -> None:
    result = dry_run("lab", "SOURCE=csv:../shared/data/prices")
    assert result.returncode == 0, result.stderr
    command = result.stdout.replace("\\\n", " ").strip().splitlines()[-1]
    assert command.startswith("STOCK_LSTM_SOURCE=csv:../shared/data/prices ")
    assert ("--allow-root" in command) == (subprocess.check_output(["id", "-u"]).strip() == b"0")
    assert '"conftest.py"' in command and "hide_globs" in command
