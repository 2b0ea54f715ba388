"""Where lorakit's code names a quantization backend, and which modules are long (issue 19's counts).

Counted in lorakit/ outside lorakit/formats/ and lorakit/data/, in the code only (identifiers and string
literals; comments and docstrings are prose and do not count):

* bnb names: bitsandbytes' own API names (BitsAndBytesConfig, load_in_4bit, bnb_4bit_*, Linear4bit,
  MatMul8bit*, Params4bit, Int8Params, quant_state, SCB, AdamW8bit, ...), as identifiers or inside strings;
* bnb package: the package name "bitsandbytes" itself (reported, not limited);
* option strings: string literals that are exactly "nf4", "int8" or "bnb_fp4";
* long modules: more than 400 lines.

Usage: python scripts/count_backend_names.py [REPO_ROOT]   (default: this checkout; prints a table)
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

BNB_NAMES = re.compile(
    r"BitsAndBytesConfig|load_in_(4|8)bit|bnb_4bit_\w+|bnb_8bit\w*|llm_int8\w*|Linear4bit|Linear8bitLt|"
    r"MatMul8bit\w*|Params4bit|Int8Params|quant_state|\bSCB\b|(Paged)?AdamW8bit"
)
BNB_PACKAGE = re.compile(r"\bbitsandbytes\b")
OPTION_STRINGS = frozenset({"nf4", "int8", "bnb_fp4"})
EXCLUDED = ("formats", "data")
MAX_LINES = 400


@dataclass
class ModuleCount:
    """What one module's code names."""

    path: str
    lines: int
    bnb_names: set[str] = field(default_factory=set)
    bnb_package: int = 0
    option_strings: set[str] = field(default_factory=set)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def _identifiers(node: ast.AST) -> list[str]:
    names = {ast.Name: "id", ast.Attribute: "attr", ast.keyword: "arg", ast.arg: "arg", ast.FunctionDef: "name",
             ast.AsyncFunctionDef: "name", ast.ClassDef: "name"}
    if isinstance(node, ast.alias):
        return [node.name, node.asname or ""]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [getattr(node, "module", None) or ""]
    attr = names.get(type(node))
    return [getattr(node, attr) or ""] if attr else []


def count_module(path: Path, root: Path) -> ModuleCount:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    docs = _docstrings(tree)
    out = ModuleCount(str(path.relative_to(root)), len(text.splitlines()))
    for node in ast.walk(tree):
        words = _identifiers(node)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            words.append(node.value)
            if node.value in OPTION_STRINGS:
                out.option_strings.add(node.value)
        for word in words:
            out.bnb_names.update(m.group(0) for m in BNB_NAMES.finditer(word))
            out.bnb_package += len(BNB_PACKAGE.findall(word))
    return out


def count(root: Path) -> list[ModuleCount]:
    """One ModuleCount per module of lorakit/ in scope, sorted by path."""
    package = root / "lorakit"
    paths = [p for p in sorted(package.rglob("*.py")) if p.relative_to(package).parts[0] not in EXCLUDED]
    return [count_module(p, root) for p in paths]


def summary(counts: list[ModuleCount]) -> dict[str, list[str]]:
    """The modules behind each count."""
    return {
        "bnb_names": [c.path for c in counts if c.bnb_names],
        "bnb_package": [c.path for c in counts if c.bnb_package],
        "option_strings": [c.path for c in counts if c.option_strings],
        "long_modules": [f"{c.path} ({c.lines})" for c in counts if c.lines > MAX_LINES],
    }


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    counts = count(root)
    for c in counts:
        if c.bnb_names or c.option_strings or c.bnb_package:
            print(f"{c.path:40} bnb names: {', '.join(sorted(c.bnb_names)) or '-':60} "
                  f"'bitsandbytes' x{c.bnb_package}  strings: {', '.join(sorted(c.option_strings)) or '-'}")
    for key, modules in summary(counts).items():
        print(f"{key}: {len(modules)} module(s){': ' + ', '.join(modules) if modules else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
