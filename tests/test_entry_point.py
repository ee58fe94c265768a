"""The one entry-point wrapper (data.cli.entry_point): every command line uses it, and it turns
exactly the documented exception set into ``error: ...`` with exit code 2."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from data.cli import USER_ERRORS, CommandFailed, entry_point
from deep.export import EngineNotInstalled
from deep.train import TrainingDiverged

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "classical", "deep", "compare")


def _modules_with_main() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            tree = ast.parse(path.read_text())
            if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
                found.append(f"{package}.{path.stem}")
    return found


def test_the_command_lines_are_found():
    # Guards the scan below: it must see the command lines we know about.
    assert {"deep.train", "classical.pipeline", "compare.tradeoff", "data.synthetic"} <= set(
        _modules_with_main()
    )


@pytest.mark.parametrize("name", _modules_with_main())
def test_every_main_is_wrapped(name):
    main = importlib.import_module(name).main
    assert getattr(main, "__wrapped__", None) is not None, f"{name}.main lacks @entry_point"
    assert main.__code__ is entry_point(lambda argv: 0).__code__, name


def test_no_command_line_prints_its_own_error_line():
    # The one place that writes ``error: ...`` for a failure found after argument parsing.
    offenders = []
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            if path.name != "cli.py" and 'print(f"error:' in path.read_text():
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value"),
        FileNotFoundError("no such file: x.json"),
        CommandFailed("a sub-command failed"),
        TrainingDiverged("loss is nan"),
        EngineNotInstalled("pip install openvino"),
    ],
)
def test_user_errors_become_one_line_and_exit_2(error, capsys):
    @entry_point
    def main(argv: list[str] | None = None) -> int:
        raise error

    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {error}\n"
    assert captured.out == ""


def test_a_bug_keeps_its_traceback():
    @entry_point
    def main(argv: list[str] | None = None) -> int:
        raise KeyError("a programming error")

    assert not issubclass(KeyError, USER_ERRORS)
    with pytest.raises(KeyError):
        main([])


def test_exit_codes_and_arguments_pass_through():
    @entry_point
    def main(argv: list[str] | None = None) -> int:
        return len(argv or [])

    assert main(["a", "b", "c"]) == 3
    assert main() == 0
