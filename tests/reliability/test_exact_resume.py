"""A PPO run resumed after an interruption makes exactly the gradient updates of an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from arbiter_env.agents.sb3 import load_agent_config, train_rl_agent

TINY = [
    "env.task_kwargs={epochs: 0.5, num_intervals: 4}",
    "n_envs=1",
    "hyperparams.n_steps=8",
    "hyperparams.batch_size=8",
    "hyperparams.n_epochs=2",
    "total_timesteps=40",
    # Not a multiple of the 8-step rollout: the old callback saved in mid-collection.
    "checkpoint_every=12",
]


class _InterruptAt(BaseCallback):
    def __init__(self, timesteps: int):
        super().__init__()
        self.timesteps = timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.timesteps:
            raise KeyboardInterrupt
        return True


def _updates(checkpoint: Path) -> tuple[int, int]:
    model = PPO.load(checkpoint / "model.zip")
    return model.num_timesteps, model._n_updates


def test_ppo_resumed_after_interruption_does_the_same_gradient_updates(tmp_path: Path) -> None:
    config = load_agent_config("ppo", overrides=TINY)
    uninterrupted = train_rl_agent(config, tmp_path / "whole")
    assert _updates(uninterrupted) == (40, 5 * 2)  # 5 rollouts of 8 steps, 2 epochs each

    with pytest.raises(KeyboardInterrupt):
        train_rl_agent(config, tmp_path / "cut", callbacks=[_InterruptAt(30)])
    checkpoints = sorted((tmp_path / "cut" / "checkpoints").iterdir())
    timesteps, updates = _updates(checkpoints[-1])
    assert updates == (timesteps // 8) * 2  # every collected rollout was trained on
    resumed = train_rl_agent(config, tmp_path / "cut", resume_from=checkpoints[-1])
    assert _updates(resumed) == _updates(uninterrupted)
    # Saved only at rollout boundaries: the first one past 12 steps is 16; the next would be
    # due at 16 + 12 = 28, i.e. at 32, after the interruption at 30.
    assert [c.name for c in checkpoints] == ["step_000000016"]


def test_interrupted_train_prints_its_resume_command_and_logs_continue_without_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import collections
    import json
    import shlex

    from arbiter_env.agents.sb3_logging import IntervalLoggingCallback
    from arbiter_env.lab.cli import main

    monkeypatch.chdir(tmp_path)
    original = IntervalLoggingCallback._on_step

    def interrupt_at_30(self) -> bool:
        if self.num_timesteps >= 30:
            raise KeyboardInterrupt
        return original(self)

    run_dir = tmp_path / "run"
    argv = ["train", "--agent", "ppo", "--run-dir", str(run_dir), "--wandb", "disabled"]
    # The CLI takes task fields as -t (a trailing env.KEY=VALUE is an env argument there).
    argv += ["--no-eval", "-t", "epochs=0.5", "-t", "num_intervals=4", *TINY[1:]]
    monkeypatch.setattr(IntervalLoggingCallback, "_on_step", interrupt_at_30)
    assert main(argv) == 130
    error = capsys.readouterr().err
    assert f"The run folder is {run_dir}" in error
    command = shlex.split(error.split("Resume with:")[1].strip().splitlines()[0])
    assert command[:2] == ["arbiter", "train"] and "--resume" in command

    monkeypatch.setattr(IntervalLoggingCallback, "_on_step", original)
    assert main(command[1:]) == 0
    rows = [json.loads(line) for line in (run_dir / "intervals.jsonl").read_text().splitlines()]
    # Every one of the 40 timesteps logged exactly once: nothing duplicated, nothing missing.
    assert collections.Counter(r["timesteps"] for r in rows) == {t: 1 for t in range(1, 41)}
    samples = [r["samples"] for r in rows]
    assert samples == sorted(samples)  # the run's sample axis keeps counting
    episodes = sorted({r["episode"] for r in rows})
    assert episodes == list(range(len(episodes)))  # ids continue, none reused
