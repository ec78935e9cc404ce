"""A finite blow-up is divergence, and diverging never scores better than finishing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.envs.divergence import DivergenceRule
from arbiter_env.tasks import Task


def _play(env: BatchSizeEnv, seed: int, actions) -> tuple[float, dict, int]:
    """Plays one episode; ``actions`` is a fixed batch size or a function returning actions."""
    _, info = env.reset(seed=seed)
    initial, total, steps, terminated = info["val_loss"], 0.0, 0, False
    while not terminated:
        action = actions() if callable(actions) else env.encode(actions)
        _, reward, terminated, _, info = env.step(action)
        total, steps = total + reward, steps + 1
    info["initial_val_loss"] = initial
    return total, info, steps


def test_finite_blow_up_on_digits_terminates_as_diverged_and_scores_like_a_nan() -> None:
    # digits-mlp at a fixed batch size of 8 (lr 0.1, momentum 0.9) blows up to a finite
    # validation loss of 133 with no NaN (benchmarks/divergence_ratios.py).
    env = BatchSizeEnv("digits-mlp", record_wall_time=False)
    total, info, steps = _play(env, 0, 8)
    assert info["diverged"] and steps < env.task.num_intervals
    assert math.isfinite(info["val_loss"]) and info["val_loss"] > 10 * info["initial_val_loss"]
    assert total == pytest.approx(-math.log(10.0) - 10.0)

    off = BatchSizeEnv("digits-mlp", record_wall_time=False, divergence={"loss_ratio": None})
    total_off, info_off, steps_off = _play(off, 0, 8)
    assert not info_off["diverged"] and steps_off == off.task.num_intervals
    assert total_off > total  # the old semantics rewarded this blow-up better than a NaN

    nan = BatchSizeEnv("digits-mlp", record_wall_time=False, task_kwargs={"optimizer": {"lr": 1e6}})
    total_nan, info_nan, _ = _play(nan, 0, 8)
    assert info_nan["diverged"] and math.isnan(info_nan["val_loss"])
    assert total_nan == pytest.approx(total)


@pytest.mark.parametrize(
    "reward",
    [
        {},
        {"cost": "updates", "cost_weight": 2.0, "final_accuracy_weight": 0.5},
        {"divergence_penalty": 0.5},
    ],
    ids=["default", "update-cost-and-accuracy-bonus", "small-penalty"],
)
def test_every_diverged_episode_scores_below_every_finished_one(
    reward: dict, tiny_task: Task
) -> None:
    # lr 2 on the tiny task: random batch sizes diverge in about half of the episodes.
    env = BatchSizeEnv(
        tiny_task.replace(optimizer={"lr": 2.0}),
        record_wall_time=False,
        reward=reward,
        divergence={"loss_ratio": 3.0},
    )
    rng = np.random.default_rng(0)
    diverged, finished = [], []
    for seed in range(24):
        total, info, _ = _play(env, seed, lambda: int(rng.integers(env.action_space.n)))
        (diverged if info["diverged"] else finished).append(total)
    assert len(diverged) >= 4 and len(finished) >= 4
    assert max(diverged) < min(finished)
    # The bound the penalty is built on: log(L_0 / threshold) minus the worst-case cost.
    floor = -math.log(3.0) - env._worst_case_cost()
    assert min(finished) >= floor
    penalty = env.reward_config.divergence_penalty
    np.testing.assert_allclose(diverged, floor - penalty)


def test_absolute_cap_flags_a_finite_loss_above_it(tiny_task: Task) -> None:
    env = BatchSizeEnv(tiny_task, record_wall_time=False, divergence={"max_loss": 0.05})
    total, info, steps = _play(env, 0, 16)
    assert info["diverged"] and steps == 1 and info["val_loss"] > 0.05
    assert total == pytest.approx(math.log(info["initial_val_loss"] / 0.05) - 10.0)


def test_wall_time_cost_keeps_the_flat_penalty(tiny_task: Task) -> None:
    env = BatchSizeEnv(
        tiny_task,
        reward={"cost": "wall_time", "cost_weight": 1.0},
        divergence={"max_loss": 0.05},
    )
    total, info, _ = _play(env, 0, 16)
    assert info["diverged"] and total == -10.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"loss_ratio": 1.0}, "loss_ratio must be finite and > 1"),
        ({"loss_ratio": "10"}, "loss_ratio must be a number"),
        ({"max_loss": -1}, "max_loss must be finite and > 0"),
        ({"max_loss": math.inf}, "max_loss must be finite"),
        ({"ratio": 3}, "unknown key"),
    ],
)
def test_divergence_rule_rejects_bad_settings_naming_the_field(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        DivergenceRule.from_value(fields)
