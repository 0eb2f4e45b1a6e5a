"""No two modules of the package import each other, not even inside a function or for type
checking only: a cycle "dodged" by a function-level import is still a cycle (the layers test
only sees the direction of top-level imports)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "stock_lstm"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("stock_lstm", *path.relative_to(PACKAGE).with_suffix("").parts))
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every package module ``path`` imports anywhere (a package's ``__init__`` re-exports
    are left out: importing a sibling through its package is not a cycle of modules)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module in modules:
            candidates = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= {name for name in candidates if name in modules} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
    return {name for name in found if modules[name].name != "__init__.py"}


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        stack.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycles.append([*stack[stack.index(other) :], other])
            elif other not in state:
                visit(other, stack)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    return cycles


def test_no_module_imports_one_that_imports_it() -> None:
    cycles = import_cycles(_modules())
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_check_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from stock_lstm.b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from stock_lstm.a import y\n")
    modules = {"stock_lstm.a": tmp_path / "a.py", "stock_lstm.b": tmp_path / "b.py"}
    assert import_cycles(modules) == [["stock_lstm.a", "stock_lstm.b", "stock_lstm.a"]]
