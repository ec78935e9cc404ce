"""Response calibration: arbiter-la's predicted ΔL_val against ΔL_val measured on branches of the env.

    python benchmarks/arbiter_calibration.py                          # 4 dev tasks, dev seeds 100-104
    python benchmarks/arbiter_calibration.py --tasks mnist1d-cnn --seeds 100 --models v2

For each task, seed and model (arbiter-la v1 or v2), a reference schedule is played for k
intervals: by default the model's own decisions (``--reference self``: the model is judged in the
states it really reaches, and v2 calibrates on the sizes it really plays), or the task's starting
size held fixed (``--reference fixed``: the model only watches; it measures and updates as it
would in control). At each probe interval k (default 2, 6, 10, 14), after the model's decision,
the env is branched (:func:`arbiter_env.envs.branching.measure_responses`) and one interval is trained
at every ladder size, once per sampler seed (default 3), and the mean measured ΔL_val is recorded
beside the model's prediction for the same size.

Per (task, seed, k, model) the record has the arg-mins (a diverged branch measures +inf), whether
they agree within one rung of the ladder, the Spearman correlation of predicted and measured
changes over the ladder (diverged sizes rank last in both), and the median absolute error of the
predicted change. The table aggregates per (task, k) over seeds: agreement rate, median
Spearman, median error.

Records go to ``--out`` (JSONL, rewritten by each run); the table to ``--table``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
LADDER = [8, 16, 32, 64, 128, 256, 512]
DEV_TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "digits-mlp": ("digits-mlp", {}),
    "digits-mlp lr=0.2": ("digits-mlp", {"optimizer": {"lr": 0.2}}),
    "mnist1d-cnn": ("mnist1d-cnn", {}),
    "synthetic-teacher": ("synthetic-teacher", {}),
}
MODELS = {"v1": "arbiter-la-v1", "v2": "arbiter-la"}


def probe(job: dict[str, Any]) -> list[dict[str, Any]]:
    """One task, seed and model: the reference schedule, and branches at each probe."""
    import torch

    torch.set_num_threads(1)
    import arbiter_env.agents  # noqa: F401 - registers the agents
    from arbiter_env.controllers import make_controller
    from arbiter_env.envs.batch_size import BatchSizeEnv
    from arbiter_env.envs.branching import measure_responses

    task, task_kwargs = DEV_TASKS[job["task"]]
    env = BatchSizeEnv(task, task_kwargs=task_kwargs, action_encoding="continuous")
    observation, _ = env.reset(seed=job["seed"])
    start = int(env.batch_size)
    agent = make_controller(MODELS[job["model"]], env, seed=job["seed"])
    agent.on_episode_start(observation)
    records = []
    for interval in range(max(job["intervals"]) + 1):
        decided = agent.choose_batch_size(observation)
        if interval in job["intervals"]:
            started = time.perf_counter()
            measured = measure_responses(env, LADDER, job["sampler_seeds"])
            seconds = time.perf_counter() - started
            mean = [float(np.mean(measured[b])) for b in LADDER]
            with torch.no_grad():
                predicted = [float(x) for x in agent.predicted_changes(LADDER)]
            records.append(
                {
                    "task": job["task"],
                    "seed": job["seed"],
                    "k": interval,
                    "model": job["model"],
                    "reference": job["reference"],
                    "batch_size_now": int(env.batch_size),
                    "sizes": LADDER,
                    "measured": mean,
                    "measured_per_seed": [measured[b] for b in LADDER],
                    "predicted": predicted,
                    "branch_seconds": seconds,
                    **compare(predicted, mean),
                }
            )
        size = decided if job["reference"] == "self" else start
        observation, _, terminated, _, _ = env.step(env.encode(size))
        if terminated:
            break
    agent.close()
    return records


def compare(predicted: list[float], measured: list[float]) -> dict[str, Any]:
    """Arg-min agreement within one rung, Spearman correlation, median absolute error."""
    p = np.nan_to_num(np.array(predicted), nan=math.inf)
    m = np.nan_to_num(np.array(measured), nan=math.inf)
    finite = np.isfinite(p) & np.isfinite(m)
    return {
        "predicted_argmin": int(LADDER[int(np.argmin(p))]),
        "measured_argmin": int(LADDER[int(np.argmin(m))]),
        "argmin_within_one_rung": bool(abs(int(np.argmin(p)) - int(np.argmin(m))) <= 1),
        "spearman": spearman(p, m),
        "median_abs_error": float(np.median(np.abs(p[finite] - m[finite])))
        if finite.any()
        else math.nan,
    }


def measurement_ceiling(record: dict[str, Any]) -> tuple[float, float]:
    """How well the measurement agrees with itself: each sampler seed against the others' mean.

    Returns the share of held-out seeds whose arg-min is within one rung of the rest's, and
    their median Spearman correlation: no model can be expected to beat its own yardstick.
    """
    per_seed = np.nan_to_num(np.array(record["measured_per_seed"], dtype=float), nan=math.inf)
    agree, rho = [], []
    for held in range(per_seed.shape[1]):
        one, rest = per_seed[:, held], np.delete(per_seed, held, axis=1).mean(axis=1)
        agree.append(abs(int(np.argmin(one)) - int(np.argmin(rest))) <= 1)
        rho.append(spearman(one, rest))
    return float(np.mean(agree)), float(np.nanmedian(rho))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; infinities rank last (ties share the mean rank)."""
    from scipy.stats import spearmanr

    big = np.finfo(np.float64).max
    value = spearmanr(np.minimum(a, big), np.minimum(b, big)).statistic
    return float(value) if np.isfinite(value) else math.nan


