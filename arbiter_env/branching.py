"""Branching an episode: an independent copy of a ``BatchSizeEnv`` at its current point.

A branch answers "what would happen if the next interval were trained at size B?" without
touching the episode being played: the calibration benchmark and the ``oracle-greedy`` reference
train one interval at each ladder size on branches, and compare.

    from arbiter_env.branching import branch_env

    trial = branch_env(env)              # env mid-episode, possibly wrapped
    trial.step(trial.encode(64))         # env itself is untouched

The branch is a deep copy of the unwrapped env: network, optimizer state (momentum buffers),
sampler position and generators, dropout / probe / validation generators, episode history and
divergence state. Stepping it leaves the original bit-identical, and on the CPU a branch stepped
with the same actions gives the same observations and rewards as the original would.

Two things are deliberately *not* copied:

* step hooks on the trainer and info sources on the env (controllers install them: a copy would
  carry a copy of the controller and run it inside the branch); the branch starts with none;
* the task's data splits, which training never writes: the branch shares them, so a branch of a
  large task costs its model and optimizer state, not its data.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

from arbiter_env.env import BatchSizeEnv

__all__ = ["branch_env"]


def branch_env(env: Any) -> BatchSizeEnv:
    """An independent copy of ``env`` (a ``BatchSizeEnv``, possibly wrapped) at its current point.

    Args:
        env: The environment to branch; wrappers are looked through (``env.unwrapped``) and not
            copied.

    Returns:
        A new unwrapped ``BatchSizeEnv`` in the same state, sharing only the read-only data splits.

    Raises:
        TypeError: ``env`` is not (a wrapper of) a ``BatchSizeEnv``.
    """
    base = getattr(env, "unwrapped", env)
    if not isinstance(base, BatchSizeEnv):
        raise TypeError(
            f"branch_env needs a BatchSizeEnv (or a wrapper of one), got {type(env).__name__}; "
            "build the env with gym.make('arbiter_env/BatchSize-v0', ...) or BatchSizeEnv(...)."
        )
    trainer = base.trainer
    # deepcopy's memo maps an object's id to what the copy should use in its place: the data
    # splits stay shared, the hook tables are replaced by empty ones.
    memo: dict[int, Any] = {
        id(trainer.data): trainer.data,
        id(trainer._step_hooks): OrderedDict(),
        id(base._info_sources): OrderedDict(),
    }
    renderer = getattr(base, "_renderer", None)
    if renderer is not None:  # a figure is neither needed nor safely copyable
        memo[id(renderer)] = None
    return copy.deepcopy(base, memo)
