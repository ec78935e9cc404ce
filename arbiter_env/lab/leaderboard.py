"""The benchmark's leaderboard: normalised scores, pooled statistics with CIs, costs, raw tables.

Written by ``arbiter benchmark`` (:mod:`arbiter_env.lab.experiments.benchmark`) from the results of
the suite's comparison:

* per task, normalised scores of test accuracy: 0 = the median fixed size, 1 = the oracle (the
  best fixed size where the oracle did not run), with a note wherever the oracle loses to a fixed
  size;
* pooled over tasks, IQM, probability of improvement over the upper reference and the
  performance profile, with stratified-bootstrap 95% CIs (:mod:`arbiter_env.lab.report`);
* on the tasks with a cosine schedule, the schedules (Seesaw, batch-ramp, ...) against the
  fixed sizes;
* costs to a target: inner updates, samples and seconds until the validation accuracy first
  reaches the task's target, the mean final validation accuracy of its median fixed size;
* the comparison's raw tables per task.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from arbiter_env.lab import report, rliable_stats

SCORE_METRIC = "test_accuracy"
PROFILE_TAUS = (0.0, 0.5, 1.0)
"""Scores at which the leaderboard reads the performance profile."""

# --- ADAPTER: normalised scores (swap for h21's arbiter_env.lab.report functions at merge) ------------
#
# The normalisation (0 = median fixed size, 1 = oracle or best fixed size) and the ranking of the
# fixed sizes belong to arbiter_env.lab.report. Where that module already has them (score_table with
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
        loss = _number(row.get("final_val_loss_mean"))
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
            r["controller"]: _number(r.get(f"{SCORE_METRIC}_mean"))
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
            value = _number(result.get(SCORE_METRIC))
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
            _number(r.get("final_val_accuracy"))
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
        if _number(row.get("val_accuracy")) >= target:
            return {
                "updates": _number(row.get("updates")),
                "samples": _number(row.get("episode_samples", row.get("samples"))),
                "seconds": _number(row.get("elapsed")),
            }
    return {"updates": math.nan, "samples": math.nan, "seconds": math.nan}


def pooled_rows(
    scores: SuiteScores,
    kinds: dict[str, str],
    resamples: int = rliable_stats.BOOTSTRAP_RESAMPLES,
    seed: int = rliable_stats.BOOTSTRAP_SEED,
) -> list[dict[str, Any]]:
    """Per controller: IQM, P(improvement over the upper reference), profile, with 95% CIs."""
    reference = _reference_scores(scores)
    taus = np.asarray(PROFILE_TAUS)
    rows = []
    for label, per_task in scores.scores.items():
        value, low, high = rliable_stats.iqm_interval(per_task, resamples, seed)
        row: dict[str, Any] = {
            "controller": label,
            "kind": kinds.get(label, "other"),
            "runs": int(sum(len(s) for s in per_task)),
            "iqm": (value, low, high),
        }
        if reference is not None:
            row["p_improvement"] = rliable_stats.improvement_interval(
                per_task, reference, resamples, seed
            )
        profile, p_low, p_high = rliable_stats.profile_interval(per_task, taus, resamples, seed)
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
    resamples: int = rliable_stats.BOOTSTRAP_RESAMPLES,
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
    lines += _per_task_scores(scores, rows)
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
        f"within tasks, percentile method, {rliable_stats.BOOTSTRAP_RESAMPLES:,} resamples (rliable's "
        "definitions; Agarwal et al., NeurIPS 2021).",
    ]
    return lines


def _per_task_scores(scores: SuiteScores, rows: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Normalised score per task (mean over seeds)", ""]
    tasks = scores.tasks
    lines.append("| controller | " + " | ".join(tasks) + " |")
    lines.append("|---|" + "|".join(["---:"] * len(tasks)) + "|")
    for label, per_task in scores.scores.items():
        lines.append(
            f"| {label} | " + " | ".join(f"{float(np.mean(s)):.2f}" for s in per_task) + " |"
        )
    lines += ["", "| task | 0 = median fixed | 1 = upper reference |", "|---|---|---|"]
    lines += [f"| {t} | {scores.lower.get(t, '–')} | {scores.upper.get(t, '–')} |" for t in tasks]
    means = {(r["task"], r["controller"]): _number(r.get(f"{SCORE_METRIC}_mean")) for r in rows}
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
    """The schedules (Seesaw, batch-ramp, ...) and fixed sizes on the cosine-schedule tasks."""
    cosine = [i for i, t in enumerate(scores.tasks) if t.endswith("@cosine")]
    if not cosine:
        return []
    subset = SuiteScores(
        [scores.tasks[i] for i in cosine],
        {label: [per_task[i] for i in cosine] for label, per_task in scores.scores.items()},
        {scores.tasks[i]: scores.lower.get(scores.tasks[i], "") for i in cosine},
        {scores.tasks[i]: scores.upper.get(scores.tasks[i], "") for i in cosine},
    )
    best_fixed = max(
        (label for label in subset.scores if kinds.get(label) == "fixed"),
        key=lambda label: rliable_stats.iqm(subset.scores[label]),
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
    shown = [label for label in subset.scores if kinds.get(label) in ("schedule", "fixed")]
    for label in sorted(shown, key=lambda label: kinds.get(label) == "fixed"):
        per_task = subset.scores[label]
        iqm = rliable_stats.iqm_interval(per_task, resamples, rliable_stats.BOOTSTRAP_SEED)
        versus = (
            _interval(
                rliable_stats.improvement_interval(per_task, subset.scores[best_fixed], resamples)
            )
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


def _number(value: Any) -> float:
    """A logged value as a float; NaN for a missing, null or non-numeric one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)
