"""Batch-size warm-up by branched measurements of the critical batch size (a reference).

Merrill et al. (2025, arXiv:2505.23971) measure the critical batch size by *branching*: from a
checkpoint, train copies at B and at larger sizes and see how many steps each needs to reach the
same loss. Below the critical batch size, doubling B halves the steps (perfect scaling); beyond
it, the larger batch needs more data. OLMo's batch-size warm-up grows B as the measured critical
batch size grows.

This controller copies the environment (:func:`arbiter_env.envs.branching.branch_env`) before every
interval, as the ``oracle-greedy`` reference does, and selects on the validation loss, so it is a
reference, not a deployable controller: report its test metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from arbiter_env.baselines.common import Baseline, check_batch_size, require
from arbiter_env.envs.branching import branch_env


@dataclass(frozen=True)
class CBSWarmupConfig:
    """Settings of :class:`CBSWarmup`.

    Attributes:
        initial_batch_size: The size of the first interval; ``None`` takes ``task.batch_min``
            (a warm-up starts small).
        tolerance: Doubling is accepted when 2B reaches B's loss within ``(1 + tolerance)``
            times B's samples, i.e. within ``(1 + tolerance)/2`` of B's steps: at most 20% more
            steps than perfect scaling (halving). Default 0.2.
    """

    initial_batch_size: int | None = None
    tolerance: float = 0.2

    def __post_init__(self) -> None:
        check_batch_size("initial_batch_size", self.initial_batch_size)
        require(
            self.tolerance >= 0 and math.isfinite(self.tolerance),
            f"tolerance must be >= 0, got {self.tolerance}.",
        )


def doubling_is_efficient(loss_at_b: float, loss_at_2b: float) -> bool:
    """Whether 2B, trained on ``(1 + tolerance)`` × B's samples, reached B's loss (or lower)."""
    return math.isfinite(loss_at_2b) and loss_at_2b <= loss_at_b


class CBSWarmup(Baseline):
    """Grows B while a branched measurement shows that doubling it costs ≤ 20% more steps.

    Before each interval of ``n`` samples at the current size B (at most ``batch_max / 2``), two
    branches of the env train from the current state: one on ``n`` samples at B, reaching
    validation loss ``L_B``; one on ``round((1 + tolerance)·n)`` samples at 2B, reaching
    ``L_2B``. If ``L_2B ≤ L_B`` (:func:`doubling_is_efficient`), 2B needed at most
    ``(1 + tolerance)·n/(2B)`` steps, within the tolerance of perfect scaling, and B doubles for
    this interval and after. Sizes only grow. Each decision trains about ``2 + tolerance``
    intervals on branches besides the real one.
    """

    Config = CBSWarmupConfig
    config: CBSWarmupConfig

    def on_episode_start(self, observation: np.ndarray) -> None:
        """Starts the warm-up again at the initial size."""
        self._batch_size = self.reachable(self.config.initial_batch_size or self.batch_min)

    def _branch_loss(self, batch_size: int, samples: int) -> float:
        branch = branch_env(self.batch_env)
        result = branch.trainer.train(batch_size, samples)
        if result.diverged:
            return math.nan
        return branch.trainer.evaluate("validation")[0]

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """The current size, doubled when the branched measurement says so."""
        env = self.batch_env
        doubled = self.reachable(2 * self._batch_size)
        if doubled > self._batch_size:
            start = env.trainer.samples_seen
            stop = next(b for b in env.interval_boundaries if b > start)
            samples = stop - start
            loss_at_b = self._branch_loss(self._batch_size, samples)
            loss_at_2b = self._branch_loss(doubled, round((1 + self.config.tolerance) * samples))
            if doubling_is_efficient(loss_at_b, loss_at_2b):
                self._batch_size = doubled
        return self._batch_size
