"""The package's import graph: no module imports, at import time, a module that imports it back.

A cycle works only while every name is looked up late enough, and breaks the day someone moves
an import or a constant; it also means two modules that cannot be understood (or tested) apart.
The graph is read from the source (``ast``): the imports that run when a module is imported,
those at module level and in class bodies, not those inside functions (which run later, on a
call) and not those under ``if TYPE_CHECKING:`` (which never run). Every module is also
imported on its own, in a fresh interpreter, so that an import order that only works after
some other module was loaded first is caught too.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import evarchive

PACKAGE_DIR = Path(evarchive.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


@functools.cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def import_time_statements(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from import_time_statements(node.orelse)
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.ClassDef):
            for block in ("body", "orelse", "finalbody"):
                yield from import_time_statements(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                yield from import_time_statements(handler.body)


def imported_modules(name: str, path: Path) -> set[str]:
    """The package's modules that importing ``name`` imports directly."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in import_time_statements(parsed(path).body):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            base = f"{base}.{node.module}" if node.module and base else (node.module or base)
            # `from . import custody` imports a module; `from .catalogue import one` a name in one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        found |= {t for t in targets if t in MODULES and t != name}
    return found


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run: ``ast.walk`` without the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for other in node.orelse:
                yield other
                yield from runtime_nodes(other)
            continue
        yield from runtime_nodes(node)


def every_import(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports anywhere, inside functions too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in runtime_nodes(parsed(path)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0]
            base = f"{base}.{node.module}" if node.module else base
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return {t for t in found if t in MODULES and t != name}


def cycles(graph: dict[str, set[str]], longest: int = 1000) -> list[list[str]]:
    """Every elementary cycle of at most ``longest`` modules (each reported once, from its least name)."""
    found: set[tuple[str, ...]] = set()

    def walk(start: str, node: str, trail: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                found.add(tuple(trail))
            elif nxt > start and nxt not in trail and len(trail) < longest:
                walk(start, nxt, [*trail, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return [list(c) for c in sorted(found)]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_reads_relative_imports() -> None:
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    assert "evarchive.catalogue" in graph["evarchive.archive"]
    assert "evarchive.cli.app" in graph["evarchive.cli"]
    assert "evarchive.archive" in graph["evarchive.cli.common"]


def test_no_module_imports_itself_back_at_import_time() -> None:
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    assert [" -> ".join([*c, c[0]]) for c in cycles(graph)] == []


# Cycles still broken by an import inside a function: none.
KNOWN_LATE_CYCLES: list[list[str]] = []


def test_imports_inside_functions_hide_no_other_cycle() -> None:
    """An import moved into a function only hides a cycle; the ones left are listed above."""
    graph = {name: every_import(name, path) for name, path in MODULES.items()}
    found = cycles(graph, longest=3)
    assert [c for c in found if c not in KNOWN_LATE_CYCLES] == []


@pytest.mark.slow
def test_every_module_imports_on_its_own() -> None:
    script = ("import importlib, sys\nfailed = []\nfor name in sys.argv[1:]:\n"
              "    for loaded in [m for m in sys.modules if m.startswith('evarchive')]:\n"
              "        del sys.modules[loaded]\n"
              "    try:\n        importlib.import_module(name)\n"
              "    except Exception as exc:\n        failed.append(f'{name}: {exc!r}')\n"
              "print('\\n'.join(failed))\n")
    names = [n for n in MODULES if not n.endswith("__main__")]
    done = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
