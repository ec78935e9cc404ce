"""``oracle-greedy``: a reference ceiling that tries every size on copies of the env.

**A reference, not a deployable controller.** At each decision it branches the environment
(:func:`arbiter_env.envs.branching.branch_env`), trains each candidate size for ``horizon`` intervals
on its own copy, and keeps the size whose copy ends with the lowest *validation* loss. No real
training run can do this: it pays ``len(sizes) × horizon`` extra intervals per interval, and it
selects on the validation split, so its validation loss is optimistic (selection bias) and its
*test* metrics are the ones to compare. A copy that diverges scores ``+inf``.

It is greedy: the best size for the next ``horizon`` intervals need not be the best schedule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from arbiter_env.controllers import BatchSizeController
from arbiter_env.envs.branching import measure_responses

__all__ = ["OracleGreedy"]


class OracleGreedy(BatchSizeController):
    """Reference: trains each size on a copy of the env for an interval, keeps the best (not deployable).

    Args:
        env: A ``BatchSizeEnv``, possibly wrapped; any encoding that can express ``sizes``.
        sizes: Candidate batch sizes; default: the env's ladder.
        horizon: Intervals each copy trains at its size before it is scored (≥ 1; fewer when the
            budget ends first).
    """

    def __init__(self, env: Any, sizes: list[int] | None = None, horizon: int = 1):
        super().__init__(env)
        base = env.unwrapped
        self.sizes = [int(b) for b in (sizes if sizes is not None else base.ladder)]
        if not self.sizes or any(b < 1 for b in self.sizes):
            raise ValueError(f"oracle-greedy needs positive batch sizes, got {sizes!r}.")
        if isinstance(horizon, bool) or not (isinstance(horizon, int) and horizon >= 1):
            raise ValueError(
                f"oracle-greedy's horizon must be a positive integer, got {horizon!r}."
            )
        self.horizon = horizon
        self.scores: list[dict[int, float]] = []
        """Per decision: each candidate's change of the validation loss on its copy."""

    def on_episode_start(self, observation: np.ndarray) -> None:
        """Forgets the previous episode's scores."""
        self.scores = []

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """The candidate whose copy reaches the lowest validation loss (ties: the smaller size)."""
        changes = measure_responses(self.env, self.sizes, intervals=self.horizon)
        scores = {size: change[0] for size, change in changes.items()}
        self.scores.append(scores)
        return min(self.sizes, key=lambda b: (scores[b], b))
