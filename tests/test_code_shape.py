"""The package stays in small pieces: modules under 600 lines, functions under 60.

Long modules and functions were where jobs piled up (the old comparison.py held nine); these
limits make a reviewer split a module when it starts to do a second job.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("arbiter_env", "agents", "baselines")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def _sources() -> list[Path]:
    return sorted(path for folder in PACKAGE_FOLDERS for path in (ROOT / folder).rglob("*.py"))


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", _sources(), ids=_relative)
def test_no_source_module_is_over_600_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_relative(path)} has {lines} lines: split it by job"


def test_no_function_is_over_60_lines() -> None:
    too_long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{_relative(path)}:{node.lineno} {node.name} ({length})")
    assert not too_long, "functions over 60 lines:\n" + "\n".join(too_long)
