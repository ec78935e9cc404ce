"""stable-baselines3 is an optional extra: the core and the heuristic controllers work without it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from arbiter_env.user_code import IMPORTS_ENV_VAR

# Run in a fresh interpreter whose import system refuses stable_baselines3, as if it were not
# installed (this process has it imported already).
_BLOCK_SB3 = textwrap.dedent(
    """
    import importlib.abc
    import sys

    class BlockSB3(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "stable_baselines3" or name.startswith("stable_baselines3."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, BlockSB3())
    """
)


def _run_without_sb3(code: str) -> subprocess.CompletedProcess[str]:
    # `arbiter --import` run in this process (tests/lab/test_cli.py) leaves ARBITER_IMPORTS set for
    # its workers; the child must not import those user modules.
    env = {k: v for k, v in os.environ.items() if k != IMPORTS_ENV_VAR}
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_SB3 + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture(scope="module")
def child_without_sb3() -> subprocess.CompletedProcess[str]:
    """One child run (about 4 s: it imports torch) that every test here reads."""
    return _run_without_sb3(
        """
        import sys
        import gymnasium as gym
        import arbiter_env
        import arbiter_env.lab.runlog
        from arbiter_env.controllers import list_controllers, make_controller
        from arbiter_env.controllers import run_episode

        env = gym.make("arbiter_env/BatchSize-v0", task="digits-mlp", num_intervals=2)
        controller = make_controller("fixed", env, batch_size=32)
        record = run_episode(env, controller, seed=0)
        assert len(record.rewards) == 2, record.rewards
        assert set(record.batch_sizes) == {32}, record.batch_sizes
        assert "ppo" in list_controllers()  # listed without importing stable-baselines3
        assert "stable_baselines3" not in sys.modules
        print("episode ok")
        try:
            make_controller("ppo", env)
        except ImportError as error:
            print("RL ERROR:", error)
        try:
            import arbiter_env.agents.sb3
        except ModuleNotFoundError as error:
            print("SB3 PACKAGE ERROR:", error.name, error)
        """
    )


def test_core_and_a_heuristic_episode_work_without_stable_baselines3(child_without_sb3):
    assert child_without_sb3.returncode == 0, child_without_sb3.stderr
    assert "episode ok" in child_without_sb3.stdout


def test_an_rl_controller_without_stable_baselines3_names_the_extra_to_install(child_without_sb3):
    assert child_without_sb3.returncode == 0, child_without_sb3.stderr
    assert "RL ERROR:" in child_without_sb3.stdout
    assert "pip install 'arbiter-env[rl]'" in child_without_sb3.stdout


def test_the_rl_agents_package_without_stable_baselines3_names_the_extra(child_without_sb3):
    lines = child_without_sb3.stdout.splitlines()
    line = next((text for text in lines if text.startswith("SB3 PACKAGE ERROR:")), "")
    assert "stable_baselines3" in line and "pip install 'arbiter-env[rl]'" in line, (
        child_without_sb3.stdout + child_without_sb3.stderr
    )


def test_the_blocker_really_blocks_stable_baselines3():
    # Guards the tests above: without this, a broken blocker would let them pass vacuously.
    result = _run_without_sb3("import stable_baselines3")
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr


def test_the_registrys_rl_names_are_the_sb3_algorithm_table():
    pytest.importorskip("stable_baselines3")
    from arbiter_env.agents import RL_ALGORITHMS
    from arbiter_env.agents.sb3 import ALGORITHMS

    assert set(RL_ALGORITHMS) == set(ALGORITHMS)
