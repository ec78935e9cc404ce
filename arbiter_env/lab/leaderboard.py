"""The benchmark's leaderboard: normalised scores, pooled statistics with CIs, costs, raw tables.

Written by ``arbiter benchmark`` (:mod:`arbiter_env.lab.experiments.benchmark`) from the results of
the suite's comparison:

* per task, normalised scores of test accuracy (:func:`arbiter_env.lab.aggregates.score_table`):
  0 = the median fixed size, 1 = the oracle (the best fixed size where the oracle did not run),
  with a note wherever the oracle loses to a fixed size; a task that cannot be normalised is
  left out of the pooled numbers and named;
* pooled over tasks, IQM, probability of improvement over the upper reference and the
  performance profile, with stratified-bootstrap 95% CIs (:mod:`arbiter_env.lab.rliable_stats`);
* on the tasks with a cosine schedule, the schedules (Seesaw, batch-ramp, ...) against the
  fixed sizes;
* costs to a target: inner updates, samples and seconds until the validation accuracy first
  reaches the task's target, the mean final validation accuracy of its median fixed size;
* the comparison's raw tables per task.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from arbiter_env.lab.aggregates import ORACLE_LABEL, ScoreTable, score_table
from arbiter_env.lab.report import (
    SCORE_METRIC,
    as_number,
    markdown_table,
    median_fixed_size,
    summarize,
)
from arbiter_env.lab.rliable_stats import (
    BOOTSTRAP_RESAMPLES,
    improvement_interval,
    iqm,
    iqm_interval,
    profile_interval,
)

PROFILE_TAUS = (0.0, 0.5, 1.0)
"""Scores at which the leaderboard reads the performance profile."""


def median_fixed_sizes(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Task -> its median fixed size (score 0), for every task of ``rows`` that has one."""
    tasks = dict.fromkeys(row["task"] for row in rows)
    medians = {task: median_fixed_size(rows, task) for task in tasks}
    return {task: label for task, label in medians.items() if label is not None}


def task_targets(results: list[dict[str, Any]], lower: dict[str, str]) -> dict[str, float]:
    """Task -> target validation accuracy: the median fixed size's mean final validation accuracy."""
    targets = {}
    for task, label in lower.items():
        values = [
            as_number(r.get("final_val_accuracy"))
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
        if as_number(row.get("val_accuracy")) >= target:
            return {
                "updates": as_number(row.get("updates")),
                "samples": as_number(row.get("episode_samples", row.get("samples"))),
                "seconds": as_number(row.get("elapsed")),
            }
    return {"updates": math.nan, "samples": math.nan, "seconds": math.nan}


def pooled_rows(table: ScoreTable, resamples: int = BOOTSTRAP_RESAMPLES) -> list[dict[str, Any]]:
    """Per controller, best IQM first: IQM, P(better than the upper reference), profile.

    Each a ``(value, low, high)`` triple with its stratified-bootstrap 95% CI
    (:mod:`arbiter_env.lab.rliable_stats`) of the normalised scores in ``table``;
    ``p_improvement`` only where every task's upper reference has scores.
    """
    rows = []
    for label, per_task in table.scores.items():
        row: dict[str, Any] = {
            "controller": label,
            "kind": table.kinds.get(label, "other"),
            "runs": int(sum(len(s) for s in per_task)),
            "iqm": iqm_interval(per_task, resamples),
        }
        if table.reference is not None:
            row["p_improvement"] = improvement_interval(per_task, table.reference, resamples)
        profile, low, high = profile_interval(per_task, np.asarray(PROFILE_TAUS), resamples)
        row["profile"] = list(zip(profile, low, high, strict=True))
        rows.append(row)
    rows.sort(key=lambda r: -r["iqm"][0])
    return rows


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
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> str:
    """The leaderboard: pooled scores, per-task normalised scores, costs, raw tables.

    Tasks whose scores cannot be normalised are left out of the pooled numbers and named.
    """
    table = score_table(results, SCORE_METRIC, leave_out_tasks=True)
    rows = summarize(results)
    lower = median_fixed_sizes(rows)
    lines = [f"# {title}", ""]
    if description:
        lines += [description.strip(), ""]
    lines += [f"- {line}" for line in provenance or []]
    lines += ["", *[f"**Note.** {note}" for note in notes or []]]
    if table.note:
        lines += ["", f"**{table.note[:1].upper()}{table.note[1:]}.**"]
    lines += ["", "## Leaderboard (pooled over tasks)", ""]
    lines += _pooled_table(pooled_rows(table, resamples), resamples)
    lines += _per_task_scores(table, rows, lower)
    lines += _schedule_section(table, resamples)
    lines += _cost_table(results, lower)
    lines += ["", "## Raw results per task", ""]
    lines.append(markdown_table(rows).rstrip("\n"))
    return "\n".join(lines) + "\n"


def _pooled_table(pooled: list[dict[str, Any]], resamples: int) -> list[str]:
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
        "Scores are normalised per task before pooling (arbiter_env.lab.aggregates): 0 = the "
        f"task's median fixed size, 1 = its upper reference ({ORACLE_LABEL} where it ran, else "
        "the best fixed size), each by its mean test accuracy over seeds. The median fixed size "
        "is rank ceil(k/2) of the k fixed sizes ranked by mean final validation loss (sizes that "
        "diverged last); the best is rank 1. A diverged run scores one below the worst finished "
        "run of its task (at most -1). IQM: interquartile mean of all runs pooled over tasks. "
        "P(better than upper reference): probability that a run beats a run of the task's upper "
        "reference (ties ½), averaged over tasks. The last columns are the performance profile: "
        "the fraction of runs above each score, averaged over tasks. 95% CIs: stratified "
        f"bootstrap over runs within tasks, percentile method, {resamples:,} resamples "
        "(rliable's definitions; Agarwal et al., NeurIPS 2021).",
    ]
    return lines


