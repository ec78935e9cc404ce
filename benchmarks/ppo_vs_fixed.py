"""Does PPO learn a batch-size policy that beats the median fixed batch size, and how fast?

For each task, (1) every fixed batch size of the ladder is run on the held-out evaluation
episodes, and the *median fixed size* is the one whose mean final validation loss is the median
of the ladder's; (2) PPO (configs/agents/ppo.yaml) trains for at most ``--minutes`` of wall
time, saving a snapshot every ``--snapshot-every`` env steps; (3) each snapshot is evaluated on
the same held-out episodes, and the first one whose mean final validation loss is below the
median fixed size's gives the wall time PPO needed (or the report says it never did).

Held-out episodes: seeds 1000000+i for a task; for a family, the first ``--instances`` of its
*test* instances (never seen in training), one seed each.

    python benchmarks/ppo_vs_fixed.py --tasks digits-mlp digits-mlp-family --minutes 5
    python benchmarks/ppo_vs_fixed.py --tasks digits-mlp --vec-env population --n-envs 16

``--vec-env population`` trains on :mod:`arbiter_env.vector.population` (tasks and task families).
``benchmarks/ppo_population_vs_dummy.py`` compares the two training envs end to end on a family.
"""

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from arbiter_env.agents.sb3 import (
    load_agent_config,
    load_rl_controller,
    save_checkpoint,
    train_rl_agent,
)
from arbiter_env.envs.batch_size import BatchSizeEnv


class FixedSize:
    def __init__(self, env: BatchSizeEnv, batch_size: int):
        self.env, self.batch_size = env, batch_size

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        return self.env.encode(self.batch_size), state


class Snapshots(BaseCallback):
    """Saves a checkpoint every ``every`` steps and stops training after ``minutes``."""

    def __init__(self, folder: Path, config, every: int, minutes: float):
        super().__init__()
        self.folder, self.config, self.every, self.minutes = folder, config, every, minutes
        self.saved: list[tuple[int, float, Path]] = []
        self._next = every

    def _on_training_start(self) -> None:
        self.started = time.perf_counter()

    def _on_step(self) -> bool:
        elapsed = time.perf_counter() - self.started
        if self.num_timesteps >= self._next:
            self._next += self.every
            path = self.folder / f"step_{self.num_timesteps:07d}"
            save_checkpoint(self.model, path, self.config, self.model.get_vec_normalize_env())
            self.saved.append((self.num_timesteps, elapsed, path))
        return elapsed < self.minutes * 60


def episodes(env: BatchSizeEnv, controller_for, cases) -> list[float]:
    """Final validation loss of each (seed, instance) case; a diverged run counts as +inf."""
    losses = []
    for seed, instance in cases:
        controller = controller_for(env)
        options = None if instance is None else {"family_instance": instance}
        observation, _ = env.reset(seed=seed, options=options)
        state, start, done = None, True, False
        while not done:
            action, state = controller.predict(
                observation, state=state, episode_start=np.array([start]), deterministic=True
            )
            observation, _, terminated, truncated, info = env.step(action)
            start, done = False, terminated or truncated
        losses.append(math.inf if info["diverged"] else float(info["val_loss"]))
    return losses


def evaluate_task(task: str, args) -> dict:
    overrides = ["total_timesteps=500000"]
    if args.vec_env:
        overrides.append(f"vec_env={args.vec_env}")
    if args.n_envs:
        overrides.append(f"n_envs={args.n_envs}")
    config = load_agent_config("ppo", task=task, overrides=overrides)
    is_family = task.endswith("-family")
    env = BatchSizeEnv.from_config(config.env, "test")
    if is_family:
        cases = [(1_000_000 + i, inst.index) for i, inst in enumerate(env.family_instances)]
        cases = cases[: args.instances]
    else:
        cases = [(s, None) for s in config.evaluation.seeds()]
    started = time.perf_counter()
    fixed = {}
    for size in env.ladder:
        losses = episodes(env, lambda e, s=int(size): FixedSize(e, s), cases)
        fixed[int(size)] = float(np.mean(losses))
    fixed_time = time.perf_counter() - started
    median_loss = statistics.median_low(fixed.values())
    median_size = next(size for size, loss in fixed.items() if loss == median_loss)
    best_size = min(fixed, key=lambda size: fixed[size])
    print(f"\n== {task}: {len(cases)} held-out episodes; fixed grid took {fixed_time:.0f}s")
    for size, loss in fixed.items():
        print(f"  fixed B={size:>4}: mean final val loss {loss:.4f}")
    print(f"  median fixed size B={median_size} ({median_loss:.4f}); best B={best_size}")

    run_dir = Path(args.out) / task
    snapshots = Snapshots(run_dir / "snapshots", config, args.snapshot_every, args.minutes)
    train_started = time.perf_counter()
    train_rl_agent(config, run_dir, callbacks=[snapshots])
    train_time = time.perf_counter() - train_started
    print(
        f"  PPO trained {snapshots.num_timesteps} steps in {train_time:.0f}s "
        f"({snapshots.num_timesteps / train_time:.1f} steps/s, n_envs={config.n_envs})"
    )
    beaten_at = None
    for steps, elapsed, path in snapshots.saved:
        losses = episodes(env, lambda e, p=path: load_rl_controller(p, e), cases)
        loss = float(np.mean(losses))
        verdict = "beats" if loss < median_loss else "does not beat"
        print(f"  PPO @ {steps:>6} steps ({elapsed:>5.0f}s): {loss:.4f} {verdict} the median")
        if loss < median_loss and beaten_at is None:
            beaten_at = (steps, elapsed)
    if beaten_at is None:
        print(f"  -> PPO did not beat the median fixed size within {args.minutes} min")
    else:
        print(
            f"  -> PPO beat the median fixed size after {beaten_at[0]} steps, {beaten_at[1]:.0f}s"
        )
    return {"task": task, "beaten_at": beaten_at}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["digits-mlp", "digits-mlp-family"])
    parser.add_argument("--minutes", type=float, default=5.0, help="PPO training budget per task")
    parser.add_argument("--snapshot-every", type=int, default=1024)
    parser.add_argument("--instances", type=int, default=8, help="test instances of a family")
    parser.add_argument("--out", default="runs/ppo_vs_fixed")
    parser.add_argument(
        "--vec-env",
        choices=["dummy", "subproc", "population"],
        default=None,
        help="training envs (default: the PPO config's); population needs a single task",
    )
    parser.add_argument("--n-envs", type=int, default=None, help="training envs (default: config)")
    args = parser.parse_args()
    started = time.perf_counter()
    for task in args.tasks:
        evaluate_task(task, args)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
