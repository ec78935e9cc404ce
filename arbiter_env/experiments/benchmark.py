"""``arbiter benchmark``: the standard suite, scored against the oracle, with a leaderboard.

The suite is ``configs/experiments/benchmark.yaml`` (:class:`BenchmarkConfig`): built-in tasks
with and without an LR schedule (``TASK@SCHEDULE``, :mod:`arbiter_env.experiments.suite_tasks`),
test instances of every task family, fixed seeds, the fixed ladder, the ``oracle-greedy``
reference and every baseline. It runs as one comparison (:func:`~arbiter_env.experiments.
run_comparison`, local processes or Ray) and then writes a leaderboard:

* per task, the raw tables of the comparison (final validation loss, test accuracy, samples, inner
  updates, wall time);
* per task, normalised scores of test accuracy: 0 = the median fixed size, 1 = the oracle (the
  best fixed size where the oracle did not run), with a note wherever the oracle loses to a fixed
  size;
* pooled over tasks, IQM, probability of improvement over the upper reference and the
  performance profile, with stratified-bootstrap 95% CIs (:mod:`arbiter_env.report`);
* costs to a target: inner updates, samples and seconds until the validation accuracy first
  reaches the task's target, the mean final validation accuracy of its median fixed size.

No controller here learns across episodes (the static HPO searches and the RL agents are not in
the default suite), so no controller sees a test instance before it is evaluated on it.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arbiter_env import report
from arbiter_env.config import ConfigError, load_yaml
from arbiter_env.experiments.config import (
    ControllerSpec,
    EngineConfig,
    ExperimentConfig,
    WandbConfig,
)

SUITE_TASKS_MODULE = "arbiter_env.experiments.suite_tasks"
SCORE_METRIC = "test_accuracy"
PROFILE_TAUS = (0.0, 0.5, 1.0)


@dataclass
class FullRun:
    """What ``--full`` changes.

    Args:
        seeds: Evaluation seeds of the full run (default 5).
        family_instances: Test instances per family; ``None``: every one.
        tasks: Built-in tasks of the full run; empty: the default run's.
        lr_schedules: Schedules of the full run; empty: the default run's.
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    family_instances: int | None = None
    tasks: list[str] = field(default_factory=list)
    lr_schedules: list[str] = field(default_factory=list)


@dataclass
class BenchmarkConfig:
    """The benchmark suite (``configs/experiments/benchmark.yaml``).

    Args:
        name: Name of the comparison (run folder ``output_dir/NAME-TIMESTAMP``).
        description: Free text, copied into the leaderboard.
        tasks: Built-in tasks; each runs under every schedule of ``lr_schedules``.
        lr_schedules: ``constant`` (the task as registered) and presets of
            :data:`~arbiter_env.experiments.suite_tasks.SUITE_LR_SCHEDULES`.
        families: Task families whose test instances are tasks of the suite.
        family_instances: How many test instances per family the default run takes (the first
            ones, in index order); ``None``: every one.
        seeds: Evaluation seeds of the default run.
        ladder: The fixed sizes, each a controller ``fixed-B``.
        controllers: The baselines (and any other controllers) besides the ladder and the oracle.
        oracle: The upper reference of the normalised scores; skipped, with a note in the
            leaderboard, when no controller of that name is registered.
        task_overrides: ``make_task`` field overrides for every task (none by default: the
            suite runs the tasks as registered).
        full: What ``--full`` changes (:class:`FullRun`).
        engine: Where the runs execute (``--engine`` overrides the name).
        wandb: Weights & Biases settings (disabled by default).
        output_dir: Parent folder of the run folder.
        leaderboard: The Markdown file the leaderboard is written to.
    """

    tasks: list[str]
    controllers: list[ControllerSpec]
    name: str = "benchmark"
    description: str = ""
    lr_schedules: list[str] = field(default_factory=lambda: ["constant", "cosine"])
    families: list[str] = field(default_factory=list)
    family_instances: int | None = 1
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    ladder: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128, 256, 512])
    oracle: str | None = "oracle-greedy"
    task_overrides: dict[str, Any] = field(default_factory=dict)
    full: FullRun = field(default_factory=FullRun)
    engine: EngineConfig = field(default_factory=EngineConfig)
    wandb: WandbConfig = field(default_factory=lambda: WandbConfig(mode="disabled"))
    output_dir: str = "runs/benchmark"
    leaderboard: str = "docs/benchmark.md"

    def __post_init__(self) -> None:
        from arbiter_env.experiments.suite_tasks import SUITE_LR_SCHEDULES

        valid = ("constant", *SUITE_LR_SCHEDULES)
        for schedules, key in (
            (self.lr_schedules, "lr_schedules"),
            (self.full.lr_schedules, "full.lr_schedules"),
        ):
            for schedule in schedules:
                if schedule not in valid:
                    raise ConfigError(
                        f"{key}: unknown schedule {schedule!r}; use one of {', '.join(valid)}."
                    )
        if self.family_instances is not None and self.family_instances < 1:
            raise ConfigError("family_instances must be >= 1, or null for every instance.")
        if not self.ladder or any(b < 1 for b in self.ladder):
            raise ConfigError(f"ladder must list batch sizes >= 1, got {self.ladder}.")


