"""Wall-time overhead of Arbiter: an episode with hyper-learning / the same episode without it.

Two comparisons, each measured in one process with interleaved repeats (A B A B ...) so that
machine load affects both sides alike:

* **fixed**: an episode at a fixed batch size (default: the task's starting size) with Arbiter
  running everything it runs in a real episode (warm-up to that size, a meta-step after every
  ``meta_period``-th update, a decision per interval) but with its decisions overridden, divided
  by the same episode without Arbiter. Both train exactly the same inner updates, so the ratio is
  the cost of hyper-learning alone.
* **own schedule**: a real Arbiter episode divided by a replay of the batch sizes it chose,
  without the agent.

A profiled extra episode breaks the extra time down into Arbiter's parts (φ forward and sampling,
response forward, meta backward, Adam step, warm-up, decisions); "hook and other" is the rest.

    python benchmarks/arbiter_overhead.py --task digits-mlp --meta-periods 1 2 4 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from arbiter_env.agents.arbiter import Arbiter, ArbiterConfig
from arbiter_env.controllers import run_episode
from arbiter_env.envs.batch_size import BatchSizeEnv


class FixedSizes:
    """Plays a given list of batch sizes (one per interval), optionally alongside an Arbiter."""

    def __init__(self, env: BatchSizeEnv, sizes: list[int], agent: Arbiter | None = None):
        self.env, self.sizes, self.agent, self.step = env, sizes, agent, 0

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        if episode_start is not None and bool(episode_start[0]):
            self.step = 0
        if self.agent is not None:  # Arbiter does all its work; its decision is ignored
            self.agent.predict(observation, state, episode_start, deterministic)
        size = self.sizes[min(self.step, len(self.sizes) - 1)]
        self.step += 1
        return self.env.encode(size), state


def timed_episode(env: BatchSizeEnv, controller, seed: int):
    """Wall time of one episode, and its record."""
    started = time.perf_counter()
    record = run_episode(env, controller, seed)
    return time.perf_counter() - started, record


def measure(
    env: BatchSizeEnv,
    config: ArbiterConfig,
    batch_size: int,
    repeats: int,
    seed: int,
    own_schedule: bool = True,
    profile: bool = True,
):
    """Interleaved timings; ``own_schedule`` and ``profile`` add the second comparison and the
    profiled breakdown (each costs more episodes)."""
    intervals = env.task.num_intervals
    fixed = [batch_size] * intervals
    # Warm caches (data, allocator) before timing anything.
    run_episode(env, FixedSizes(env, fixed), seed)
    with_agent, without_agent, own, replay, schedule = [], [], [], [], []
    for _ in range(repeats):
        agent = Arbiter(env, config)
        with_agent.append(timed_episode(env, FixedSizes(env, fixed, agent), seed)[0])
        agent.close()
        without_agent.append(timed_episode(env, FixedSizes(env, fixed), seed)[0])
        if own_schedule:
            agent = Arbiter(env, config)
            seconds, record = timed_episode(env, agent, seed)
            own.append(seconds)
            agent.close()
            schedule = record.batch_sizes
            replay.append(timed_episode(env, FixedSizes(env, schedule), seed)[0])
    if not profile:
        return {"with": with_agent, "without": without_agent, "own": own, "replay": replay}
    # Breakdown from one profiled episode at the fixed size.
    agent = Arbiter(env, config)
    agent.profile = True
    profiled = timed_episode(env, FixedSizes(env, fixed, agent), seed)[0]
    agent.close()
    return {
        "with": with_agent,
        "without": without_agent,
        "own": own,
        "replay": replay,
        "timings": dict(agent.timings),
        "meta_steps": agent.meta_steps,
        "profiled": profiled,
        "schedule": schedule,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="digits-mlp")
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="default: task.batch_start")
    parser.add_argument("--meta-periods", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)"
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    task_kwargs = {}
    if args.epochs is not None:
        task_kwargs["epochs"] = args.epochs
    if args.device is not None:
        task_kwargs["device"] = args.device
    if args.batch_size is not None:
        # Arbiter warms up to the size training starts with, as in a real episode.
        task_kwargs["batch_start"] = args.batch_size
    env = BatchSizeEnv(args.task, task_kwargs=task_kwargs, action_encoding="continuous")
    batch_size = env.task.batch_start
    print(
        f"{args.task}: epochs {env.task.epochs}, {env.task.num_intervals} intervals, device "
        f"{env.task.device}, threads {torch.get_num_threads()}, repeats {args.repeats}"
    )
    for period in args.meta_periods:
        config = ArbiterConfig(meta_period=period)
        result = measure(env, config, batch_size, args.repeats, args.seed)
        pair_ratios = [a / b for a, b in zip(result["with"], result["without"], strict=True)]
        own_ratios = [a / b for a, b in zip(result["own"], result["replay"], strict=True)]
        base = statistics.median(result["without"])
        print(f"\nmeta_period {period}")
        print(
            f"  fixed B={batch_size}: without {base:.3f} s, with Arbiter "
            f"{statistics.median(result['with']):.3f} s (medians); ratio median "
            f"{statistics.median(pair_ratios):.3f} (pairs: {', '.join(f'{r:.2f}' for r in pair_ratios)})"
        )
        print(
            f"  own schedule: Arbiter {statistics.median(result['own']):.3f} s / replay "
            f"{statistics.median(result['replay']):.3f} s; ratio median "
            f"{statistics.median(own_ratios):.3f}; last schedule {result['schedule']}"
        )
        extra = result["profiled"] - base
        timings = result["timings"]
        accounted = sum(timings.values())
        print(
            f"  breakdown of the extra {extra:.3f} s over {result['meta_steps']} meta-steps "
            f"(profiled episode {result['profiled']:.3f} s):"
        )
        for name, seconds in sorted(timings.items(), key=lambda item: -item[1]):
            share = seconds / extra if extra > 0 else float("nan")
            per_step = seconds / max(result["meta_steps"], 1) * 1e3
            print(f"    {name:<18} {seconds:7.3f} s  {share:6.1%}  ({per_step:.3f} ms/meta-step)")
        print(f"    {'hook and other':<18} {extra - accounted:7.3f} s")


if __name__ == "__main__":
    main()
