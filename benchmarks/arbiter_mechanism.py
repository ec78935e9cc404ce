"""What Arbiter's meta-objective responds to: the mechanism, measured from the command line.

    python benchmarks/arbiter_mechanism.py                     # 5 seeds, digits-mlp, a few minutes
    python benchmarks/arbiter_mechanism.py --seeds 0 1 --task mnist1d-cnn

The paper's Arbiter (``arbiter_env.agents.arbiter``) on one task under six conditions, each over
the same seeds, with the per-interval diagnostics every Arbiter run reports in ``info["arbiter"]``:

* ``default``: the paper's response, a per-feature gain ``h = w·s`` from a map initialised
  uniform in ±0.1;
* ``temperature +0.1`` / ``temperature -0.1``: the response reduced to one gain ``c·s`` shared by
  every feature, a pure logit temperature, starting at c₀ = ±0.1 (``response="temperature"``);
* ``frozen map``: the default with the map never updated (null control ``freeze_map``);
* ``zero meta-loss``: the default with the meta-objective multiplied by 0 (null control
  ``meta_loss_scale=0``): only weight decay reaches φ, α and the map;
* ``start 400``: the default starting at B = 400 instead of the task's 128.

For each run: τ₀, the response's temperature component (per unit s) in the first interval (its
sign is the sign of the initial temperature gain), the direction of the schedule (the mean size of
the second half of the episode against the start: up or down by more than 10 %, else flat), the
smallest and largest size, the final validation loss, and the meta-steps per interval at small
and large sizes (intervals are fixed in samples, so a small B gets more meta-steps: positive
feedback). The tables are printed and written to ``--out`` (markdown) beside a JSON of every run.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arbiter_env.agents.arbiter import Arbiter
from arbiter_env.controllers import run_episode
from arbiter_env.envs.batch_size import BatchSizeEnv

HERE = Path(__file__).resolve().parent
CONDITIONS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (Arbiter overrides, task overrides)
    "default": ({}, {}),
    "temperature +0.1": ({"response": "temperature", "temperature_init": 0.1}, {}),
    "temperature -0.1": ({"response": "temperature", "temperature_init": -0.1}, {}),
    "frozen map": ({"freeze_map": True}, {}),
    "zero meta-loss": ({"meta_loss_scale": 0.0}, {}),
    "start 400": ({}, {"batch_start": 400}),
}


def run(task: str, condition: str, seed: int) -> dict[str, Any]:
    agent_kwargs, task_kwargs = CONDITIONS[condition]
    env = BatchSizeEnv(task, task_kwargs=task_kwargs, action_encoding="continuous")
    agent = Arbiter(env, seed=seed, **agent_kwargs)
    record = run_episode(env, agent, seed)
    agent.close()
    sizes = record.batch_sizes
    start = sizes[0]
    late = float(np.mean(sizes[len(sizes) // 2 :]))
    direction = "up" if late > 1.1 * start else "down" if late < start / 1.1 else "flat"
    diagnostics = [info["arbiter"] for info in record.infos]
    return {
        "condition": condition,
        "seed": seed,
        "tau0": diagnostics[0]["temperature"],
        "direction": direction,
        "start": start,
        "late_mean": late,
        "min": min(sizes),
        "max": max(sizes),
        "final_val_loss": record.final_val_loss,
        "diverged": record.diverged,
        "batch_sizes": sizes,
        "meta_steps": [d["meta_steps"] for d in diagnostics],
        "dF_ds": [d["dF_ds"] for d in diagnostics],
        "temperature": [d["temperature"] for d in diagnostics],
    }


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| condition | seed | τ₀ | direction | min B | max B | late mean B | final val loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['condition']} | {r['seed']} | {r['tau0']:+.4f} | {r['direction']} | {r['min']} | "
            f"{r['max']} | {r['late_mean']:.0f} | {r['final_val_loss']:.4f} |"
        )
    lines += [
        "",
        "| condition | up / down / flat | final val loss (mean ± s.e.) |",
        "|---|---|---|",
    ]
    for condition in dict.fromkeys(r["condition"] for r in runs):
        group = [r for r in runs if r["condition"] == condition]
        counts = [sum(r["direction"] == d for r in group) for d in ("up", "down", "flat")]
        losses = np.array([r["final_val_loss"] for r in group])
        se = losses.std(ddof=1) / math.sqrt(len(losses)) if len(losses) > 1 else math.nan
        lines.append(
            f"| {condition} | {' / '.join(map(str, counts))} | {losses.mean():.4f} ± {se:.4f} |"
        )
    default = [r for r in runs if r["condition"] == "default" and r["direction"] != "flat"]
    agree = sum((r["tau0"] > 0) == (r["direction"] == "up") for r in default)
    lines += [
        "",
        f"default runs that moved: sign(τ₀) predicts the direction in {agree} of {len(default)}.",
    ]
    pairs = [
        (b, m)
        for r in runs
        if r["condition"] == "default"
        for b, m in zip(r["batch_sizes"], r["meta_steps"], strict=True)
    ]
    small = [m for b, m in pairs if b <= 16]
    large = [m for b, m in pairs if b >= 128]
    if small and large:
        lines.append(
            f"meta-steps per interval (default runs): {np.mean(small):.1f} at B ≤ 16, "
            f"{np.mean(large):.1f} at B ≥ 128."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="digits-mlp")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS)
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "arbiter_mechanism.md")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny networks: one thread is much faster on a shared machine
    runs = []
    for condition in args.conditions:
        for seed in args.seeds:
            runs.append(run(args.task, condition, seed))
            r = runs[-1]
            print(
                f"{condition:>18} seed {seed}: τ₀ {r['tau0']:+.4f} {r['direction']:>4} {r['batch_sizes']}",
                flush=True,
            )
    text = table(runs)
    print(text)
    command = f"python benchmarks/arbiter_mechanism.py --task {args.task} --seeds {' '.join(map(str, args.seeds))}"
    args.out.write_text(f"<!-- written by: {command} -->\n{text}\n")
    args.out.with_suffix(".json").write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
