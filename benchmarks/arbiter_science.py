"""Arbiter's science table: the paper's three uses and arbiter-la against fixed sizes and heuristics.

    python benchmarks/arbiter_science.py                       # evaluation: every task, seeds 0-4
    python benchmarks/arbiter_science.py --dev                 # development: dev tasks, seeds 100-104
    python benchmarks/arbiter_science.py --suites standalone --tasks digits-mlp --seeds 0 1

The protocol (issue 20): arbiter-la is developed on the four *dev tasks* (digits-mlp at lr 0.05
and 0.2, mnist1d-cnn, synthetic-teacher) with dev seeds 100-104 only (``--dev``, records in
``results/arbiter_science_dev.jsonl``). It is evaluated on seeds 0-4 of the same tasks and on
*held-out tasks* never used while developing: mnist1d-mlp and the first three test instances of
``digits-mlp-family`` and of ``synthetic-teacher-family``. Every agent's seed is the episode's seed.

Three suites, each on the same seeds and the same sample budgets:

* ``standalone`` (the paper's first use, and our ``arbiter-la``): on every task, every fixed size
  of the ladder, the step schedule (Smith et al.: B doubles at 30/60/80 % of the budget, from 32),
  gradient noise scale, ``arbiter`` (the paper's algorithm), ``arbiter-la-v1`` and
  ``arbiter-la`` (v2, our extension) and ``oracle-greedy`` (a reference that trains a copy of the
  env at every ladder size each interval and keeps the best by validation loss: not deployable,
  and selected on validation, so read its test accuracy); on the held-out tasks only the fixed
  sizes, step, noise-scale and ``arbiter-la`` (the rows the targets need: compute is short);
* ``step-schedule`` (the second use): on digits-mlp, the fixed schedule 32/64/128 (intervals 0,
  8, 14) alone, Arbiter adjusting around it, and arbiter-la around it;
* ``sgd-hd`` (the third use): on digits-mlp with SGD-HD as the inner optimizer, fixed sizes,
  Arbiter and arbiter-la, with the noise of the learning-rate hypergradient h_t measured two
  ways: the paper's variance of h over the episode, and the local noise
  ½·mean((h_t − h_{t−1})²) of consecutive updates within an interval, averaged over intervals.

The *median fixed size* ranks the ladder's fixed sizes by mean final validation loss (a size
with a diverged seed ranks last) and takes the one at rank ceil(k/2) (1-based: the 4th of 7); the
*best fixed size* is rank 1.

A run counts as diverged when the environment says so (a non-finite loss) or when its final
validation loss is above the chance level log(classes): a finite blow-up. Means and standard
errors are over the runs that did not diverge; a fixed size with a diverged seed ranks last.

Each run records the final validation loss, test accuracy, mean batch size, updates, whether it
diverged, and its wall time. Every Arbiter / arbiter-la run is followed in the same process by a
replay of its own schedule without the agent, so ``cost`` is the episode's wall time over that of
a fixed-schedule episode with the same batch sizes (hence the same mean batch size).

Runs are cached one JSON line each in ``--out`` (a rerun skips what is there); the tables are
printed and written to ``--table``. Torch runs single-threaded in ``--workers`` processes.
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

from arbiter_env.lab import report

HERE = Path(__file__).resolve().parent
LADDER = [8, 16, 32, 64, 128, 256, 512]
STEP = {"initial_batch_size": 32, "milestones": [0.3, 0.6, 0.8], "factor": 2.0}
PAPER_SCHEDULE = [
    {"interval": 0, "batch_size": 32},
    {"interval": 8, "batch_size": 64},
    {"interval": 14, "batch_size": 128},
]
AGENTS = ("arbiter", "arbiter-la-v1", "arbiter-la")
REFERENCES = ("oracle-greedy",)
DEV_SEEDS = [100, 101, 102, 103, 104]
# Variants of arbiter-la run only when asked by name (--only), to choose its defaults on dev seeds.
DEV_VARIANTS: dict[str, dict[str, Any]] = {"arbiter-la alpha": {"decision": "alpha"}}
EVAL_SEEDS = [0, 1, 2, 3, 4]

DEV_TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "digits-mlp": ("digits-mlp", {}),
    "digits-mlp lr=0.2": ("digits-mlp", {"optimizer": {"lr": 0.2}}),
    "mnist1d-cnn": ("mnist1d-cnn", {}),
    "synthetic-teacher": ("synthetic-teacher", {}),
}
HELD_OUT_FAMILIES = ("digits-mlp-family", "synthetic-teacher-family")
HELD_OUT_PER_FAMILY = 3


def held_out_tasks() -> list[str]:
    """mnist1d-mlp and the first three test instances of each held-out family."""
    from arbiter_env.tasks.families import get_family

    names = ["mnist1d-mlp"]
    for family in HELD_OUT_FAMILIES:
        names += [i.name for i in get_family(family).instances("test")[:HELD_OUT_PER_FAMILY]]
    return names


def build_task(label: str) -> tuple[Any, dict[str, Any]]:
    """The task (a name or a Task) and its overrides for a table label."""
    if label in DEV_TASKS:
        return DEV_TASKS[label]
    if "#" in label:
        from arbiter_env.tasks.families import get_family

        family, index = label.split("#")
        instance = next(i for i in get_family(family).instances() if i.index == int(index))
        return get_family(family).make_task(instance), {}
    return label, {}


SGD_HD = ("digits-mlp", {"optimizer": {"name": "sgd-hd", "lr": 0.05, "hypergradient_lr": 1e-3}})


def jobs(suites: list[str], tasks: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """Every run of the chosen suites, as plain dicts (they cross process boundaries)."""
    out: list[dict[str, Any]] = []
    for seed in seeds:
        if "standalone" in suites:
            for label in tasks:
                known = [*DEV_TASKS, *held_out_tasks()]
                if label not in known:  # fail before any run, not after hours of them
                    raise KeyError(f"Unknown task {label!r}; choose from {known}.")
                for size in LADDER:
                    out.append(
                        dict(
                            suite="standalone",
                            task=label,
                            name=f"fixed-{size}",
                            controller="fixed",
                            kwargs={"batch_size": size},
                        )
                    )
                out.append(
                    dict(
                        suite="standalone", task=label, name="step", controller="step", kwargs=STEP
                    )
                )
                out.append(
                    dict(
                        suite="standalone",
                        task=label,
                        name="noise-scale",
                        controller="noise-scale",
                        kwargs={},
                    )
                )
                # The paper's Arbiter, v1 and the oracle are compared on the dev tasks; the
                # held-out tasks test v2 against the fixed sizes and heuristics (compute).
                contestants = (*AGENTS, *REFERENCES) if label in DEV_TASKS else ("arbiter-la",)
                for agent in contestants:
                    out.append(
                        dict(
                            suite="standalone", task=label, name=agent, controller=agent, kwargs={}
                        )
                    )
                for name, kwargs in DEV_VARIANTS.items():
                    out.append(
                        dict(
                            suite="standalone",
                            task=label,
                            name=name,
                            controller="arbiter-la",
                            kwargs=kwargs,
                        )
                    )
        if "step-schedule" in suites:
            schedule = dict(suite="step-schedule", task="digits-mlp")
            out.append(
                {
                    **schedule,
                    "name": "schedule 32/64/128",
                    "controller": "replay",
                    "kwargs": {"milestones": PAPER_SCHEDULE},
                }
            )
            for agent in AGENTS:
                out.append(
                    {
                        **schedule,
                        "name": f"{agent} + schedule",
                        "controller": agent,
                        "kwargs": {"schedule": PAPER_SCHEDULE},
                    }
                )
        if "sgd-hd" in suites:
            for size in (32, 64, 128, 256):
                out.append(
                    dict(
                        suite="sgd-hd",
                        task="digits-mlp SGD-HD",
                        name=f"fixed-{size}",
                        controller="fixed",
                        kwargs={"batch_size": size},
                    )
                )
            for agent in AGENTS:
                out.append(
                    dict(
                        suite="sgd-hd",
                        task="digits-mlp SGD-HD",
                        name=agent,
                        controller=agent,
                        kwargs={},
                    )
                )
        for job in out:
            job.setdefault("seed", seed)
    return out


def key(job: dict[str, Any]) -> str:
    return f"{job['suite']}|{job['task']}|{job['name']}|{job['seed']}"


def run(job: dict[str, Any]) -> dict[str, Any]:
    """One episode (plus, for the agents, a replay of its schedule), in a worker process."""
    import torch

    torch.set_num_threads(1)
    from arbiter_env.controllers import BatchSizeController, make_controller, run_episode
    from arbiter_env.envs.batch_size import BatchSizeEnv

    class Replay(BatchSizeController):
        """Plays a list of sizes, or a milestone schedule, and nothing else."""

        def __init__(self, env: Any, sizes: list[int]):
            super().__init__(env)
            self.sizes = sizes

        def on_episode_start(self, observation: Any) -> None:
            self.interval = 0

        def choose_batch_size(self, observation: Any) -> int:
            self.interval += 1
            return self.sizes[min(self.interval, len(self.sizes)) - 1]

    task, task_kwargs = (
        SGD_HD
        if job["suite"] == "sgd-hd"
        else build_task(job["task"] if job["suite"] == "standalone" else "digits-mlp")
    )
    encoding = "continuous" if job["controller"] in AGENTS else "discrete"
    env = BatchSizeEnv(
        task, task_kwargs=task_kwargs, action_encoding=encoding, record_wall_time=True
    )
    if job["controller"] == "replay":
        milestones = job["kwargs"]["milestones"]
        sizes = [
            max((m for m in milestones if m["interval"] <= i), key=lambda m: m["interval"])[
                "batch_size"
            ]
            for i in range(env.task.num_intervals)
        ]
        controller: Any = Replay(env, sizes)
    elif job["controller"] in AGENTS:
        controller = make_controller(job["controller"], env, seed=job["seed"], **job["kwargs"])
    else:
        controller = make_controller(job["controller"], env, **job["kwargs"])
    hypergradients: list[tuple[int, float]] = []
    if job["suite"] == "sgd-hd":
        env.trainer.add_step_hook(
            lambda info: hypergradients.append(
                (env._interval, float(info.trainer.optimizer.last_hypergradient))
            )
        )
    started = time.perf_counter()
    record = run_episode(env, controller, job["seed"])
    wall = time.perf_counter() - started
    result = {
        **job,
        "final_val_loss": record.final_val_loss,
        "test_accuracy": record.test_accuracy,
        # Diverged: the env said so (a non-finite loss), or the run ended above the chance-level
        # loss log(classes), worse than an untrained network (a finite blow-up).
        "diverged": record.diverged
        or not record.final_val_loss <= math.log(env.trainer.data.num_classes),
        "mean_batch_size": float(np.mean(record.batch_sizes)),
        "updates": record.total_updates,
        "batch_sizes": record.batch_sizes,
        "wall_time": wall,
    }
    if hypergradients:
        result.update(hypergradient_noise(hypergradients))
        result["mean_lr"] = float(np.mean(record.learning_rates))
    if getattr(controller, "measurement_passes", None):
        # arbiter-la v2 counts its measurement passes against each interval's update passes.
        result["measurement_share"] = max(
            m / u
            for m, u in zip(controller.measurement_passes, controller.update_passes, strict=True)
        )
    if job["controller"] in (*AGENTS, *REFERENCES):
        if job["controller"] in AGENTS:
            controller.close()
        replay_env = BatchSizeEnv(task, task_kwargs=task_kwargs, action_encoding=encoding)
        started = time.perf_counter()
        run_episode(replay_env, Replay(replay_env, record.batch_sizes), job["seed"])
        result["cost"] = wall / (time.perf_counter() - started)
    return result


def hypergradient_noise(values: list[tuple[int, float]]) -> dict[str, float]:
    """The paper's episode variance of h_t and the local noise ½·mean((h_t − h_{t−1})²)."""
    intervals = np.array([i for i, _ in values])
    h = np.array([x for _, x in values], dtype=np.float64)[1:]  # h_1 = 0 by definition
    intervals = intervals[1:]
    local = []
    for interval in np.unique(intervals):
        within = h[intervals == interval]
        if within.size > 1:
            local.append(0.5 * np.mean(np.diff(within) ** 2))
    return {"h_episode_variance": float(np.var(h)), "h_local_noise": float(np.mean(local))}


