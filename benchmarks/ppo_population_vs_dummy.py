"""PPO on a task family: DummyVecEnv×N against the population env (N members), end to end.

One command, for each PPO seed:

1. trains PPO (configs/agents/ppo.yaml, the same hyperparameters and timesteps) twice on the
   family's *train* instances: once with ``vec_env=dummy`` (N single ``BatchSizeEnv``) and once
   with ``vec_env=population`` (:mod:`arbiter_env.vector.population`, N inner networks per batched
   step), timing each ``learn`` (rollouts and updates; checkpoint writing included alike);
2. evaluates both final policies on the family's held-out *test* instances (each instance with
   ``--eval-seeds`` seeds, 1000000+i), deterministically, with single envs;
3. runs every fixed size of the ladder on the same episodes: the *median fixed size* is the one
   whose mean final validation loss is the median of the ladder's, the *best fixed* the best in
   hindsight.

The population is bit-identical to single envs on the CPU (``tests/vector/test_population.py``), so
with one seed both PPO runs see the same observations and rewards and learn the same policy:
the script reports whether their final evaluation losses are identical, and the wall-time ratio
is then the whole difference.

Diverged episodes count as +inf in a controller's mean loss (so a controller that diverges never
looks better); the table shows the mean ± standard error over the finite ones and the count of
diverged episodes.

    python benchmarks/ppo_population_vs_dummy.py --timesteps 16384 --n-envs 16 \\
        --json benchmarks/ppo-population-family.json --markdown benchmarks/ppo-population-family.md

Each run also reports the time spent inside the vec env's
``reset``/``step_wait`` (the rest is PPO's own work: policy forward passes, buffer, updates),
and for the population the mean number of batched groups per vector step.
"""

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ppo_vs_fixed import FixedSize, episodes
from stable_baselines3.common.vec_env import DummyVecEnv

from arbiter_env.agents.population_vec_env import PopulationEnv
from arbiter_env.agents.sb3 import load_agent_config, load_rl_controller, train_rl_agent
from arbiter_env.vector.allocator import keep_freed_memory
from arbiter_env.vector.population import Population

ENV_TIME = {"s": 0.0, "steps": 0, "groups": 0}


