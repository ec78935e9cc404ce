"""Every python block of the README runs as written, each in a fresh interpreter.

They run in the default test command: each block is shortened to seconds of CPU (the README says
what the full run takes), so the examples cannot rot unnoticed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


# What each block prints, in README order: the block's own proof that it did its work.
EXPECTED = [
    r"B=64 for one interval: val loss \d\.\d{3}.*\nPPO trained",
    # 80 % of 1,000 examples for training (the rest validates), 5 epochs.
    r"test accuracy [01]\.\d{3} after 4000 samples",
    r"32 episodes, mean return -?\d+\.\d{3}\nobservations \(4, 14\)",
    r"schedule \[16, .*\] test accuracy 0\.\d+",
    r"(cpu|cuda): val accuracy 0\.\d{3} after \d+ samples",
]


def test_every_python_block_has_an_expected_output() -> None:
    assert len(python_blocks()) == len(EXPECTED)


@pytest.mark.parametrize("index", range(len(EXPECTED)))
def test_a_readme_block_runs_as_pasted_in_a_fresh_interpreter(index, tmp_path) -> None:
    script = tmp_path / f"block_{index}.py"
    script.write_text(python_blocks()[index])
    # WANDB_MODE unset on purpose: a block must not need any environment of ours.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=environment | {"OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(EXPECTED[index], result.stdout), result.stdout