def table(records: list[dict[str, Any]]) -> str:
    """Per model, task and k: agreement rate, median Spearman and median error over seeds."""
    lines = []
    for model in sorted({r["model"] for r in records}):
        mine = [r for r in records if r["model"] == model]
        lines += [
            f"\n### model {model} ({MODELS[model]})\n",
            "| task | k | seeds | arg-min within one rung | median Spearman | median abs. error "
            "| predicted arg-mins | measured arg-mins | measurement ceiling (agree, Spearman) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for task in dict.fromkeys(r["task"] for r in mine):
            for k in sorted({r["k"] for r in mine if r["task"] == task}):
                cell = [r for r in mine if r["task"] == task and r["k"] == k]
                ceilings = [measurement_ceiling(r) for r in cell]
                lines.append(
                    f"| {task} | {k} | {len(cell)} | "
                    f"{np.mean([r['argmin_within_one_rung'] for r in cell]):.0%} | "
                    f"{np.nanmedian([r['spearman'] for r in cell]):.2f} | "
                    f"{np.median([r['median_abs_error'] for r in cell]):.3g} | "
                    f"{[r['predicted_argmin'] for r in cell]} | {[r['measured_argmin'] for r in cell]} | "
                    f"{np.mean([c[0] for c in ceilings]):.0%}, {np.nanmedian([c[1] for c in ceilings]):.2f} |"
                )
        probes = {(r["task"], r["k"]) for r in mine}
        agree = [
            np.mean([r["argmin_within_one_rung"] for r in mine if (r["task"], r["k"]) == p]) >= 0.5
            for p in probes
        ]
        lines.append(
            f"\n{model}: arg-min within one rung in {np.mean([r['argmin_within_one_rung'] for r in mine]):.0%} "
            f"of {len(mine)} probes ({sum(agree)}/{len(probes)} (task, k) cells by majority); "
            f"median Spearman {np.nanmedian([r['spearman'] for r in mine]):.2f}. The measurement "
            "against itself (one sampler seed vs the others' mean): arg-min within one rung in "
            f"{np.mean([measurement_ceiling(r)[0] for r in mine]):.0%}, median Spearman "
            f"{np.nanmedian([measurement_ceiling(r)[1] for r in mine]):.2f}."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(DEV_TASKS), choices=list(DEV_TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[100, 101, 102, 103, 104])
    parser.add_argument("--intervals", nargs="+", type=int, default=[2, 6, 10, 14])
    parser.add_argument("--sampler-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--reference", default="self", choices=["self", "fixed"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "arbiter_calibration.jsonl")
    parser.add_argument("--table", type=Path, default=HERE / "results" / "arbiter_calibration.md")
    parser.add_argument(
        "--table-only", action="store_true", help="rewrite --table from the records in --out"
    )
    args = parser.parse_args()
    if args.table_only:
        records = [json.loads(line) for line in args.out.read_text().splitlines()]
        text = table(records)
        print(text)
        args.table.write_text(f"<!-- written by: {_command(args)} --table-only -->\n{text}\n")
        return
    jobs = [
        {
            "task": task,
            "seed": seed,
            "intervals": args.intervals,
            "sampler_seeds": args.sampler_seeds,
            "model": model,
            "reference": args.reference,
        }
        for task in args.tasks
        for seed in args.seeds
        for model in args.models
    ]
    jobs.sort(key=lambda job: "mnist1d" not in job["task"])  # the slowest first
    records: list[dict[str, Any]] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.workers) as pool, args.out.open("w") as out:
        for result in pool.map(probe, jobs):
            for record in result:
                out.write(json.dumps(record) + "\n")
            out.flush()
            records += result
            first = result[0]
            print(f"{first['task']} seed {first['seed']} {first['model']}: {len(result)} probes")
    text = table(records)
    print(text)
    args.table.write_text(f"<!-- written by: {_command(args)} -->\n{text}\n")


def _command(args: argparse.Namespace) -> str:
    return (
        "python benchmarks/arbiter_calibration.py --tasks "
        + " ".join(f"'{t}'" for t in args.tasks)
        + f" --seeds {' '.join(map(str, args.seeds))} --models {' '.join(args.models)}"
        + f" --reference {args.reference} --out {args.out} --table {args.table}"
    )


if __name__ == "__main__":
    main()
