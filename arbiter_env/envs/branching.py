"""Branching an episode: an independent copy of a ``BatchSizeEnv`` at its current point.

A branch answers "what would happen if the next interval were trained at size B?" without
touching the episode being played: the calibration benchmark and the ``oracle-greedy`` reference
train one interval at each ladder size on branches, and compare.

    from arbiter_env.envs.branching import branch_env

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
import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from arbiter_env.envs.batch_size import BatchSizeEnv

__all__ = ["branch_env", "measure_responses", "reseed_sampler"]


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
        id(trainer._step_hooks): OrderedDict(),
        id(base._info_sources): OrderedDict(),
    }
    sampler = trainer.sampler
    # Tensors nobody writes in place: the splits (also held by the sampler) and the sampler's
    # current epoch order, which is replaced, never modified, when the next epoch starts.
    for shared in (
        trainer.data,
        *vars(trainer.data).values(),
        sampler._epoch_inputs,
        sampler._epoch_targets,
    ):
        memo[id(shared)] = shared
    renderer = getattr(base, "_renderer", None)
    if renderer is not None:  # a figure is neither needed nor safely copyable
        memo[id(renderer)] = None
    return copy.deepcopy(base, memo)


def reseed_sampler(env: BatchSizeEnv, seed: int) -> None:
    """Gives a branch's batch sampler a new stream from ``seed``, keeping sampling without replacement.

    Repeated branches then see different batches of the same data, as independent training runs
    would from this point (:meth:`~arbiter_env.training.sampler.EpochSampler.reseed`).
    """
    env.trainer.sampler.reseed(seed)


def measure_responses(
    env: Any,
    sizes: Sequence[int],
    sampler_seeds: Sequence[int | None] = (None,),
    intervals: int = 1,
) -> dict[int, list[float]]:
    """The measured change of the validation loss after ``intervals`` intervals at each size.

    Each size is trained on its own branch of ``env`` (untouched), once per sampler seed
    (``None``: the episode's own stream; an integer: :func:`reseed_sampler`). A branch that
    diverges, or whose loss is not finite, measures ``+inf``.

    Returns:
        ``{size: [change per sampler seed]}``, each change = L_val after − L_val now.
    """
    base = getattr(env, "unwrapped", env)
    before = float(base._val_loss)
    out: dict[int, list[float]] = {}
    for size in sizes:
        changes = []
        for seed in sampler_seeds:
            trial = branch_env(base)
            if seed is not None:
                reseed_sampler(trial, seed)
            loss = math.inf
            for _ in range(intervals):
                _, _, terminated, _, info = trial.step(trial.encode(int(size)))
                loss = math.inf if info["diverged"] else float(info["val_loss"])
                if terminated:
                    break
            changes.append(loss - before if math.isfinite(loss) else math.inf)
        out[int(size)] = changes
    return out
