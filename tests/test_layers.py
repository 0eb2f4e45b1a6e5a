"""Layers run one way: a module imports only from its own layer or the layers below it.

Why: an import from a lower layer to a higher one (scoring code reaching into the workflows,
the registry into the API) is how cycles and "change one thing, break three" start; issue 11
removed the last two. This reads every module's imports (including the lazy ones inside
functions), so a new one pointing up fails here with the offending line.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "stock_lstm"

#: Bottom to top. A new top-level module or subpackage must be placed here.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(names.split())
    for names in (
        "__init__ errors",
        "tickers clock lru paging source_spec config monitoring",
        "db cluster",
        "data",
        "models",
        "evaluation plots",
        "workflows universal_workflows",
        "pipeline",
        "api",
        "cli",
    )
)


def _layer_of(module: str) -> int:
    """Layer index of ``stock_lstm.<part>...`` (``stock_lstm`` itself is ``__init__``)."""
    parts = module.split(".")
    part = parts[1] if len(parts) > 1 else "__init__"
    for index, names in enumerate(LAYERS):
        if part in names:
            return index
    raise AssertionError(f"{module}: not placed in any layer of tests/test_layers.py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return [(line, name) for line, name in found if name.split(".")[0] == "stock_lstm"]


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        own = _layer_of(module)
        for line, imported in _imports(path):
            if _layer_of(imported) > own:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {imported}")
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: a scoring module importing the workflows is caught."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from stock_lstm.workflows import train_ticker\n")
    (line, imported) = _imports(module)[0]
    assert _layer_of(imported) > _layer_of("stock_lstm.evaluation.bad") and line == 2
