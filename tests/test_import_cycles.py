"""No import circles in ``semi_usb``, imports inside functions included.

A circle closed by an import inside a function still ties the modules together (neither can
be read, tested or moved without the other); it only hides the tie from the interpreter.
The check reads the source (``ast``): an arrow A -> B for every ``import`` / ``from ...
import`` anywhere in A (top level, inside a function, under ``TYPE_CHECKING``) that names a
module of the package, by absolute or relative name; ``from . import x`` points at the
module ``x`` when there is one, else at the package. A circle is a strongly connected
component of two or more modules (Tarjan).
"""
from __future__ import annotations

import ast
import os
import textwrap
from pathlib import Path

import pytest

from conftest import REPO


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def import_graph(root: Path) -> dict:
    """module -> the modules of the package it imports (anywhere in its text)."""
    files = {_module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    edges = {m: set() for m in files}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _base(module, is_package, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for target in targets:
                if target != root.name and not target.startswith(root.name + "."):
                    continue
                while target and target not in files:  # a name inside a module: that module
                    target = target.rpartition(".")[0]
                if target and target != module:
                    edges[module].add(target)
    return edges


def circles(edges: dict) -> list:
    """The strongly connected components of two or more modules, each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def _describe(edges: dict, circle: list) -> str:
    arrows = [f"{a} -> {b}" for a in circle for b in sorted(edges[a]) if b in circle]
    return ", ".join(circle) + ": " + "; ".join(arrows)


def test_semi_usb_has_no_import_circle():
    edges = import_graph(Path(REPO) / "semi_usb")
    assert len(edges) > 50 and edges["semi_usb.runner"]  # the walk did walk
    found = circles(edges)
    assert not found, "import circles:\n" + "\n".join(_describe(edges, c) for c in found)


def test_the_check_sees_a_circle_closed_inside_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from .b import f\n",
        "b.py": "def f():\n    from .sub import c\n    return c\n",
        "sub/__init__.py": "",
        "sub/c.py": "def g():\n    from .. import a\n    return a\n",
        "d.py": "import pkg.a\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(textwrap.dedent(text))
    edges = import_graph(pkg)
    assert circles(edges) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    (pkg / "sub" / "c.py").write_text("def g():\n    return None\n")
    assert circles(import_graph(pkg)) == []


def test_the_check_reads_the_same_package_as_the_shared_tool():
    """Where the session's tool is at hand (not in a CI clone), both count alike."""
    tool = os.path.join(REPO, "..", "shared", "tools", "import-cycles.py")
    if not os.path.isfile(tool):
        pytest.skip(f"no {tool} here (a CI clone): the tests above are the check")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, tool, os.path.join(REPO, "semi_usb")], capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == f"cycles: {len(circles(import_graph(Path(REPO) / 'semi_usb')))}"


def test_the_method_wing_imports_nothing_of_the_tool_wing():
    """``semi_usb/imb_algorithms/`` (the algorithms, their hooks, state and argument types)
    stands on semilearn and torch alone: none of its modules imports a module of the
    package outside it, anywhere in its text."""
    edges = import_graph(Path(REPO) / "semi_usb")
    wing = "semi_usb.imb_algorithms"
    inside = [m for m in edges if m == wing or m.startswith(wing + ".")]
    assert len(inside) >= 10
    outside = {m: sorted(t for t in edges[m] if t != wing and not t.startswith(wing + ".")) for m in inside}
    assert not any(outside.values()), {m: t for m, t in outside.items() if t}
