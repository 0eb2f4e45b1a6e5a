"""The Makefile's training-parameter variables (EPOCHS HIDDEN_SIZE ...), read off
``TrainParams``' fields in ``src/stock_lstm/models/params.py``, their one declaration.

Read with ``ast``, not imported: ``make`` runs this with the system python3 before
``make setup`` has installed anything. Only fields declared with a ``ParamSpec``
(``Annotated[...]``) are one value a ``-p NAME VALUE`` can carry.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PARAMS = Path(__file__).resolve().parents[1] / "src" / "stock_lstm" / "models" / "params.py"


def train_parameter_names(source: str) -> list[str]:
    """The names of ``TrainParams``' ``Annotated`` fields, in declaration order."""
    tree = ast.parse(source)
    (model,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainParams"]
    names = []
    for node in model.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        annotation = node.annotation
        if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", "") == (
            "Annotated"
        ):
            names.append(node.target.id)
    return names


def main() -> int:
    print(" ".join(name.upper() for name in train_parameter_names(PARAMS.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
