"""The layout rules DEVELOPERS.md states, checked: short functions, distinct module names."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hrcam"
MAX_FUNCTION_LINES = 100


def test_no_function_in_the_package_is_over_100_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines})")
    assert not long, "break these into named steps: " + ", ".join(long)


def test_no_two_modules_share_a_file_name():
    seen = defaultdict(list)
    for path in PACKAGE.rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py", "base.py"):
            seen[path.name].append(str(path.relative_to(PACKAGE)))
    assert not {name: paths for name, paths in seen.items() if len(paths) > 1}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_from(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``from X import y`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    parts = _module_name(path).split(".")
    if path.name != "__init__.py":
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def test_no_module_uses_a_private_name_of_another_module():
    """A name with a leading underscore is its module's own: others import and call public names
    (the public ones are what a change must keep working)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        ours = {}  # local name -> the hrcam module or object it was imported as
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _imported_from(path, node).startswith("hrcam"):
                source = _imported_from(path, node)
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {alias.name}")
                    ours[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("hrcam"):
                        ours[(alias.asname or alias.name).split(".")[0]] = alias.name
        for node in ast.walk(tree):
            private = (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            )
            if private and isinstance(node.value, ast.Name) and node.value.id in ours:
                found.append(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value.id}.{node.attr}"
                )
    assert not found, "make these public or keep them in their module: " + ", ".join(found)
