"""Across tasks and seeds: scores normalised per task, then IQM, P(improvement) and profiles.

Raw numbers are never pooled across tasks. Each task's scores are first **normalised**
(:func:`task_normalisation`): 0 = the median fixed size (:func:`arbiter_env.lab.report.median_fixed_size`,
rank ``ceil(k/2)`` of the k ranked sizes), 1 = the upper reference (the best fixed size, or
:data:`ORACLE_LABEL` when it ran; a parameter), each by its mean over seeds; separately on test
accuracy and on final validation loss (higher is better on both scales). A diverged run scores
one below the worst finished run of its task, and at most -1 (:func:`run_scores`), so diverging
never scores as well as finishing. Then the statistics of :mod:`arbiter_env.lab.rliable_stats` (IQM,
probability of improvement over the upper reference, stratified-bootstrap CIs, performance
profile) are computed on the normalised scores (:func:`aggregate`).

A task whose scores cannot be normalised (no fixed size, two references with the same mean, or
a best size by validation loss that is worse on the metric than the median) keeps raw scores
when it is the comparison's only task, labelled so; several such tasks get no across-task
numbers, with the reason (:func:`aggregates_note`).

Pure functions of result records, like :mod:`arbiter_env.lab.report`, whose per-task summary rows
they use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from arbiter_env.lab.report import (
    SCORE_METRIC,
    as_number,
    median_fixed_size,
    rank_fixed_sizes,
    summarize,
)
from arbiter_env.lab.rliable_stats import BOOTSTRAP_RESAMPLES, improvement_interval, iqm_interval

ORACLE_LABEL = "oracle-greedy"
"""A controller of this name (its label or its registered name), when it ran on a task, is that
task's upper reference of the normalised scores instead of the best fixed size."""

NORMALISED_METRICS: tuple[tuple[str, str], ...] = (
    ("test_accuracy", "test accuracy"),
    ("final_val_loss", "final val loss"),
)
"""The result keys that get normalised scores (key, name in tables)."""

LOWER_IS_BETTER = {"final_val_loss": -1}
"""-1 for a metric where lower is better (others: higher is better)."""


class NormalisationError(ValueError):
    """A task's scores cannot be normalised (no fixed size, or the two references coincide)."""


@dataclass(frozen=True)
class Normalisation:
    """The affine map of one task and metric onto the normalised scale.

    ``lower`` (the median fixed size's mean) maps to 0 and ``upper`` (the best fixed size's or
    the oracle's mean) to 1, whatever the metric's direction: on validation loss, where lower
    is better, ``upper < lower`` and a loss below the best fixed size's scores above 1.
    """

    task: str
    metric: str
    lower_label: str
    upper_label: str
    lower: float
    upper: float

    def __call__(self, value: float | np.ndarray) -> float | np.ndarray:
        """The normalised score of a raw value (or of an array of them)."""
        return (np.asarray(value, dtype=float) - self.lower) / (self.upper - self.lower)


def upper_reference(rows: list[dict[str, Any]], task: str, upper: str | None = None) -> str | None:
    """The label whose mean is the normalised score 1 on ``task``.

    ``upper`` if given; else the controller labelled or registered as :data:`ORACLE_LABEL`
    when the task has a successful run of it; else the best fixed size (rank 1 of
    :func:`rank_fixed_sizes`).
    """
    if upper is not None:
        return upper
    for row in rows:
        oracle = ORACLE_LABEL in (row["controller"], row.get("registered"))
        if row["task"] == task and oracle and row["ok"]:
            return str(row["controller"])
    ranking = rank_fixed_sizes(rows, task)
    return ranking[0] if ranking else None


