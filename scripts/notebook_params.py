"""Write notebook 03's training-parameter lines from ``TrainParams`` (``make notebook-params``).

The block between the two marker comments of 03's ``parameters`` cell is generated: one
commented assignment per parameter, its default and what it means and accepts, in the
model's order. ``--check`` only says whether the notebook is current (exit 1 if not), which
``tests/test_params_declared_once.py`` runs: a parameter added to ``TrainParams`` is then
one ``make notebook-params`` away from notebook 03, never a hand-kept copy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stock_lstm.models.params import notebook_parameter_lines

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_train.ipynb"
BEGIN = "# --- training parameters (generated from TrainParams: make notebook-params) ---"
END = "# --- end of training parameters ---"


def regenerated(source: str) -> str:
    """``source`` (a cell's text) with its generated block rewritten."""
    head, begin, rest = source.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{NOTEBOOK.name}: the parameters cell has no {BEGIN!r} ... {END!r}")
    return "\n".join([head + BEGIN, *notebook_parameter_lines(), END + tail])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the notebook is stale")
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK)
    args = parser.parse_args(argv)
    notebook = json.loads(args.notebook.read_text(encoding="utf-8"))
    (cell,) = [c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", [])]
    source = "".join(cell["source"])
    fresh = regenerated(source)
    if fresh == source:
        return 0
    if args.check:
        print(f"{args.notebook} is stale: run make notebook-params", file=sys.stderr)
        return 1
    lines = fresh.split("\n")
    cell["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]]
    args.notebook.write_text(
        json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(f"wrote {args.notebook}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
