"""Env steps per second of the population env against N single envs, measured in one run.

    python benchmarks/population_throughput.py                       # CPU: N=16, both workloads
    python benchmarks/population_throughput.py --device cuda --n-envs 256 --baseline single

Workloads (the same pre-drawn actions for every contender):

* ``mixed``: a random ladder action for every member at every step (members at different sizes);
* ``fixed``: every member at the same batch size (``--batch-size``, 32 by default).

Contenders, timed in alternation (``--repeats`` rounds, median of each):

* ``population``: :class:`arbiter_env.agents.population_vec_env.PopulationEnv` with N members;
* ``dummy``: SB3's ``DummyVecEnv`` of N ``BatchSizeEnv`` (the CPU baseline of issue 16), or
  ``single``: one ``BatchSizeEnv`` stepping alone, scaled to N·(its steps/s) (the GPU baseline:
  the target there is population ≥ 0.5·N × single).

Episode ends and resets happen inside the timed steps, as they do in training. The population
raises glibc's malloc thresholds (``arbiter_env/vector/allocator.py``; process-wide, so the baseline in
this process runs under the same allocator); ``--no-tune-allocator`` measures without. Targets (issue 16,
2-core CPU, N=16, one thread): population/dummy ≥ 3 on ``mixed`` and ≥ 5 on ``fixed``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from arbiter_env.agents.population_vec_env import PopulationEnv
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.vector import groups as population_group
from arbiter_env.vector.groups import MemberGroup
from arbiter_env.vector.population import Population


def _actions(env: BatchSizeEnv, n_envs: int, steps: int, workload: str, batch_size: int, seed: int):
    rng = np.random.default_rng(seed)
    if workload == "fixed":
        return np.full((steps, n_envs), env.encode(batch_size))
    return rng.integers(0, env.ladder.size, size=(steps, n_envs))


def _time_vec(env, actions: np.ndarray) -> float:
    """Env steps per second of ``len(actions)`` vector steps of ``env`` (already reset)."""
    _sync(env)
    start = time.perf_counter()
    for row in actions:
        env.step(row)
    _sync(env)
    return actions.size / (time.perf_counter() - start)


def _time_single(env: BatchSizeEnv, actions: np.ndarray) -> float:
    """Env steps per second of one env stepping alone (column 0 of ``actions``)."""
    _sync(env)
    start = time.perf_counter()
    for action in actions[:, 0]:
        _, _, terminated, _, _ = env.step(action)
        if terminated:
            env.reset()
    _sync(env)
    return len(actions) / (time.perf_counter() - start)


def _sync(env) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(
    task: str,
    n_envs: int,
    workloads: list[str],
    baseline: str,
    steps: int,
    repeats: int,
    batch_size: int,
    device: str,
    tune_allocator: bool = True,
) -> list[dict]:
    """One row per workload: the population's rate, the baseline's and their ratio."""
    kwargs: dict[str, Any] = {"task_kwargs": {"device": device}, "record_wall_time": False}
    populations = {
        "population": PopulationEnv(task, n_envs, tune_allocator=tune_allocator, **kwargs)
    }
    reference: Any
    if baseline == "dummy":
        reference = DummyVecEnv([lambda: BatchSizeEnv(task, **kwargs) for _ in range(n_envs)])
    else:
        reference = BatchSizeEnv(task, **kwargs)
    probe_env = BatchSizeEnv(task, **kwargs)
    probe_env.reset(seed=0)  # encode() needs a current batch size
    rows = []
    for workload in workloads:
        rates: dict[Any, list[float]] = {name: [] for name in [*populations, baseline]}
        for repeat in range(repeats + 1):  # the first round warms up and is discarded
            actions = _actions(probe_env, n_envs, steps, workload, batch_size, seed=repeat)
            for contender, env in populations.items():
                env.seed(repeat)
                env.reset()
                rate = _time_vec(env, actions)
                if repeat:
                    rates[contender].append(rate)
            if baseline == "dummy":
                reference.seed(repeat)
                reference.reset()
                rate = _time_vec(reference, actions)
            else:
                reference.reset(seed=repeat)
                rate = _time_single(reference, actions) * n_envs
            if repeat:
                rates[baseline].append(rate)
        base = statistics.median(rates[baseline])
        for contender in populations:
            value = statistics.median(rates[contender])
            row = {"task": task, "device": device, "n_envs": n_envs, "workload": workload}
            row |= {"population_steps_per_s": value}
            row |= {"tune_allocator": tune_allocator}
            # For "single": N × one env's rate, so the GPU target is ratio >= 0.5.
            row |= {"baseline": baseline, "baseline_steps_per_s": base, "ratio": value / base}
            rows.append(row)
    return rows


# The population's parts, each timed where it is called: (class, method, label). Nested parts
# (a group's steps inside its training) are timed on their own; "vector step" is the whole.
_PARTS = [
    (PopulationEnv, "step_wait", "vector step"),
    (MemberGroup, "train", "groups: training"),
    (population_group, "mlp_loss_and_grads", "  forward and backward passes"),
    (MemberGroup, "_update", "  SGD updates"),
    (MemberGroup, "_results", "  interval loss, statistics, divergence"),
    (Population, "_validation", "validation pass"),
    (Population, "reset_member", "resets"),
    (BatchSizeEnv, "finish_interval", "members' BatchSizeEnv.finish_interval"),
]


def breakdown(
    task: str, n_envs: int, workload: str, steps: int, batch_size: int, device: str
) -> dict:
    """Share of a vector step's time in each part of the population (one round, timers on)."""
    seconds = dict.fromkeys([label for _, _, label in _PARTS], 0.0)
    originals = [(cls, name, getattr(cls, name)) for cls, name, _ in _PARTS]

    def timed(method, label):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - started

        return wrapper

    kwargs: dict[str, Any] = {"task_kwargs": {"device": device}, "record_wall_time": False}
    env = PopulationEnv(task, n_envs, **kwargs)
    probe_env = BatchSizeEnv(task, **kwargs)
    probe_env.reset(seed=0)
    actions = _actions(probe_env, n_envs, steps, workload, batch_size, seed=0)
    env.seed(0)
    env.reset()
    for row in actions[: steps // 4]:  # warm-up
        env.step(row)
    try:
        for cls, name, label in _PARTS:
            setattr(cls, name, timed(getattr(cls, name), label))
        for row in actions:
            env.step(row)
    finally:
        for cls, name, method in originals:
            setattr(cls, name, method)
    total = seconds["vector step"]
    return {label: value / total for label, value in seconds.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="digits-mlp")
    parser.add_argument("--n-envs", type=int, default=16)
    parser.add_argument("--workloads", nargs="+", default=["mixed", "fixed"])
    parser.add_argument("--baseline", choices=["dummy", "single"], default="dummy")
    parser.add_argument("--steps", type=int, default=40, help="vector steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument(
        "--no-tune-allocator",
        action="store_true",
        help="leave glibc's malloc thresholds alone (the population raises them by default; "
        "the setting is process-wide, so the baseline runs under the same allocator)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also print where a vector step's time goes (one round with timers)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).parent / "results" / "population_throughput.json",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = measure(
        args.task,
        args.n_envs,
        args.workloads,
        args.baseline,
        args.steps,
        args.repeats,
        args.batch_size,
        args.device,
        not args.no_tune_allocator,
    )
    target = (
        {"mixed": 3.0, "fixed": 5.0} if args.baseline == "dummy" else {"mixed": 0.5, "fixed": 0.5}
    )
    print(f"\n{'workload':<8} {'population/s':>13} {args.baseline + '/s':>12} {'ratio':>7}")
    for row in rows:
        goal = target.get(row["workload"])
        print(
            f"{row['workload']:<8} {row['population_steps_per_s']:>13.1f} "
            f"{row['baseline_steps_per_s']:>12.1f} {row['ratio']:>7.2f}"
            + ("" if goal is None else f"  (target >= {goal})")
        )
    if args.breakdown:
        for workload in args.workloads:
            shares = breakdown(
                args.task, args.n_envs, workload, args.steps, args.batch_size, args.device
            )
            rows.append({"workload": workload, "breakdown": shares})
            print(f"\nwhere a vector step's time goes ({workload}):")
            for label, share in shares.items():
                print(f"  {label:<42} {share:6.1%}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