def task_normalisation(
    rows: list[dict[str, Any]], task: str, metric: str, upper: str | None = None
) -> Normalisation:
    """How ``metric`` of ``task`` is normalised: 0 = the median fixed size, 1 = the upper one.

    Args:
        rows: :func:`summarize` rows.
        task: The task.
        metric: A result key with a mean in the rows (``test_accuracy``, ``final_val_loss``).
        upper: The label of the upper reference; default :func:`upper_reference`.

    Raises:
        NormalisationError: The task has no fixed size, a reference has no finite mean, the
            two references have the same mean (one fixed size; the best is the median), or the
            upper one is worse on ``metric`` than the median (possible on test accuracy, since
            sizes are ranked by validation loss).
    """
    lower_label = median_fixed_size(rows, task)
    upper_label = upper_reference(rows, task, upper)
    if lower_label is None or upper_label is None:
        raise NormalisationError(f"{task}: no fixed size ran, so there is no reference")
    means = {r["controller"]: as_number(r.get(f"{metric}_mean")) for r in rows if r["task"] == task}
    lower, high = means.get(lower_label, math.nan), means.get(upper_label, math.nan)
    if not (math.isfinite(lower) and math.isfinite(high)):
        raise NormalisationError(
            f"{task}: a reference ({lower_label}, {upper_label}) never finished"
        )
    if lower == high:
        raise NormalisationError(
            f"{task}: the median fixed size {lower_label} and the upper reference {upper_label} "
            f"have the same mean {metric} (normalising needs two different references)"
        )
    if (high - lower) * LOWER_IS_BETTER.get(metric, 1) < 0:
        raise NormalisationError(
            f"{task}: the upper reference {upper_label} has a worse mean {metric} than the "
            f"median fixed size {lower_label} (the ranking is by validation loss), so 0 and 1 "
            "would swap"
        )
    return Normalisation(task, metric, lower_label, upper_label, lower, high)


@dataclass(frozen=True)
class ScoreTable:
    """Scores of every controller, per task: what the aggregates are computed from."""

    tasks: list[str]
    scores: dict[str, list[np.ndarray]]
    """Label -> one array of run scores per task (in ``tasks`` order)."""
    kinds: dict[str, str]
    reference: list[np.ndarray] | None
    """Per task, the scores of its upper reference; ``None`` if a task has none."""
    reference_labels: dict[str, str]
    """Task -> label of the upper reference (the best fixed size, or the oracle)."""
    left_out: list[str]
    """Labels without a successful run on every task (not comparable across tasks)."""
    metric: str = SCORE_METRIC
    normalised: bool = True
    """``True``: 0 = median fixed size, 1 = the upper reference, per task. ``False``: raw values
    (one task whose scores cannot be normalised; nothing is pooled across tasks then)."""
    note: str = ""
    """Why the scores are raw, or which tasks were left out and why, if any."""


def score_table(
    results: list[dict[str, Any]],
    metric: str = SCORE_METRIC,
    upper: str | None = None,
    leave_out_tasks: bool = False,
) -> ScoreTable:
    """Normalised run scores of ``metric`` per controller and task (see :func:`run_scores`).

    Every task is normalised (:func:`task_normalisation`) before anything is pooled. When some
    task cannot be, a single-task comparison keeps raw scores and a multi-task one has none
    (``note`` says why), or, with ``leave_out_tasks`` (the benchmark's choice), leaves those
    tasks out of ``tasks`` and names them in ``note``.
    """
    rows = summarize(results)
    tasks = list(dict.fromkeys(r["task"] for r in results))
    labels = list(dict.fromkeys(r["label"] for r in results))
    kinds = {r["controller"]: r["kind"] for r in rows}
    maps, problems = _normalisations(rows, tasks, metric, upper)
    note = f"left out of the pooled scores: {'; '.join(problems)}" if problems else ""
    if problems and leave_out_tasks and maps:
        tasks, problems = [task for task in tasks if task in maps], []
    normalised = not problems
    if problems:
        note = "; ".join(problems)
        if len(tasks) > 1:
            note = f"no across-task numbers: scores cannot be normalised ({note})"
            return ScoreTable(tasks, {}, kinds, None, {}, labels, metric, False, note)
        note = f"raw {metric.replace('_', ' ')}, not normalised ({note})"
    collected: dict[str, dict[str, np.ndarray]] = {label: {} for label in labels}
    for task in tasks:
        task_results = [r for r in results if r["task"] == task]
        scores = run_scores(task_results, metric, maps.get(task))
        for label, values in scores.items():
            if len(values):
                collected[label][task] = values
    complete = {
        label: [per_task[t] for t in tasks]
        for label, per_task in collected.items()
        if all(t in per_task for t in tasks)
    }
    references = {
        task: maps[task].upper_label if normalised else upper_reference(rows, task, upper)
        for task in tasks
    }
    reference = None
    if all(t in collected.get(str(references[t]), {}) for t in tasks):
        reference = [collected[str(references[t])][t] for t in tasks]
    left_out = [label for label in labels if label not in complete]
    return ScoreTable(
        tasks,
        complete,
        kinds,
        reference,
        {t: str(label) for t, label in references.items() if label is not None},
        left_out,
        metric,
        normalised,
        note,
    )


