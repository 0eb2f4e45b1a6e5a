"""Run ``stock-lstm`` (``cli.main``) in a child process for the fault tests, with test hooks.

    python fault_driver.py [--go FILE] [--stop-at POINT --signal FILE] -- CLI ARGUMENTS...

``--go FILE``: import everything heavy first, then wait for FILE to appear, so several
children start their real work at the same moment.

``--stop-at POINT``: when the training's artifact save reaches POINT, write ``--signal`` FILE
and block until killed, so a test can ``kill -9`` at exactly that point:

* ``model-temp``: the model's temporary file is written and fsynced, not yet renamed;
* ``scaler-temp``: the model file is renamed, the scaler's temporary file is written;
* ``before-registry``: both files carry their final names, the registry row is not written.

The hooks monkeypatch this child only; nothing in the package knows about them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

#: A child blocked at a stop point exits on its own after this long if nobody kills it.
BLOCK_SECONDS = 120.0
STOP_POINTS = ("model-temp", "scaler-temp", "before-registry")


def _block_here(signal_file: Path) -> None:
    signal_file.write_text("stopped")
    deadline = time.monotonic() + BLOCK_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit(3)


def _install_stop(point: str, signal_file: Path) -> None:
    import stock_lstm.workflows.register
    from stock_lstm.models import artifacts

    if point == "before-registry":
        original_register = stock_lstm.workflows.register.register_model

        def register_then_block(*args: Any, **kwargs: Any) -> Any:
            _block_here(signal_file)
            return original_register(*args, **kwargs)

        stock_lstm.workflows.register.register_model = register_then_block
        return

    # save_artifacts hashes each temporary file after its fsync and before its rename:
    # the first hash is the model's, the second the scaler's.
    stop_on_call = STOP_POINTS.index(point) + 1
    original_hash = artifacts.sha256_file
    calls = 0

    def hash_then_block(path: Path) -> str:
        nonlocal calls
        calls += 1
        if calls == stop_on_call:
            assert path.name.endswith(artifacts.TEMP_SUFFIX), path
            _block_here(signal_file)
        return original_hash(path)

    artifacts.sha256_file = hash_then_block


def _wait_for(go_file: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not go_file.exists():
        if time.monotonic() > deadline:
            sys.exit(f"fault_driver: {go_file} never appeared")
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--go", type=Path)
    parser.add_argument("--stop-at", choices=STOP_POINTS)
    parser.add_argument("--signal", type=Path)
    parser.add_argument("cli", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cli_args = args.cli[1:] if args.cli[:1] == ["--"] else args.cli

    import torch  # noqa: F401  (the slow imports happen before the start signal)

    import stock_lstm.workflows  # noqa: F401
    from stock_lstm.cli import main as cli_main

    if args.stop_at:
        _install_stop(args.stop_at, args.signal)
    if args.go:
        _wait_for(args.go)
    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
