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

RewardCost = Literal["none", "updates", "wall_time"]
REWARD_COSTS = ("none", "updates", "wall_time")


@dataclass(frozen=True)
class RewardConfig:
    """How the environment scores an interval.

    Args:
        divergence_penalty: Subtracted from the reward of the interval in which the run diverges.
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
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RewardConfig.{name} must be finite and >= 0, got {value}.")


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
) -> float:
    """Reward of one interval under ``config`` (see the module docstring)."""
    if diverged:
        return -config.divergence_penalty
    reward = math.log(previous_val_loss) - math.log(val_loss)
    if terminal:
        reward += config.final_accuracy_weight * val_accuracy
    if config.cost == "updates":
        reward -= config.cost_weight * updates / budget
    elif config.cost == "wall_time":
        reward -= config.cost_weight * wall_time
    return reward