# --- tables ---------------------------------------------------------------------------------------


def summarise(
    results: list[dict[str, Any]], field: str = "final_val_loss"
) -> dict[str, dict[str, Any]]:
    """Per controller: mean ± standard error over finished runs, seeds, divergences."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_name.setdefault(r["name"], []).append(r)
    rows = {}
    for name, runs in by_name.items():
        finished = [r for r in runs if not r["diverged"] and math.isfinite(r[field])]
        values = np.array([r[field] for r in finished])
        rows[name] = {
            "n": len(runs),
            "diverged": len(runs) - len(finished),
            "mean": float(values.mean()) if len(values) else math.nan,
            "se": float(values.std(ddof=1) / math.sqrt(len(values)))
            if len(values) > 1
            else math.nan,
            "test_accuracy": float(np.mean([r["test_accuracy"] for r in finished]))
            if finished
            else math.nan,
            "mean_batch_size": float(np.mean([r["mean_batch_size"] for r in runs])),
            "cost": float(np.median([r["cost"] for r in runs])) if "cost" in runs[0] else None,
            "cost_range": (min(r["cost"] for r in runs), max(r["cost"] for r in runs))
            if "cost" in runs[0]
            else None,
            "measurement_share": max((r["measurement_share"] for r in runs), default=None)
            if "measurement_share" in runs[0]
            else None,
            "h_local_noise": _mean_of(runs, "h_local_noise"),
            "h_episode_variance": _mean_of(runs, "h_episode_variance"),
            "mean_lr": _mean_of(runs, "mean_lr"),
        }
    return rows


def _mean_of(runs: list[dict[str, Any]], field: str) -> float | None:
    values = [r[field] for r in runs if field in r and math.isfinite(r[field])]
    return float(np.mean(values)) if values else None


def fixed_reference(rows: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """Best fixed size (rank 1) and median fixed size, by the report's one ranking of a ladder."""
    summaries = [
        {
            "task": "",
            "controller": name,
            "kind": "fixed",
            "ok": row["n"],
            "diverged": row["diverged"],
            "final_val_loss_mean": row["mean"],
        }
        for name, row in rows.items()
        if name.startswith("fixed-")
    ]
    return report.rank_fixed_sizes(summaries, "")[0], report.median_fixed_size(summaries, "")


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["suite"], r["task"]), []).append(r)
    for (suite, task), runs in groups.items():
        rows = summarise(runs)
        best = median = None
        if sum(name.startswith("fixed-") for name in rows) > 2:
            best, median = fixed_reference(rows)
        seeds = sorted({r["seed"] for r in runs})
        lines += [f"\n### {suite}: {task} ({len(seeds)} seeds: {seeds})\n"]
        header = (
            "| controller | final val loss (mean ± s.e.) | test acc. | mean B | diverged | cost |"
        )
        extra = suite == "sgd-hd"
        if extra:
            header += " h local noise | h episode variance | mean lr |"
        lines += [header, "|" + "---|" * (header.count("|") - 1)]
        for name, row in rows.items():
            mark = " (best fixed)" if name == best else " (median fixed)" if name == median else ""
            cost = (
                f"{row['cost']:.2f} ({row['cost_range'][0]:.2f}–{row['cost_range'][1]:.2f})"
                if row["cost"] is not None
                else ""
            )
            line = (
                f"| {name}{mark} | {row['mean']:.4f} ± {row['se']:.4f} | {row['test_accuracy']:.3f} | "
                f"{row['mean_batch_size']:.0f} | {row['diverged']}/{row['n']} | {cost} |"
            )
            if extra:
                line += f" {row['h_local_noise']:.3g} | {row['h_episode_variance']:.3g} | {row['mean_lr']:.3g} |"
            lines.append(line)
        if best is not None and {"arbiter-la", "noise-scale"} <= rows.keys():
            lines.append("\n" + targets(rows, best, median))
    return "\n".join(lines)