def _normalisations(
    rows: list[dict[str, Any]], tasks: list[str], metric: str, upper: str | None
) -> tuple[dict[str, Normalisation], list[str]]:
    """Task -> its normalisation, for the tasks that have one; why the others have none."""
    maps: dict[str, Normalisation] = {}
    problems = []
    for task in tasks:
        try:
            maps[task] = task_normalisation(rows, task, metric, upper)
        except NormalisationError as error:
            problems.append(str(error))
    return maps, problems


def run_scores(
    task_results: list[dict[str, Any]], metric: str, normalisation: Normalisation | None
) -> dict[str, np.ndarray]:
    """Label -> the scores of its successful runs on one task, in seed order.

    A finished run scores its normalised ``metric`` (its raw value when ``normalisation`` is
    ``None``). A diverged run, or one without a finite value, scores one below the worst
    finished run of the task and at most -1 (raw: 0 for accuracy, one above the worst loss),
    so that diverging never scores as well as finishing. Failed runs have no score.
    """
    higher_is_better = metric != "final_val_loss" or normalisation is not None
    scores: dict[str, list[float]] = {}
    finished: list[float] = []
    for result in task_results:
        if result.get("status") != "ok":
            continue
        value = as_number(result.get(metric))
        if bool(result.get("diverged")) or not math.isfinite(value):
            scores.setdefault(result["label"], []).append(math.nan)
            continue
        score = float(normalisation(value)) if normalisation is not None else value
        scores.setdefault(result["label"], []).append(score)
        finished.append(score)
    if normalisation is not None:
        floor = min([-1.0, *finished]) - 1.0
    elif metric == SCORE_METRIC:
        floor = 0.0
    else:
        floor = max(finished, default=0.0) + 1.0
    out = {}
    for label, values in scores.items():
        array = np.asarray(values, dtype=float)
        array[np.isnan(array)] = floor
        out[label] = array if higher_is_better else -array
    return out


def aggregate(
    results: list[dict[str, Any]], resamples: int = BOOTSTRAP_RESAMPLES, upper: str | None = None
) -> list[dict[str, Any]]:
    """One row per controller: IQM and P(improvement over the upper reference), with 95 % CIs.

    Computed on normalised scores (:func:`score_table`) of each of :data:`NORMALISED_METRICS`.
    Rows have ``controller, kind, tasks, runs`` and, per metric ``M`` (``test_accuracy``,
    ``final_val_loss``), ``M_normalised`` (``False``: raw values of a single task whose scores
    cannot be normalised), ``M_iqm, M_iqm_low, M_iqm_high`` and, when every
    task has an upper reference, ``M_p_improvement, M_p_improvement_low,
    M_p_improvement_high``; ``iqm``/``p_improvement`` (and their bounds) repeat the test
    accuracy's. ``reference`` names the upper reference. Controllers without a successful run
    on every task are left out; no rows when no metric can be compared across tasks.
    """
    tables = {metric: score_table(results, metric, upper) for metric, _ in NORMALISED_METRICS}
    labels = list(dict.fromkeys(label for t in tables.values() for label in t.scores))
    rows = []
    for label in labels:
        row: dict[str, Any] = {}
        for metric, table in tables.items():
            scores = table.scores.get(label)
            if scores is None:
                continue
            value, low, high = iqm_interval(scores, resamples)
            row |= {
                "controller": label,
                "kind": table.kinds.get(label, "other"),
                "tasks": len(table.tasks),
                "runs": int(sum(len(s) for s in scores)),
                f"{metric}_normalised": table.normalised,
                "reference": ", ".join(dict.fromkeys(table.reference_labels.values())),
                f"{metric}_iqm": value,
                f"{metric}_iqm_low": low,
                f"{metric}_iqm_high": high,
            }
            if table.reference is not None:
                p, p_low, p_high = improvement_interval(scores, table.reference, resamples)
                row |= {
                    f"{metric}_p_improvement": p,
                    f"{metric}_p_improvement_low": p_low,
                    f"{metric}_p_improvement_high": p_high,
                }
        prefix = f"{SCORE_METRIC}_"  # the main score's numbers also go under their short names
        row |= {key.removeprefix(prefix): v for key, v in row.items() if key.startswith(prefix)}
        rows.append(row)
    return rows


