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
    assert "unknown variable(s) TICKR (did you mean TICKER?)" in result.stderr
    assert "TICKER" in result.stderr and "EPOCHS" in result.stderr
    assert "stock-lstm run" not in result.stdout


@pytest.mark.parametrize(
    ("target", "hint"),
    [("trian", "did you mean train?"), ("nonsense-target", "no target 'nonsense-target'")],
)
def test_an_unknown_target_is_one_line_with_the_closest_one(target: str, hint: str) -> None:
    result = dry_run(target)
    assert result.returncode == 2 and hint in result.stderr
    assert "`make help` lists them" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_columns_line_up() -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True
    )
    starts = {line.index(line.split()[2]) for line in result.stdout.splitlines() if line.strip()}
    assert len(starts) == 1, result.stdout


def test_a_bad_training_parameter_fails_before_a_kernel_starts(tmp_path: Path) -> None:
    """`make train EPOCHS=-1` started a kernel (13 s) and left a failed run in the index."""
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stock_lstm.cli",
            "run",
            "train",
            "--ticker",
            "AAPL",
            "-p",
            "epochs",
            "-1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "STOCK_LSTM_REPORTS_DIR": str(tmp_path / "reports"),
            "STOCK_LSTM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STOCK_LSTM_SOURCE": f"csv:{tmp_path}",
        },
        check=False,
    )
    assert result.returncode == 2 and "epochs must be between 1 and 1000" in result.stderr
    assert not (tmp_path / "reports").exists()


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
