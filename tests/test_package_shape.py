"""The package's shape: modules a reader can hold in their head, and each shared fact stated once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lorakit"
SOURCES = {path.relative_to(PACKAGE.parent).as_posix(): path.read_text(encoding="utf-8")
           for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_is_over_400_lines():
    long = {name: text.count("\n") for name, text in SOURCES.items() if text.count("\n") > 400}
    assert long == {}, f"modules over 400 lines: {long}"


def test_gib_and_mib_are_defined_once_in_a_module_without_torch():
    defined = sorted(name for name, text in SOURCES.items()
                     if re.search(r"^_?(GIB|MIB)\s*(:[^=]*)?=", text, re.MULTILINE))
    assert defined == ["lorakit/units.py"]
    assert not re.search(r"^\s*(import|from)\s", SOURCES["lorakit/units.py"].split('"""', 2)[2].replace(
        "from __future__ import annotations", ""), re.MULTILINE)  # imports nothing: everything can import it


def test_one_function_turns_a_figure_into_png():
    savers = sorted(name for name, text in SOURCES.items() if "savefig(" in text)
    assert savers == ["lorakit/viz/png.py"]
    defined = [(name, node.name) for name, text in SOURCES.items() for node in ast.walk(ast.parse(text))
               if isinstance(node, ast.FunctionDef) and "png" in node.name and "figure" in node.name]
    assert defined == [("lorakit/viz/png.py", "figure_to_png")]