def targets(rows: dict[str, dict[str, Any]], best: str, median: str) -> str:
    """arbiter-la (v2) against issue 20's targets on this task, and the oracle beside them."""
    la, b, m, ns = rows["arbiter-la"], rows[best], rows[median], rows["noise-scale"]

    def loss(row: dict[str, Any]) -> float:
        return math.inf if row["diverged"] else row["mean"]

    checks = {
        "≥ median fixed (val loss)": loss(la) <= loss(m),
        "test acc. ≥ median fixed's": la["test_accuracy"] >= m["test_accuracy"],
        "within 1 s.e. of best fixed": loss(la) <= loss(b) + max(la["se"], b["se"]),
        "better than noise-scale": loss(la) < loss(ns),
        "cost ≤ 1.3×": la["cost"] is not None and la["cost"] <= 1.3,
    }
    if la.get("measurement_share") is not None:
        share = la["measurement_share"]
        checks[f"measurement ≤ 25% of update passes (max {share:.0%})"] = share <= 0.25
    line = "arbiter-la: " + "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in checks.items())
    if "oracle-greedy" in rows:
        oracle = rows["oracle-greedy"]
        line += (
            f"\noracle-greedy (reference): val loss {oracle['mean']:.4f} vs best fixed "
            f"{b['mean']:.4f}; test acc. {oracle['test_accuracy']:.3f} vs best fixed "
            f"{b['test_accuracy']:.3f} and median fixed {m['test_accuracy']:.3f}"
        )
    return line


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suites", nargs="+", default=["standalone", "step-schedule", "sgd-hd"])
    parser.add_argument(
        "--dev", action="store_true", help="the dev protocol: dev tasks, seeds 100-104, dev files"
    )
    parser.add_argument("--tasks", nargs="+", help="standalone tasks (default: by protocol)")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: 0-4, or 100-104 with --dev")
    parser.add_argument(
        "--only", nargs="+", help="run only these rows (names such as fixed-8, arbiter-la)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path)
    args = parser.parse_args()
    stem = "arbiter_science_dev" if args.dev else "arbiter_science"
    args.tasks = args.tasks or (list(DEV_TASKS) if args.dev else [*DEV_TASKS, *held_out_tasks()])
    args.seeds = args.seeds or (DEV_SEEDS if args.dev else EVAL_SEEDS)
    args.out = args.out or HERE / "results" / f"{stem}.jsonl"
    args.table = args.table or HERE / "results" / f"{stem}.md"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            record = json.loads(line)
            done[key(record)] = record
    todo = [
        job
        for job in jobs(args.suites, args.tasks, args.seeds)
        if key(job) not in done
        and (job["name"] in args.only if args.only else job["name"] not in DEV_VARIANTS)
    ]
    print(f"{len(done)} runs cached, {len(todo)} to run", flush=True)
    # The slowest tasks first, so that the pool does not end on one long run.
    todo.sort(key=lambda job: ("mnist1d" not in job["task"], job["seed"]))
    with ProcessPoolExecutor(args.workers) as pool, args.out.open("a") as out:
        for result in pool.map(run, todo):
            done[key(result)] = result
            out.write(json.dumps(result) + "\n")
            out.flush()
            print(
                f"{result['task']:>20} {result['name']:>22} seed {result['seed']}: {result['final_val_loss']:.4f}",
                flush=True,
            )
    wanted = {
        key(job)
        for job in jobs(args.suites, args.tasks, args.seeds)
        if job["name"] not in DEV_VARIANTS or (args.only and job["name"] in args.only)
    }
    text = table([done[k] for k in done if k in wanted])
    print(text)
    command = (
        "python benchmarks/arbiter_science.py"
        + (" --dev" if args.dev else "")
        + f" --suites {' '.join(args.suites)} --seeds {' '.join(map(str, args.seeds))} --tasks "
        + " ".join(f"'{t}'" for t in args.tasks)
    )
    args.table.write_text(f"<!-- written by: {command} -->\n{text}\n")


if __name__ == "__main__":
    main()
