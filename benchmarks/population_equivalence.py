"""How far the population's members are from single envs, over whole episodes, and why.

    python benchmarks/population_equivalence.py [--episodes 3]

Steps a population and N single envs with the same seeds and random actions through whole
episodes of ``digits-mlp`` (N=8) and of a two-width family (N=6), and prints, for each way of
summing the batched losses, whether every observation and reward is bit-identical to the single
env's and the largest relative difference:

* ``cascade``: :func:`arbiter_env.vector.batched.cascade_sum`, the block order of ATen's ``nll_loss``
  CPU kernel (what the population uses);
* ``torch.sum``: plain ``torch.sum`` over each member's row.

The rewards and the observation's log loss change are differences of float32 losses, so a loss
rounded differently in its last bit moves them by far more than that, relatively.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.tasks.families import TaskFamily
from arbiter_env.vector import batched
from arbiter_env.vector.population import Population

FAMILY = TaskFamily(
    name="equivalence-family",
    base_task="digits-mlp",
    lr_range=(0.02, 0.2),
    momenta=(0.0, 0.9),
    widths=(8, 16),
    epochs=(0.2, 0.3),
    num_instances=12,
    seed=3,
)


def compare(task, n_envs: int, episodes: int, **kwargs) -> tuple[bool, float, int]:
    """``(bit-identical, largest relative difference, values compared)`` over ``episodes``."""
    population = Population(task, n_envs, **kwargs)
    singles = [BatchSizeEnv(task, **kwargs) for _ in range(n_envs)]
    rng = np.random.default_rng(0)
    identical, worst, count = True, 0.0, 0
    for episode in range(episodes):
        pairs = [
            (env.reset(seed=100 * episode + i)[0], population.reset_member(i, 100 * episode + i)[0])
            for i, env in enumerate(singles)
        ]
        done = False
        while not done:
            actions = list(rng.integers(0, singles[0].ladder.size, size=n_envs))
            for env, action, outcome in zip(
                singles, actions, population.step(actions), strict=True
            ):
                single = env.step(action)
                pairs += [(single[0], outcome[0]), (np.array([single[1]]), np.array([outcome[1]]))]
                done = done or single[2]
        for a, b in pairs:
            count += a.size
            if a.tobytes() != b.tobytes():
                identical = False
                scale = np.maximum(np.abs(a.astype(float)), 1e-12)
                worst = max(worst, float(np.max(np.abs(a.astype(float) - b) / scale)))
    return identical, worst, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cascade = batched.cascade_sum
    for name, summed in (("cascade", cascade), ("torch.sum", lambda values: values.sum(1))):
        batched.cascade_sum = summed
        for label, task, n_envs, kwargs in (
            ("digits-mlp N=8", "digits-mlp", 8, {}),
            ("family N=6", FAMILY, 6, {"task_kwargs": {"num_intervals": 4}}),
        ):
            identical, worst, count = compare(task, n_envs, args.episodes, **kwargs)
            print(
                f"{name:<10} {label:<15} bit-identical={identical!s:<5} "
                f"largest relative difference={worst:.3g} ({count} values)"
            )
    batched.cascade_sum = cascade


if __name__ == "__main__":
    main()