def _timed(method):
    def wrapper(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            ENV_TIME["s"] += time.perf_counter() - started

    return wrapper


def _counted_groups(method):
    def wrapper(self, indices, plans):
        groups = method(self, indices, plans)
        ENV_TIME["steps"] += 1
        ENV_TIME["groups"] += len(groups)
        return groups

    return wrapper


def instrument() -> None:
    """Times the vec envs' ``reset``/``step_wait`` and counts the population's groups."""
    for cls in (DummyVecEnv, PopulationEnv):
        cls.reset = _timed(cls.reset)  # type: ignore[method-assign]
        cls.step_wait = _timed(cls.step_wait)  # type: ignore[method-assign]
    Population._groups = _counted_groups(Population._groups)  # type: ignore[method-assign]


def summary(losses: list[float]) -> dict:
    """Mean (inf if any diverged), mean ± standard error of the finite ones, diverged count."""
    finite = [x for x in losses if math.isfinite(x)]
    mean_finite = statistics.fmean(finite) if finite else math.nan
    sem = statistics.stdev(finite) / math.sqrt(len(finite)) if len(finite) > 1 else math.nan
    return {
        "mean": math.inf if len(finite) < len(losses) else mean_finite,
        "mean_finite": mean_finite,
        "sem_finite": sem,
        "diverged": len(losses) - len(finite),
        "episodes": len(losses),
        "losses": losses,
    }


def train(task: str, vec_env: str, args, seed: int) -> tuple[Path, float]:
    overrides = [
        f"total_timesteps={args.timesteps}",
        f"n_envs={args.n_envs}",
        f"vec_env={vec_env}",
        f"seed={seed}",
        f"checkpoint_every={10 * args.timesteps}",  # only the final checkpoint
    ]
    config = load_agent_config("ppo", task=task, overrides=overrides)
    ENV_TIME.update(s=0.0, steps=0, groups=0)
    started = time.perf_counter()
    final = train_rl_agent(config, Path(args.out) / f"{vec_env}-seed{seed}")
    return final, time.perf_counter() - started


def fixed_grid(env, cases) -> dict:
    """Every fixed size of the ladder on ``cases``; the median and the best in hindsight."""
    fixed = {
        int(size): summary(episodes(env, lambda e, s=int(size): FixedSize(e, s), cases))
        for size in env.ladder
    }
    means = {size: row["mean"] for size, row in fixed.items()}
    median_mean = statistics.median_low(means.values())
    median_size = next(size for size, mean in means.items() if mean == median_mean)
    best_size = min(means, key=lambda size: means[size])
    return {
        "fixed": fixed,
        "median_fixed": {"batch_size": median_size, "mean": median_mean},
        "best_fixed": {"batch_size": best_size, "mean": means[best_size]},
    }


def ppo_runs(env, cases, args, median: dict) -> list[dict]:
    """PPO trained with each vec env and seed, evaluated on ``cases``."""
    runs = []
    for seed in args.seeds:
        for vec_env in ("dummy", "population"):
            final, wall = train(args.task, vec_env, args, seed)
            timing: dict[str, Any] = {"env_s": ENV_TIME["s"], "ppo_s": wall - ENV_TIME["s"]}
            if vec_env == "population":
                timing["groups_per_step"] = ENV_TIME["groups"] / max(ENV_TIME["steps"], 1)
            losses = episodes(env, lambda e, p=final: load_rl_controller(p, e), cases)
            row = {"seed": seed, "vec_env": vec_env, "wall_s": wall, **timing, **summary(losses)}
            runs.append(row)
            print(
                f"  seed {seed} {vec_env:<10} trained in {wall:6.1f}s: mean final val loss "
                f"{row['mean']:.4f} (median fixed B={median['batch_size']}: {median['mean']:.4f})"
            )
    for seed in args.seeds:
        dummy, population = (r for r in runs if r["seed"] == seed)
        population["wall_ratio"] = population["wall_s"] / dummy["wall_s"]
        population["same_losses_as_dummy"] = population["losses"] == dummy["losses"]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="digits-mlp-family")
    parser.add_argument("--timesteps", type=int, default=16384)
    parser.add_argument("--n-envs", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="PPO seeds")
    parser.add_argument("--eval-seeds", type=int, default=1, help="episodes per test instance")
    parser.add_argument("--instances", type=int, default=None, help="first test instances only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default="runs/ppo_population_vs_dummy")
    results = Path(__file__).parent / "results"
    parser.add_argument("--json", type=Path, default=results / "ppo_population_vs_dummy.json")
    parser.add_argument("--markdown", type=Path, default=results / "ppo_population_vs_dummy.md")
    args = parser.parse_args()
    instrument()
    # The population raises glibc's malloc thresholds for the whole process when it is built;
    # doing it first puts the DummyVecEnv run, which comes first, under the same allocator.
    allocator_tuned = keep_freed_memory()
    torch.set_num_threads(args.threads)
    # The first torch.optim.Adam imports torch._dynamo (seconds): not inside the first timing.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    started = time.perf_counter()
    config = load_agent_config("ppo", task=args.task)
    env = config.env.make("test")
    cases = [
        (1_000_000 + k, instance.index)
        for instance in env.family_instances[: args.instances]
        for k in range(args.eval_seeds)
    ]
    result = fixed_grid(env, cases)
    print(f"{args.task}: {len(cases)} held-out test episodes; fixed grid done")
    runs = ppo_runs(env, cases, args, result["median_fixed"])
    result = {
        "task": args.task,
        "timesteps": args.timesteps,
        "n_envs": args.n_envs,
        "ppo_seeds": args.seeds,
        "eval_cases": cases,
        "threads": args.threads,
        "allocator_tuned": allocator_tuned,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch thread(s)",
        "load_average_at_end": os.getloadavg(),
        **result,
        "runs": runs,
        "total_wall_s": time.perf_counter() - started,
    }
    table = markdown(result)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")


def _cell(row: dict) -> str:
    return f"{row['mean_finite']:.4f} ± {row['sem_finite']:.4f}"


def markdown(result: dict) -> str:
    median, best = result["median_fixed"], result["best_fixed"]
    lines = [
        f"Task {result['task']}, {len(result['eval_cases'])} held-out test episodes "
        f"(test instances × seeds {sorted({s for s, _ in result['eval_cases']})}); PPO "
        f"{result['timesteps']} timesteps, {result['n_envs']} envs, seeds {result['ppo_seeds']}.",
        "",
        "| controller | training wall s | in env s | PPO's own s | population / dummy "
        "| final val loss (mean ± s.e.) | diverged | beats median fixed? |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in result["runs"]:
        ratio = f"{run['wall_ratio']:.2f}" if "wall_ratio" in run else ""
        name = run["vec_env"]
        if "groups_per_step" in run:
            name += f" ({run['groups_per_step']:.1f} groups/step)"
        lines.append(
            f"| PPO, {name}, seed {run['seed']} | {run['wall_s']:.1f} | {run['env_s']:.1f} | "
            f"{run['ppo_s']:.1f} | {ratio} | {_cell(run)} | {run['diverged']} | "
            f"{'yes' if run['mean'] < median['mean'] else 'no'} |"
        )
    for size, row in result["fixed"].items():
        tags = [
            tag
            for tag, chosen in (("median", median), ("best", best))
            if chosen["batch_size"] == size
        ]
        label = f"fixed B={size}" + (f" ({', '.join(tags)})" if tags else "")
        lines.append(f"| {label} | | | | | {_cell(row)} | {row['diverged']} | |")
    identical = [r["same_losses_as_dummy"] for r in result["runs"] if "same_losses_as_dummy" in r]
    lines += [
        "",
        f"Population and dummy runs gave identical evaluation losses: {identical}. "
        f"Total wall time {result['total_wall_s']:.0f} s; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in result['load_average_at_end'])}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