def aggregates_note(results: list[dict[str, Any]], upper: str | None = None) -> str:
    """Why across-task numbers are raw or missing, per metric (empty when all are normalised)."""
    notes = [score_table(results, metric, upper).note for metric, _ in NORMALISED_METRICS]
    return "; ".join(dict.fromkeys(note for note in notes if note))


def aggregates_markdown(rows: list[dict[str, Any]], note: str = "") -> str:
    """The aggregates as a Markdown section (``note``: why scores are raw or missing)."""
    if not rows:
        return f"## Across tasks and seeds\n\n{note[:1].upper()}{note[1:]}.\n" if note else ""
    metrics = [(m, name) for m, name in NORMALISED_METRICS if f"{m}_iqm" in rows[0]]
    with_poi = [(m, name) for m, name in metrics if f"{m}_p_improvement" in rows[0]]
    normalised = {m: all(row.get(f"{m}_normalised", True) for row in rows) for m, _ in metrics}
    reference = rows[0].get("reference") or "best fixed"
    lines = ["## Across tasks and seeds", ""]
    header = ["controller", "kind", "runs"]
    header += [
        f"IQM {'normalised ' if normalised[m] else ''}{name}{'' if normalised[m] else ' (raw)'} "
        "[95% CI]"
        for m, name in metrics
    ]
    header += [f"P(better {name} than upper reference) [95% CI]" for _, name in with_poi]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---|---|" + "|".join(["---:"] * (len(header) - 2)) + "|")
    lines += ["| " + " | ".join(_cells(row, metrics, with_poi, normalised)) + " |" for row in rows]
    lines.append("")
    if any(normalised.values()):
        lines.append(
            "Scores are normalised per task before pooling: 0 = the median fixed size, "
            f"1 = the upper reference ({reference}), each by its mean over seeds, separately on "
            "test accuracy and on final validation loss (higher is better on both scales; the "
            "per-task tables above stay in raw units). The median fixed size is rank ceil(k/2) "
            "of the k fixed sizes ranked by mean final validation loss, sizes that diverged "
            "last; the best fixed size is rank 1. A diverged run scores one below the worst "
            "finished run of its task (at most -1)."
        )
    if note:
        lines += ["", f"Raw scores: {note}. A diverged run scores 0 on raw accuracy."]
    lines += [
        "",
        "IQM: interquartile mean of all runs pooled over tasks. P(better than upper "
        "reference): probability that a run of the controller beats a run of the upper "
        "reference (ties count ½), averaged over tasks; 0.5 means no difference. 95% CIs: "
        "stratified bootstrap over runs within tasks, percentile method, "
        f"{BOOTSTRAP_RESAMPLES:,} resamples (definitions of the rliable library; Agarwal et al., "
        "NeurIPS 2021). With few seeds the intervals are wide.",
    ]
    return "\n".join(lines) + "\n"


def _cells(
    row: dict[str, Any],
    metrics: list[tuple[str, str]],
    with_poi: list[tuple[str, str]],
    normalised: dict[str, bool],
) -> list[str]:
    """One controller's row of the across-task table."""
    cells = [
        row["controller"],
        row["kind"],
        f"{row['runs']} ({row['tasks']} task{'s' if row['tasks'] != 1 else ''})",
    ]
    for metric, _ in metrics:
        if f"{metric}_iqm" not in row:
            cells.append("–")
            continue
        value, low, high = (row[f"{metric}_iqm{s}"] for s in ("", "_low", "_high"))
        number = "{:.3f}" if normalised[metric] else "{:.4f}"
        # Raw loss scores are negated (higher is better in every score): undo it here.
        sign = LOWER_IS_BETTER.get(metric, 1) if not normalised[metric] else 1
        low, high = sorted((sign * low, sign * high))
        cells.append(f"{number.format(sign * value)} [{number.format(low)}, {number.format(high)}]")
    for metric, _ in with_poi:
        if f"{metric}_p_improvement" not in row:
            cells.append("–")
            continue
        p, low, high = (row[f"{metric}_p_improvement{s}"] for s in ("", "_low", "_high"))
        cells.append(f"{p:.2f} [{low:.2f}, {high:.2f}]")
    return cells


__all__ = [
    "LOWER_IS_BETTER",
    "NORMALISED_METRICS",
    "ORACLE_LABEL",
    "Normalisation",
    "NormalisationError",
    "ScoreTable",
    "aggregate",
    "aggregates_markdown",
    "aggregates_note",
    "run_scores",
    "score_table",
    "task_normalisation",
    "upper_reference",
]
