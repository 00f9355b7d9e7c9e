"""Per-chapter dependencies for make: which cpd_core files each notebook imports, directly or not.

    python scripts/notebook_deps.py notebooks/*.py > build/deps.mk

Reads every ``import``/``from ... import`` of ``cpd_core`` (at any depth: imports inside functions
count) in a notebook, then in the modules it reaches, and writes one make rule per notebook:
``build/notebooks/NAME.ipynb: <the cpd_core files it depends on>``. A change to a module re-executes
only the chapters that import it; a package's ``__init__.py`` counts as imported with any of its
modules (Python runs it). Files that are not Python (data shipped in cpd_core/) count for every chapter.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path("cpd_core")


def module_file(name: str) -> Path | None:
    """The file of a dotted cpd_core module name (a module or a package's __init__.py)."""
    parts = name.split(".")
    if parts[0] != PACKAGE.name:
        return None
    base = Path(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(path: Path) -> set[Path]:
    """cpd_core files imported anywhere in ``path``, with the __init__.py of every package on the way."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                sys.exit(f"{path}:{node.lineno}: a relative import; cpd_core imports absolutely (from cpd_core.x ...)")
            module = node.module
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}  # `from pkg import module`
    found = set()
    for name in names:
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # every package __init__ on the way runs
            f = module_file(".".join(parts[:k]))
            if f is not None:
                found.add(f)
    return found


def closure(start: Path) -> set[Path]:
    seen, todo = set(), list(imports(start))
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo += imports(f)
    return seen


def main(notebooks: list[str]) -> None:
    data = sorted(str(p) for p in PACKAGE.rglob("*") if p.is_file() and p.suffix != ".py"
                  and "__pycache__" not in p.parts)
    for nb in map(Path, notebooks):
        files = sorted(str(f) for f in closure(nb)) + data
        print(f"build/notebooks/{nb.stem}.ipynb: {' '.join(files)}")


if __name__ == "__main__":
    main(sys.argv[1:])
