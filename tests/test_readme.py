"""The README's complete examples run as written (each in a fresh interpreter)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLE = re.compile(r"<!-- readme-example: ([\w-]+) -->\n```python\n(.*?)```", re.DOTALL)


def examples() -> dict[str, str]:
    return {name: code for name, code in EXAMPLE.findall(README.read_text())}


def test_the_readme_marks_its_runnable_examples() -> None:
    assert set(examples()) == {"custom-task", "custom-controller"}


@pytest.mark.slow  # a fresh interpreter and an episode each: about 5 s of CPU
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # 80 % of 1,000 examples for training (the rest validates), 5 epochs.
        ("custom-task", r"test accuracy [01]\.\d{3} after 4000 samples"),
        ("custom-controller", r"schedule \[16, .*\] test accuracy 0\.\d+"),
    ],
)
def test_a_readme_example_runs_and_prints_what_it_says(name, expected, tmp_path) -> None:
    script = tmp_path / f"{name}.py"
    script.write_text(examples()[name])
    environment = os.environ | {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(expected, result.stdout), result.stdout
