"""`semilearn --help` and `semilearn report` import neither torch nor semilearn (nor
matplotlib, until a figure is drawn).

Two checks: the module-level imports of the command-line modules and the report package,
followed through the package (read from the source, so the check does not depend on
``semi_usb/__init__.py``); and, in a fresh interpreter, ``sys.modules`` after the real
commands ran. The second needs ``import semi_usb`` itself to be light and is skipped, with
the reason, while it is not.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from conftest import REPO

PACKAGE = os.path.join(REPO, "semi_usb")
HEAVY = ("torch", "torchvision", "semilearn", "matplotlib", "numpy", "sklearn", "PIL")
# what `semilearn --help` (cli.build_parser) and `semilearn report` import when they start
LIGHT = ("semi_usb.cli", "semi_usb.compare", "semi_usb.report", "semi_usb.report.runs",
         "semi_usb.report.scores", "semi_usb.report.tables", "semi_usb.report.figures",
         "semi_usb.errors", "semi_usb.naming", "semi_usb.published", "semi_usb.run_folder", "semi_usb.layout")


def _source(module: str) -> str:
    path = os.path.join(REPO, *module.split("."))
    return os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"


def _module_level_imports(module: str) -> set:
    """Absolute names imported at module level (not inside functions) by ``module``."""
    tree = ast.parse(open(_source(module), encoding="utf-8").read())
    package = module if _source(module).endswith("__init__.py") else module.rpartition(".")[0]
    names = set()
    for node in tree.body:  # top-level statements only: imports inside functions are lazy
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            for a in node.names:  # `from . import run_folder` imports a module
                if os.path.exists(_source(f"{base}.{a.name}")):
                    names.add(f"{base}.{a.name}")
    return names


def _closure(start) -> dict:
    """Every module reached by module-level imports from ``start`` -> who imported it."""
    seen, todo = {}, [(m, "(start)") for m in start]
    while todo:
        module, by = todo.pop()
        if module in seen:
            continue
        seen[module] = by
        if module.startswith("semi_usb.") and os.path.exists(_source(module)):
            todo += [(m, module) for m in _module_level_imports(module)]
    return seen


def test_command_line_and_report_modules_import_nothing_heavy():
    reached = _closure(LIGHT)
    heavy = {m: by for m, by in reached.items() if m.split(".")[0] in HEAVY}
    assert not heavy, f"imported at module level: {heavy}"
    assert "semi_usb.report.figures" in reached and "semi_usb.run_folder" in reached  # the walk did walk


def test_the_check_sees_a_heavy_import():
    assert "torch" in _closure(["semi_usb.runner"])


def _package_is_light() -> bool:
    code = "import sys, semi_usb; sys.exit(int('torch' in sys.modules or 'semilearn' in sys.modules))"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


needs_light_package = pytest.mark.skipif(
    not _package_is_light(), reason="semi_usb/__init__.py still imports semilearn (light once plugin.register() exists)")


@needs_light_package
def test_report_and_help_end_to_end_without_torch(tmp_path):
    from conftest import write_run

    run = write_run(tmp_path / "runs", "fixmatch", 0)
    code = ("import sys\nfrom semi_usb.cli import main\n"
            f"assert main(['report', {str(run)!r}, '--out', {str(tmp_path / 'out')!r}, '--no-plots']) == 0\n"
            "heavy = [m for m in ('torch', 'semilearn', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "results.md").is_file()


@needs_light_package
def test_help_answers_without_importing_anything_heavy():
    """``semilearn --help`` is quick because it imports none of torch, semilearn, matplotlib,
    numpy (checked in a fresh interpreter, not by a clock that a loaded machine breaks)."""
    code = ("import sys\nfrom semi_usb.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as stop:\n"
            "    assert stop.code == 0, stop.code\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\nassert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "report" in proc.stdout, proc.stderr[-2000:]