def load_benchmark(file: str | Path, overrides: list[str] | None = None) -> BenchmarkConfig:
    """Loads the suite's YAML file (plus ``key=value`` overrides) and checks it."""
    return load_yaml(BenchmarkConfig, file, overrides)


# --- the suite as a comparison --------------------------------------------------------------------


def suite_tasks(config: BenchmarkConfig, full: bool = False) -> list[str]:
    """The suite's task names: every task under every schedule, then the family instances."""
    from arbiter_env.experiments.suite_tasks import family_instance_name, scheduled_task_name
    from arbiter_env.tasks.families import get_family

    tasks = (config.full.tasks if full and config.full.tasks else None) or config.tasks
    schedules = (config.full.lr_schedules if full and config.full.lr_schedules else None) or (
        config.lr_schedules
    )
    names = [scheduled_task_name(t, s) for t in tasks for s in schedules]
    count = config.full.family_instances if full else config.family_instances
    for family in config.families:
        instances = sorted(get_family(family).instances("test"), key=lambda i: i.index)
        names += [
            family_instance_name(family, "test", i.index)
            for i in (instances if count is None else instances[:count])
        ]
    return names


def oracle_available(config: BenchmarkConfig) -> bool:
    """Whether ``config.oracle`` names a registered controller."""
    from arbiter_env.controllers import list_controllers

    return config.oracle is not None and config.oracle in list_controllers()


