"""No two lorakit modules import each other, directly or round a longer loop, lazily or not.

The graph is read from the source with ``ast``, not from ``sys.modules``: every ``import`` and ``from ... import``
statement counts wherever it stands (module level, inside a function, under ``if TYPE_CHECKING``), and so do a
package's lazy exports (the module names in its ``_EXPORTS`` table, or a literal ``importlib.import_module``).
An import inside a function hides a cycle from Python's import machinery; it does not hide it from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lorakit"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The lorakit module that importing ``name`` names: itself, else its longest prefix that is a module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every lorakit module ``name`` imports, by any statement anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    named: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, name, path.name == "__init__.py")
            for alias in node.names:  # `from lorakit.training import loop` names the submodule loop
                sub = f"{source}.{alias.name}"
                named.add(sub if sub in modules else source)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            named.add(node.args[0].value)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in targets):
                named.update(v.value for v in node.value.values
                             if isinstance(v, ast.Constant) and isinstance(v.value, str))
    found = {resolve(n, modules) for n in named if n == "lorakit" or n.startswith("lorakit.")}
    return {m for m in found if m is not None and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_graph_sees_imports_inside_functions_and_lazy_exports():
    graph = import_graph()
    assert len(graph) > 40  # every module of the package
    assert "lorakit.training.config" in graph["lorakit.training.loop"]
    # an import inside a function counts: the panel imports checkpoint_step only when resuming
    assert "lorakit.training.checkpoint" in graph["lorakit.widgets.trainer_panel"]
    # a package's lazy exports count as its imports
    assert "lorakit.widgets.trainer_panel" in graph["lorakit.widgets"]


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
])
def test_find_cycles_finds_loops_of_any_length(graph, expected):
    assert find_cycles(graph) == expected


def test_no_two_lorakit_modules_import_each_other():
    cycles = find_cycles(import_graph())
    assert cycles == [], "modules that import each other (lazily or not): " + "; ".join(
        " <-> ".join(c) for c in cycles)
