"""The packages are layers (data -> classical, deep -> compare), and stay readable.

The import contracts live in pyproject.toml ([tool.importlinter]); this runs them, proves they
catch a violation, and checks two house rules: no function over 80 lines, and no import of a
project package inside a function (the way a cycle hides from the linter).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "classical", "deep", "compare")
MAX_FUNCTION_LINES = 80


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    script = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def _sources():
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            yield path, ast.parse(path.read_text())


def test_import_contracts_are_kept():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.slow
def test_import_contracts_catch_an_upward_import(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pt"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    io = tmp_path / "data" / "io.py"
    io.write_text(io.read_text() + "\nimport compare.results  # noqa: E402\n")
    deep = tmp_path / "deep" / "config.py"
    deep.write_text(deep.read_text() + "\nimport classical.lomo  # noqa: E402\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "data.io -> compare.results" in result.stdout
    assert "deep.config -> classical.lomo" in result.stdout


def test_no_function_is_longer_than_80_lines():
    long = [
        f"{path.relative_to(REPO)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_no_project_import_inside_a_function():
    hidden = []
    for path, tree in _sources():
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                module = None
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    module = node.module
                elif isinstance(node, ast.Import):
                    module = node.names[0].name
                if module and module.split(".")[0] in PACKAGES:
                    hidden.append(f"{path.relative_to(REPO)}:{node.lineno} imports {module}")
    assert not hidden, hidden
