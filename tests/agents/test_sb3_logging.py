"""Logging stable-baselines3 training to a RunLogger: its logger forwarded, every interval logged."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import yaml
from stable_baselines3.common.logger import Logger

from arbiter_env.agents.sb3_logging import (
    IntervalLoggingCallback,
    WandbKVWriter,
    attach_sb3_logger,
)
from arbiter_env.controllers import BatchSizeController
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.lab.runlog import RunLogger


class Ladder(BatchSizeController):
    """Walks up the ladder, so the schedule is not constant."""

    def choose_batch_size(self, observation: np.ndarray) -> int:
        return int(min(self.batch_env.batch_size * 2, self.batch_env.task.batch_max))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def yaml_config(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def test_sb3_kv_writer_forwards_scalars_and_honours_wandb_exclusion(tmp_path):
    with RunLogger(tmp_path, wandb_mode="disabled") as log:
        logger = Logger(str(tmp_path), [WandbKVWriter(log)])
        logger.record("train/loss", np.float32(0.5))
        logger.record("rollout/ep_rew_mean", 1.25)
        logger.record("train/hidden", 3.0, exclude="wandb")
        logger.record("train/note", "text")
        logger.dump(step=42)
    (row,) = read_jsonl(tmp_path / "metrics.jsonl")
    assert row["step"] == 42 and row["train/loss"] == 0.5 and row["rollout/ep_rew_mean"] == 1.25
    assert "train/hidden" not in row and "train/note" not in row


def test_ppo_training_logs_intervals_episodes_and_sb3_metrics(tmp_path, tiny_task):
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    task = tiny_task.replace(epochs=1)
    venv = VecNormalize(DummyVecEnv([lambda: BatchSizeEnv(task)] * 2))
    venv.seed(0)
    model = PPO("MlpPolicy", venv, n_steps=4, batch_size=8, n_epochs=1, seed=0, device="cpu")
    with RunLogger(tmp_path, {"agent": "ppo"}, wandb_mode="disabled") as log:
        attach_sb3_logger(model, log)
        # Two rollouts: SB3 dumps the first update's train/* metrics with the second rollout.
        model.learn(16, callback=IntervalLoggingCallback(log, controller="ppo"))
    intervals = read_jsonl(tmp_path / "intervals.jsonl")
    assert len(intervals) == 16 and {r["env_index"] for r in intervals} == {0, 1}
    episodes = read_jsonl(tmp_path / "episodes.jsonl")
    assert sum(e["complete"] for e in episodes) == 16 // task.num_intervals
    # VecNormalize scales rewards; the log has the environment's own: the log-loss decrease.
    by_episode: dict[int, list[dict]] = {}
    for row in intervals:
        by_episode.setdefault(row["episode"], []).append(row)
    for rows in by_episode.values():
        for before, after in itertools.pairwise(rows):
            expected = math.log(before["val_loss"]) - math.log(after["val_loss"])
            assert math.isclose(after["reward"], expected, rel_tol=1e-5)
    metrics = read_jsonl(tmp_path / "metrics.jsonl")
    assert any("train/policy_gradient_loss" in m for m in metrics)
    assert (tmp_path / "sb3" / "progress.csv").is_file()


def test_intervals_left_open_by_training_are_not_merged_into_the_next_episode(tmp_path, tiny_task):
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = BatchSizeEnv(tiny_task)
    model = PPO("MlpPolicy", DummyVecEnv([lambda: env]), n_steps=6, batch_size=6, n_epochs=1)
    with RunLogger(tmp_path, {"agent": "ppo"}, wandb_mode="disabled") as log:
        # Six steps: one whole episode of four intervals, and two of the next.
        model.learn(6, callback=IntervalLoggingCallback(log, controller="ppo"))
        record = log.run_episode(env, Ladder(env), seed=7, controller_name="eval")
    episodes = read_jsonl(tmp_path / "episodes.jsonl")
    assert [(e["intervals"], e["complete"]) for e in episodes] == [(4, True), (2, False), (4, True)]
    evaluation = episodes[-1]
    assert evaluation["seed"] == 7 and evaluation["batch_sizes"] == record.batch_sizes
    intervals = read_jsonl(tmp_path / "intervals.jsonl")
    assert [r["episode"] for r in intervals] == [0] * 4 + [1] * 2 + [2] * 4


def test_sb3_training_forwards_train_and_rollout_metrics_without_being_asked(tmp_path, tiny_task):
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    # Monitor reports finished episodes, which SB3 turns into rollout/ep_rew_mean.
    venv = DummyVecEnv([lambda: Monitor(BatchSizeEnv(tiny_task))])
    model = PPO("MlpPolicy", venv, n_steps=4, batch_size=4, n_epochs=1, seed=0, device="cpu")
    with RunLogger(tmp_path, {"agent": "ppo"}, wandb_mode="disabled") as log:
        # As the comparison runs it: the callback alone, no attach_sb3_logger.
        model.learn(12, callback=IntervalLoggingCallback(log, controller="ppo"))
    metrics = read_jsonl(tmp_path / "metrics.jsonl")
    assert any("train/value_loss" in m for m in metrics)
    assert any("rollout/ep_rew_mean" in m for m in metrics)
    resolved = yaml_config(tmp_path)["resolved"]
    assert resolved["env"]["task"]["name"] == tiny_task.name
    assert resolved["controller"]["hyperparams"]["n_steps"] == 4