def experiment_config(config: BenchmarkConfig, full: bool = False) -> ExperimentConfig:
    """The suite as one comparison: the ladder, the baselines and the oracle on every task."""
    ladder = [
        ControllerSpec(name=f"fixed-{b}", controller="fixed", kwargs={"batch_size": b})
        for b in config.ladder
    ]
    oracle = (
        [ControllerSpec(name=str(config.oracle), controller=str(config.oracle))]
        if oracle_available(config)
        else []
    )
    return ExperimentConfig(
        name=config.name + ("-full" if full else ""),
        description=config.description,
        tasks=suite_tasks(config, full),
        controllers=[*ladder, *config.controllers, *oracle],
        seeds=list(config.full.seeds if full else config.seeds),
        task_overrides=dict(config.task_overrides),
        imports=[SUITE_TASKS_MODULE],
        engine=config.engine,
        wandb=config.wandb,
        output_dir=config.output_dir,
    )


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` produced."""

    run_dir: Path
    leaderboard: Path
    markdown: str
    runs: int
    failed: int
    wall_time: float


def run_benchmark(
    config: BenchmarkConfig,
    *,
    full: bool = False,
    engine: str | None = None,
    ray_address: str | None = None,
    run_dir: str | Path | None = None,
    leaderboard: str | Path | None = None,
    command: str = "arbiter benchmark",
    progress: bool = True,
) -> BenchmarkResult:
    """Runs the suite (resuming ``run_dir`` if it holds it) and writes the leaderboard."""
    from arbiter_env.experiments.results import load_results
    from arbiter_env.experiments.runner import run_comparison

    started = time.perf_counter()
    experiment = experiment_config(config, full)
    result = run_comparison(
        experiment,
        run_dir=run_dir,
        engine=engine,  # type: ignore[arg-type]
        ray_address=ray_address,
        progress=progress,
    )
    _, results = load_results(result.run_dir)
    wall_time = time.perf_counter() - started
    notes = []
    if not oracle_available(config):
        notes.append(
            f"The oracle reference {config.oracle!r} is not registered in this installation, so "
            "it did not run: the upper reference of the normalised scores is the best fixed size "
            "in hindsight (rank 1 of the ladder by mean final validation loss)."
        )
    markdown = leaderboard_markdown(
        results,
        title=f"Benchmark leaderboard ({experiment.name})",
        description=config.description,
        provenance=_provenance(command, wall_time, experiment, result.executed, results),
        notes=notes,
    )
    path = Path(leaderboard or config.leaderboard)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown)
    return BenchmarkResult(
        result.run_dir, path, markdown, len(result.results), result.failed, wall_time
    )


def _provenance(
    command: str,
    wall_time: float,
    experiment: ExperimentConfig,
    executed: int,
    results: list[dict[str, Any]],
) -> list[str]:
    commit = _git(["rev-parse", "--short", "HEAD"])
    dirty = _git(["status", "--porcelain", "--untracked-files=no"])
    episode_seconds = sum(float(r.get("wall_time", 0.0) or 0.0) for r in results)
    return [
        f"Command: `{command}`",
        f"Commit: `{commit or 'unknown'}`{' (with uncommitted changes)' if dirty else ''}",
        f"Machine: {platform.machine()}, {_cpu_count()} CPU cores, Python "
        f"{platform.python_version()}; engine `{experiment.engine.name}` with "
        f"{experiment.engine.max_workers} workers",
        f"This invocation executed {executed} of {len(results)} runs in {wall_time / 60:.1f} min "
        f"(the others were finished in the run folder before); the evaluation episodes took "
        f"{episode_seconds / 60:.1f} min in all, summed over runs",
        f"Tasks: {len(experiment.tasks)}; seeds: {experiment.seeds}; controllers: "
        f"{len(experiment.controllers)}",
    ]


def _git(arguments: list[str]) -> str:
    try:
        out = subprocess.run(
            ["git", *arguments], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- ADAPTER: normalised scores (swap for h21's arbiter_env.report functions at merge) ------------
#
# The normalisation (0 = median fixed size, 1 = oracle or best fixed size) and the ranking of the
# fixed sizes belong to arbiter_env.report. Where that module already has them (score_table with
# an `upper` argument), they are used as they are; otherwise this fallback applies the same
# definitions. Everything else in this module calls only `suite_scores`.

ORACLE_LABEL = "oracle-greedy"
"""The label whose runs, where they exist on a task, are its upper reference (score 1)."""


@dataclass(frozen=True)
class SuiteScores:
    """Normalised test-accuracy scores per controller and task, and their references."""

    tasks: list[str]
    scores: dict[str, list[np.ndarray]]
    """Label -> one array of run scores per task (controllers that ran on every task)."""
    lower: dict[str, str]
    """Task -> the median fixed size (score 0)."""
    upper: dict[str, str]
    """Task -> the upper reference (score 1): the oracle where it ran, else the best fixed size."""
    note: str = ""


def suite_scores(results: list[dict[str, Any]]) -> SuiteScores:
    """The normalised scores of ``results`` (see the adapter comment above)."""
    rows = report.summarize(results)
    tasks = list(dict.fromkeys(r["task"] for r in results))
    median = getattr(report, "median_fixed_size", None)
    if median is not None and "upper" in inspect.signature(report.score_table).parameters:
        table = report.score_table(results, SCORE_METRIC)  # type: ignore[call-arg]
        lower = {task: median(rows, task) for task in tasks}
        return SuiteScores(
            list(table.tasks),
            table.scores,
            lower,
            table.reference_labels,
            getattr(table, "note", ""),
        )
    return _fallback_scores(results, rows, tasks)


def rank_fixed_sizes(rows: list[dict[str, Any]], task: str) -> list[str]:
    """Fixed sizes of ``task`` best first: diverged fraction, then mean final validation loss."""
    candidates = [r for r in rows if r["task"] == task and r.get("kind") == "fixed" and r["ok"]]

    def key(item: tuple[int, dict[str, Any]]) -> tuple[float, float, int]:
        index, row = item
        loss = float(row.get("final_val_loss_mean", math.nan))
        return (row["diverged"] / row["ok"], loss if math.isfinite(loss) else math.inf, index)

    return [row["controller"] for _, row in sorted(enumerate(candidates), key=key)]


def _fallback_scores(
    results: list[dict[str, Any]], rows: list[dict[str, Any]], tasks: list[str]
) -> SuiteScores:
    lower_labels: dict[str, str] = {}
    upper_labels: dict[str, str] = {}
    per_label: dict[str, dict[str, np.ndarray]] = {}
    problems = []
    for task in tasks:
        ranking = rank_fixed_sizes(rows, task)
        if not ranking:
            problems.append(f"{task}: no fixed size ran")
            continue
        lower_label = ranking[math.ceil(len(ranking) / 2) - 1]
        oracle_ran = any(
            r["task"] == task and r["controller"] == ORACLE_LABEL and r["ok"] for r in rows
        )
        upper_label = ORACLE_LABEL if oracle_ran else ranking[0]
        means = {
            r["controller"]: float(r.get(f"{SCORE_METRIC}_mean", math.nan))
            for r in rows
            if r["task"] == task
        }
        low, high = means.get(lower_label, math.nan), means.get(upper_label, math.nan)
        if not (math.isfinite(low) and math.isfinite(high)) or low == high:
            problems.append(f"{task}: references {lower_label}, {upper_label} do not differ")
            continue
        lower_labels[task], upper_labels[task] = lower_label, upper_label
        finished: list[float] = []
        raw: dict[str, list[float]] = {}
        for result in (r for r in results if r["task"] == task and r.get("status") == "ok"):
            value = float(result.get(SCORE_METRIC, math.nan))
            if result.get("diverged") or not math.isfinite(value):
                raw.setdefault(result["label"], []).append(math.nan)
                continue
            score = (value - low) / (high - low)
            raw.setdefault(result["label"], []).append(score)
            finished.append(score)
        floor = min([-1.0, *finished]) - 1.0  # diverging never scores as well as finishing
        for label, values in raw.items():
            array = np.asarray(values, dtype=float)
            array[np.isnan(array)] = floor
            per_label.setdefault(label, {})[task] = array
    scored = [t for t in tasks if t in lower_labels]
    complete = {
        label: [by_task[t] for t in scored]
        for label, by_task in per_label.items()
        if all(t in by_task for t in scored)
    }
    note = "; ".join(problems)
    return SuiteScores(scored, complete, lower_labels, upper_labels, note)


# --- the leaderboard ------------------------------------------------------------------------------


def task_targets(results: list[dict[str, Any]], lower: dict[str, str]) -> dict[str, float]:
    """Task -> target validation accuracy: the median fixed size's mean final validation accuracy."""
    targets = {}
    for task, label in lower.items():
        values = [
            float(r.get("final_val_accuracy", math.nan))
            for r in results
            if r["task"] == task and r["label"] == label and r.get("status") == "ok"
        ]
        finite = [v for v in values if math.isfinite(v)]
        if finite:
            targets[task] = float(np.mean(finite))
    return targets


def cost_to_target(result: dict[str, Any], target: float) -> dict[str, float]:
    """Updates, samples and seconds until a run's validation accuracy first reached ``target``.

    Read from the run's interval log, at interval ends; NaN where it never reached it.
    """
    for row in result.get("log", []):
        if float(row.get("val_accuracy", math.nan)) >= target:
            return {
                "updates": float(row.get("updates", math.nan)),
                "samples": float(row.get("episode_samples", row.get("samples", math.nan))),
                "seconds": float(row.get("elapsed", math.nan)),
            }
    return {"updates": math.nan, "samples": math.nan, "seconds": math.nan}


def pooled_rows(
    scores: SuiteScores,
    kinds: dict[str, str],
    resamples: int = report.BOOTSTRAP_RESAMPLES,
    seed: int = report.BOOTSTRAP_SEED,
) -> list[dict[str, Any]]:
    """Per controller: IQM, P(improvement over the upper reference), profile, with 95% CIs."""
    reference = _reference_scores(scores)
    taus = np.asarray(PROFILE_TAUS)
    rows = []
    for label, per_task in scores.scores.items():
        value, low, high = report.iqm_interval(per_task, resamples, seed)
        row: dict[str, Any] = {
            "controller": label,
            "kind": kinds.get(label, "other"),
            "runs": int(sum(len(s) for s in per_task)),
            "iqm": (value, low, high),
        }
        if reference is not None:
            row["p_improvement"] = report.improvement_interval(per_task, reference, resamples, seed)
        profile, p_low, p_high = report.profile_interval(per_task, taus, resamples, seed)
        row["profile"] = list(zip(profile, p_low, p_high, strict=True))
        rows.append(row)
    rows.sort(key=lambda r: -r["iqm"][0])
    return rows


def _reference_scores(scores: SuiteScores) -> list[np.ndarray] | None:
    arrays = []
    for task_index, task in enumerate(scores.tasks):
        label = scores.upper.get(task)
        if label is None or label not in scores.scores:
            return None
        arrays.append(scores.scores[label][task_index])
    return arrays


def _interval(values: tuple[float, float, float], fmt: str = "{:.2f}") -> str:
    value, low, high = values
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


def leaderboard_markdown(
    results: list[dict[str, Any]],
    *,
    title: str,
    description: str = "",
    provenance: list[str] | None = None,
    notes: list[str] | None = None,
    resamples: int = report.BOOTSTRAP_RESAMPLES,
) -> str:
    """The leaderboard: pooled scores, per-task normalised scores, costs, raw tables."""
    scores = suite_scores(results)
    rows = report.summarize(results)
    kinds = {r["controller"]: r["kind"] for r in rows}
    lines = [f"# {title}", ""]
    if description:
        lines += [description.strip(), ""]
    lines += [f"- {line}" for line in provenance or []]
    lines += ["", *[f"**Note.** {note}" for note in notes or []]]
    if scores.note:
        lines += ["", f"**Tasks left out of the pooled scores:** {scores.note}."]
    lines += ["", "## Leaderboard (pooled over tasks)", ""]
    pooled = pooled_rows(scores, kinds, resamples)
    lines += _pooled_table(pooled)
    lines += _per_task_scores(results, scores, rows)
    lines += _schedule_section(scores, kinds, resamples)
    lines += _cost_table(results, scores)
    lines += ["", "## Raw results per task", ""]
    lines.append(report.markdown_table(rows).rstrip("\n"))
    return "\n".join(lines) + "\n"


def _pooled_table(pooled: list[dict[str, Any]]) -> list[str]:
    with_p = bool(pooled) and "p_improvement" in pooled[0]
    header = ["rank", "controller", "kind", "runs", "IQM normalised test accuracy [95% CI]"]
    if with_p:
        header.append("P(better than upper reference) [95% CI]")
    header += [f"runs with score > {tau:g} [95% CI]" for tau in PROFILE_TAUS]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---:"] + ["---"] * 2 + ["---:"] * (len(header) - 3)) + "|",
    ]
    for rank, row in enumerate(pooled, 1):
        cells = [str(rank), row["controller"], row["kind"], str(row["runs"]), _interval(row["iqm"])]
        if with_p:
            cells.append(_interval(row["p_improvement"]))
        cells += [_interval(point) for point in row["profile"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Scores are normalised per task before pooling: 0 = the task's median fixed size, "
        "1 = its upper reference (the oracle, or the best fixed size where no oracle ran), each "
        "by its mean test accuracy over seeds. The median fixed size is rank ceil(k/2) of the k "
        "fixed sizes ranked by mean final validation loss (sizes that diverged last); the best "
        "is rank 1. A diverged run scores one below the worst finished run of its task (at most "
        "-1). IQM: interquartile mean of all runs pooled over tasks. P(better than upper "
        "reference): probability that a run beats a run of the task's upper reference (ties "
        "½), averaged over tasks. The last columns are the performance profile: the fraction of "
        "runs above each score, averaged over tasks. 95% CIs: stratified bootstrap over runs "
        f"within tasks, percentile method, {report.BOOTSTRAP_RESAMPLES:,} resamples (rliable's "
        "definitions; Agarwal et al., NeurIPS 2021).",
    ]
    return lines


def _per_task_scores(
    results: list[dict[str, Any]], scores: SuiteScores, rows: list[dict[str, Any]]
) -> list[str]:
    lines = ["", "## Normalised score per task (mean over seeds)", ""]
    tasks = scores.tasks
    lines.append("| controller | " + " | ".join(tasks) + " |")
    lines.append("|---|" + "|".join(["---:"] * len(tasks)) + "|")
    for label, per_task in scores.scores.items():
        lines.append(
            f"| {label} | " + " | ".join(f"{float(np.mean(s)):.2f}" for s in per_task) + " |"
        )
    lines += ["", "| task | 0 = median fixed | 1 = upper reference |", "|---|---|---|"]
    lines += [f"| {t} | {scores.lower[t]} | {scores.upper[t]} |" for t in tasks]
    means = {
        (r["task"], r["controller"]): float(r.get(f"{SCORE_METRIC}_mean", math.nan)) for r in rows
    }
    for task in tasks:
        oracle = means.get((task, ORACLE_LABEL))
        if oracle is None or not math.isfinite(oracle):
            continue
        better = [
            r["controller"]
            for r in rows
            if r["task"] == task
            and r["kind"] == "fixed"
            and means[(task, r["controller"])] > oracle
        ]
        if better:
            lines.append(
                f"\n**The oracle loses to a fixed size on {task}:** {', '.join(better)} "
                f"{'has' if len(better) == 1 else 'have'} a higher mean test accuracy than "
                "oracle-greedy (it selects on validation loss, one interval ahead)."
            )
    return lines


def _schedule_section(scores: SuiteScores, kinds: dict[str, str], resamples: int) -> list[str]:
    """On the tasks with a cosine schedule: seesaw and batch-ramp against the fixed sizes."""
    cosine = [i for i, t in enumerate(scores.tasks) if t.endswith("@cosine")]
    if not cosine:
        return []
    subset = SuiteScores(
        [scores.tasks[i] for i in cosine],
        {label: [per_task[i] for i in cosine] for label, per_task in scores.scores.items()},
        {scores.tasks[i]: scores.lower[scores.tasks[i]] for i in cosine},
        {scores.tasks[i]: scores.upper[scores.tasks[i]] for i in cosine},
    )
    best_fixed = max(
        (label for label in subset.scores if kinds.get(label) == "fixed"),
        key=lambda label: report.iqm(subset.scores[label]),
        default=None,
    )
    lines = [
        "",
        "## On the tasks with a cosine schedule",
        "",
        f"Tasks: {', '.join(subset.tasks)}. Pooled over these tasks only; 'P(better than fixed)' "
        f"compares each run with the runs of the fixed size of highest IQM here "
        f"({best_fixed}), per task, with the same bootstrap.",
        "",
        "| controller | IQM normalised test accuracy [95% CI] | P(better than fixed) [95% CI] |",
        "|---|---:|---:|",
    ]
    for label in (
        "seesaw",
        "batch-ramp",
        *(label for label in subset.scores if kinds.get(label) == "fixed"),
    ):
        if label not in subset.scores:
            continue
        per_task = subset.scores[label]
        iqm = report.iqm_interval(per_task, resamples, report.BOOTSTRAP_SEED)
        versus = (
            _interval(report.improvement_interval(per_task, subset.scores[best_fixed], resamples))
            if best_fixed is not None
            else "–"
        )
        lines.append(f"| {label} | {_interval(iqm)} | {versus} |")
    return lines


def _cost_table(results: list[dict[str, Any]], scores: SuiteScores) -> list[str]:
    targets = task_targets(results, scores.lower)
    lines = [
        "",
        "## Cost to the target accuracy",
        "",
        "Target of each task: the mean final validation accuracy of its median fixed size. "
        "Inner updates, samples and seconds until a run's validation accuracy first reaches it "
        "(checked at interval ends), mean over the runs that reached it (reached/runs).",
        "",
        "| task | target | controller | reached | inner updates | samples | seconds |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for task, target in targets.items():
        labels = dict.fromkeys(r["label"] for r in results if r["task"] == task)
        for label in labels:
            runs = [
                r
                for r in results
                if r["task"] == task and r["label"] == label and r.get("status") == "ok"
            ]
            costs = [cost_to_target(r, target) for r in runs]
            reached = [c for c in costs if math.isfinite(c["updates"])]
            means = {
                key: (
                    f"{np.mean([c[key] for c in reached]):.{0 if key != 'seconds' else 2}f}"
                    if reached
                    else "–"
                )
                for key in ("updates", "samples", "seconds")
            }
            lines.append(
                f"| {task} | {target:.3f} | {label} | {len(reached)}/{len(runs)} | "
                f"{means['updates']} | {means['samples']} | {means['seconds']} |"
            )
    return lines


# --- command line ---------------------------------------------------------------------------------


def add_benchmark_subcommand(subparsers: Any) -> None:
    """Adds ``benchmark`` to an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "benchmark",
        help="run the standard suite and write the leaderboard",
        description="Runs configs/experiments/benchmark.yaml (every baseline, the fixed ladder "
        "and the oracle on the suite's tasks and seeds) and writes the leaderboard. An existing "
        "--run-dir resumes.",
    )
    parser.add_argument("--config", default="configs/experiments/benchmark.yaml")
    parser.add_argument("--full", action="store_true", help="5 seeds and every family instance.")
    parser.add_argument("--engine", choices=["local", "ray"], default=None)
    parser.add_argument("--ray-address", default=None, help="Join this Ray cluster.")
    parser.add_argument("--run-dir", default=None, help="Run folder (resumes if it exists).")
    parser.add_argument("--leaderboard", default=None, help="Markdown output (default: config's).")
    parser.add_argument("--max-workers", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.set_defaults(func=benchmark_command, handler=benchmark_command)


def benchmark_command(args: Any) -> int:
    """``arbiter benchmark``: 0 when every run succeeded, 1 when some failed, 2 on a bad config."""
    import shlex
    import sys

    overrides = list(args.overrides or [])
    if args.max_workers is not None:
        overrides.append(f"engine.max_workers={args.max_workers}")
    command = (
        shlex.join(["arbiter", "benchmark", *sys.argv[2:]])
        if len(sys.argv) > 1
        else "arbiter benchmark"
    )
    try:
        config = load_benchmark(args.config, overrides)
        if args.engine is not None:
            config = dataclasses.replace(
                config, engine=dataclasses.replace(config.engine, name=args.engine)
            )
        result = run_benchmark(
            config,
            full=args.full,
            engine=args.engine,
            ray_address=args.ray_address,
            run_dir=args.run_dir,
            leaderboard=args.leaderboard,
            command=command,
            progress=not args.no_progress,
        )
    except (ConfigError, FileNotFoundError) as error:
        print(f"arbiter benchmark: error: {error}", file=sys.stderr)
        return 2
    print(result.markdown)
    print(
        f"{result.runs} runs, {result.failed} failed, {result.wall_time / 60:.1f} min. "
        f"Leaderboard: {result.leaderboard}; runs: {result.run_dir}"
    )
    return 1 if result.failed else 0