def _per_task_scores(
    table: ScoreTable, rows: list[dict[str, Any]], lower: dict[str, str]
) -> list[str]:
    lines = ["", "## Normalised score per task (mean over seeds)", ""]
    tasks = table.tasks
    lines.append("| controller | " + " | ".join(tasks) + " |")
    lines.append("|---|" + "|".join(["---:"] * len(tasks)) + "|")
    for label, per_task in table.scores.items():
        lines.append(
            f"| {label} | " + " | ".join(f"{float(np.mean(s)):.2f}" for s in per_task) + " |"
        )
    lines += ["", "| task | 0 = median fixed | 1 = upper reference |", "|---|---|---|"]
    lines += [
        f"| {t} | {lower.get(t, '–')} | {table.reference_labels.get(t, '–')} |" for t in tasks
    ]
    means = {(r["task"], r["controller"]): as_number(r.get(f"{SCORE_METRIC}_mean")) for r in rows}
    for task in dict.fromkeys(r["task"] for r in rows):
        oracle = next(
            (
                means[(task, r["controller"])]
                for r in rows
                if r["task"] == task and ORACLE_LABEL in (r["controller"], r["registered"])
            ),
            math.nan,
        )
        if not math.isfinite(oracle):
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
                f"{ORACLE_LABEL} (it selects on validation loss, one interval ahead)."
            )
    return lines


def _schedule_section(table: ScoreTable, resamples: int) -> list[str]:
    """The schedules (Seesaw, batch-ramp, ...) and fixed sizes on the cosine-schedule tasks."""
    cosine = [i for i, t in enumerate(table.tasks) if t.endswith("@cosine")]
    if not cosine:
        return []
    scores = {label: [per_task[i] for i in cosine] for label, per_task in table.scores.items()}
    kinds = table.kinds
    best_fixed = max(
        (label for label in scores if kinds.get(label) == "fixed"),
        key=lambda label: iqm(scores[label]),
        default=None,
    )
    lines = [
        "",
        "## On the tasks with a cosine schedule",
        "",
        f"Tasks: {', '.join(table.tasks[i] for i in cosine)}. Pooled over these tasks only; "
        "'P(better than fixed)' compares each run with the runs of the fixed size of highest "
        f"IQM here ({best_fixed}), per task, with the same bootstrap.",
        "",
        "| controller | IQM normalised test accuracy [95% CI] | P(better than fixed) [95% CI] |",
        "|---|---:|---:|",
    ]
    shown = [label for label in scores if kinds.get(label) in ("schedule", "fixed")]
    for label in sorted(shown, key=lambda label: kinds.get(label) == "fixed"):
        per_task = scores[label]
        versus = (
            _interval(improvement_interval(per_task, scores[best_fixed], resamples))
            if best_fixed is not None
            else "–"
        )
        lines.append(f"| {label} | {_interval(iqm_interval(per_task, resamples))} | {versus} |")
    return lines


def _cost_table(results: list[dict[str, Any]], lower: dict[str, str]) -> list[str]:
    targets = task_targets(results, lower)
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
