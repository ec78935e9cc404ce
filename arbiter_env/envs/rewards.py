"""Reward of one scheduling interval.

The default reward is the decrease of the log validation loss over the interval, so the episode's
return telescopes to ``log(L_0 / L_T)``, the log of the total improvement. Options add a
final-accuracy bonus and a cost per interval, so that the trade-off between clean, expensive steps
and noisy, cheap ones can be posed either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from arbiter_env.checks import check_real

MIN_LOSS = 1e-12
"""Losses below this count as this in the log-loss reward (a float32 loss can underflow to 0)."""

RewardCost = Literal["none", "updates", "wall_time"]
REWARD_COSTS = ("none", "updates", "wall_time")


@dataclass(frozen=True)
class RewardConfig:
    """How the environment scores an interval.

    Args:
        divergence_penalty: How much worse than the worst finished episode a diverged one scores
            (see :mod:`arbiter_env.envs.divergence`); with a wall-time cost or no finite divergence
            bound, simply the negative reward of the interval in which the run diverges.
        final_accuracy_weight: Adds ``weight × validation accuracy`` at the end of the episode.
        cost: ``"none"``; ``"updates"``, the interval's inner updates divided by the number of
            updates a batch size of 1 would take over the whole budget (deterministic); or
            ``"wall_time"``, the interval's wall-clock seconds (not reproducible).
        cost_weight: Multiplies the cost before it is subtracted.
    """

    divergence_penalty: float = 10.0
    final_accuracy_weight: float = 0.0
    cost: RewardCost = "none"
    cost_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.cost not in REWARD_COSTS:
            raise ValueError(f"Unknown reward cost {self.cost!r}; choose one of {REWARD_COSTS}.")
        for name in ("divergence_penalty", "final_accuracy_weight", "cost_weight"):
            value = check_real(f"reward.{name}", getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RewardConfig.{name} must be finite and >= 0, got {value}.")


def interval_cost(config: RewardConfig, *, updates: int, budget: int, wall_time: float) -> float:
    """The cost term of one interval (already multiplied by ``cost_weight``)."""
    if config.cost == "updates":
        return config.cost_weight * updates / budget
    if config.cost == "wall_time":
        return config.cost_weight * wall_time
    return 0.0


def worst_case_cost(config: RewardConfig, boundaries: list[int], batch_min: int) -> float:
    """The ``"updates"`` cost of an episode of interval ``boundaries`` at ``batch_min``.

    The largest an episode can pay; 0 for the other costs (wall time has no bound).
    """
    if config.cost != "updates":
        return 0.0
    slices = np.diff(boundaries)
    updates = int(np.sum(-(-slices // batch_min)))
    return interval_cost(config, updates=updates, budget=boundaries[-1], wall_time=0.0)


def interval_reward(
    config: RewardConfig,
    *,
    previous_val_loss: float,
    val_loss: float,
    val_accuracy: float,
    diverged: bool,
    terminal: bool,
    updates: int,
    budget: int,
    wall_time: float,
    divergence_threshold: float = math.inf,
    cost_to_charge_on_divergence: float = 0.0,
) -> float:
    """Reward of one interval under ``config`` (see the module docstring).

    For a diverged interval with a finite ``divergence_threshold`` (and a cost other than wall
    time) the reward is ``log(previous_val_loss) − log(divergence_threshold) −
    cost_to_charge_on_divergence − divergence_penalty``, which makes the episode's return
    ``log(L_0 / threshold) − worst-case cost − penalty``: below that of any finished episode (see
    :mod:`arbiter_env.envs.divergence`). Otherwise a diverged interval is rewarded
    ``−divergence_penalty``.
    """
    if diverged:
        bounded = (
            math.isfinite(divergence_threshold)
            and config.cost != "wall_time"
            and math.isfinite(previous_val_loss)
        )
        if not bounded:
            return -config.divergence_penalty
        return (
            math.log(max(previous_val_loss, MIN_LOSS))
            - math.log(divergence_threshold)
            - cost_to_charge_on_divergence
            - config.divergence_penalty
        )
    # A loss can underflow to exactly 0 in float32 (a perfectly confident, correct network);
    # the floor keeps the log finite, and the same floor on both ends keeps the sum telescoping.
    reward = math.log(max(previous_val_loss, MIN_LOSS)) - math.log(max(val_loss, MIN_LOSS))
    if terminal:
        reward += config.final_accuracy_weight * val_accuracy
    return reward - interval_cost(config, updates=updates, budget=budget, wall_time=wall_time)
