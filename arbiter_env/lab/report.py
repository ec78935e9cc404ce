"""The numbers of a comparison's report per task: tables and the fixed-size ranking.

Pure functions of result records (the dicts of ``runs/TASK/LABEL/seed-S/result.json``), so that
every number in a report can be tested without running anything.

Per task and controller (:func:`summarize`, :func:`markdown_table`):

* mean ± standard error over the seeds that finished (``s.e. = std(ddof=1)/√n``; the seed count
  is in the table), for the final validation loss, test accuracy, sample-weighted mean batch
  size, samples, inner updates and wall time;
* diverged runs counted and shown (their losses are not finite, so they are left out of the
  means and counted instead);
* the **best fixed size in hindsight** marked: rank 1 of :func:`rank_fixed_sizes` (the fixed
  sizes ranked by mean final validation loss, sizes that diverged last). It is an oracle: it
  was chosen after seeing the evaluation seeds, so it is an upper bound for any single static
  choice. :func:`median_fixed_size` is rank ``ceil(k/2)`` of the same ranking.

Across tasks, scores are normalised per task (0 = median fixed size, 1 = best fixed size or the
oracle) before anything is pooled: :mod:`arbiter_env.lab.aggregates`, with the statistics of
:mod:`arbiter_env.lab.rliable_stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from arbiter_env.controllers import controller_kind

SCORE_METRIC = "test_accuracy"
"""The result key of the main score: the profile's and the ``iqm``/``p_improvement`` columns'."""

# (result key, column, format)
METRICS: tuple[tuple[str, str, str], ...] = (
    ("final_val_loss", "final val loss", "{:.4f}"),
    ("test_accuracy", "test accuracy", "{:.4f}"),
    ("mean_batch_size", "mean batch size", "{:.1f}"),
    ("samples", "samples", "{:.0f}"),
    ("updates", "inner updates", "{:.0f}"),
    ("wall_time", "wall time (s)", "{:.2f}"),
)
TARGET_METRICS: tuple[tuple[str, str, str], ...] = (
    ("samples_to_target", "samples to target", "{:.0f}"),
    ("seconds_to_target", "seconds to target", "{:.2f}"),
)
HYPERGRADIENT_METRIC = ("hypergradient_var", "lr hypergradient variance", "{:.3g}")


# --- per task and controller --------------------------------------------------------------------


def mean_sem(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, standard error of the mean and count of the finite ``values``.

    The standard error is ``std(ddof=1)/√n``; NaN for fewer than two values (one seed says
    nothing about the spread). Mean is NaN when there is no finite value.
    """
    array = np.asarray([as_number(v) for v in values], dtype=float)
    finite = array[np.isfinite(array)]
    n = len(finite)
    if n == 0:
        return math.nan, math.nan, 0
    sem = float(np.std(finite, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return float(np.mean(finite)), sem, n


def summarize(
    results: list[dict[str, Any]], target_accuracy: float | None = None
) -> list[dict[str, Any]]:
    """One row per (task, controller): counts, and mean/std/s.e./n of each metric over seeds.

    Means are over the successful runs that did not diverge, and only their finite values;
    the time-to-target metrics are over the runs that reached the target (``target_reached``).
    ``best_fixed`` marks the best fixed size in hindsight of each task
    (:func:`best_fixed_labels`).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["task"], result["label"]), []).append(result)
    with_hypergradient = any(
        math.isfinite(as_number(r.get("hypergradient_var")))
        for r in results
        if r.get("status") == "ok"
    )
    metrics = list(METRICS)
    if target_accuracy is not None:
        metrics += list(TARGET_METRICS)
    if with_hypergradient:
        metrics.append(HYPERGRADIENT_METRIC)
    rows = []
    for (task, label), group in groups.items():
        ok = [r for r in group if r.get("status") == "ok"]
        failed = [r for r in group if r.get("status") != "ok"]
        registered = str(group[0].get("controller", ""))
        row: dict[str, Any] = {
            "task": task,
            "controller": label,
            "registered": registered,
            "kind": controller_kind(registered),
            "seeds": len(group),
            "ok": len(ok),
            "failed": len(failed),
            "diverged": sum(bool(r.get("diverged")) for r in ok),
        }
        finished = [r for r in ok if not r.get("diverged")]
        for key, _, _ in metrics:
            values = [as_number(r.get(key)) for r in finished]
            mean, sem, n = mean_sem(values)
            finite = [v for v in values if math.isfinite(v)]
            row[f"{key}_mean"] = mean
            row[f"{key}_std"] = float(np.std(finite, ddof=1)) if n > 1 else math.nan
            row[f"{key}_sem"] = sem
            row[f"{key}_n"] = n
            if key == "samples_to_target":
                row["target_reached"] = n
        row["errors"] = "; ".join(f"seed {r['seed']}: {r.get('error')}" for r in failed)
        rows.append(row)
    best = best_fixed_labels(rows)
    for row in rows:
        row["best_fixed"] = best.get(row["task"]) == row["controller"]
    return rows


def rank_fixed_sizes(rows: list[dict[str, Any]], task: str) -> list[str]:
    """The fixed sizes of ``task`` ranked best first: the project's one ranking of a ladder.

    ``rows`` are :func:`summarize` rows. Only controllers registered as ``fixed`` with at least
    one successful run count. They are ranked by the fraction of their runs that diverged
    (sizes that diverged rank after every size that always finished, whatever their losses),
    then by mean final validation loss over the runs that finished (lower is better), then by
    their order in the table. Validation loss, not test accuracy, so that the choice uses no
    test data.
    """
    candidates = [
        row for row in rows if row["task"] == task and row.get("kind") == "fixed" and row.get("ok")
    ]

    def key(item: tuple[int, dict[str, Any]]) -> tuple[float, float, int]:
        index, row = item
        loss = as_number(row.get("final_val_loss_mean"))
        return (row["diverged"] / row["ok"], loss if math.isfinite(loss) else math.inf, index)

    return [row["controller"] for _, row in sorted(enumerate(candidates), key=key)]


def median_fixed_size(rows: list[dict[str, Any]], task: str) -> str | None:
    """The median fixed size of ``task``: rank ``ceil(k/2)`` of :func:`rank_fixed_sizes`.

    With k ranked sizes, the one at 1-based rank ``ceil(k/2)`` (the 4th of 7, the 1st of 2);
    ``None`` when the task has no fixed size. It is the 0 of the normalised scores
    (:func:`task_normalisation`).
    """
    ranking = rank_fixed_sizes(rows, task)
    return ranking[math.ceil(len(ranking) / 2) - 1] if ranking else None


def best_fixed_labels(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Task -> label of its best fixed size in hindsight: rank 1 of :func:`rank_fixed_sizes`.

    A task without a fixed size that ran has no entry.
    """
    best = {}
    for task in dict.fromkeys(row["task"] for row in rows):
        ranking = rank_fixed_sizes(rows, task)
        if ranking:
            best[task] = ranking[0]
    return best


def format_mean_sem(mean: float, sem: float, fmt: str) -> str:
    """``mean ± s.e.`` in ``fmt``; ``mean`` alone when there is no s.e.; ``–`` for no value."""
    if not math.isfinite(mean):
        return "–"
    return f"{fmt.format(mean)} ± {fmt.format(sem)}" if math.isfinite(sem) else fmt.format(mean)


def _markdown_cells(row: dict[str, Any], metrics: list[tuple[str, str, str]]) -> list[str]:
    """One controller's row of a task's table."""
    label = row["controller"]
    if row.get("best_fixed"):
        label = f"**{label}** ★"
    cells = [label, f"{row['ok']}/{row['seeds']}", str(row["diverged"])]
    for key, _, fmt in metrics:
        cell = format_mean_sem(row[f"{key}_mean"], row[f"{key}_sem"], fmt)
        if key in ("samples_to_target", "seconds_to_target"):
            cell += f" ({row['target_reached']}/{row['ok']})"
        elif row[f"{key}_n"] < row["ok"] and math.isfinite(row[f"{key}_mean"]):
            cell += f" (n={row[f'{key}_n']})"
        cells.append(cell)
    return cells


def markdown_table(
    rows: list[dict[str, Any]],
    target_accuracy: float | None = None,
    title: str | None = None,
    aggregates_section: str = "",
) -> str:
    """The summary as Markdown: one table per task, then ``aggregates_section``, if given.

    Columns: controller (``**label** ★`` for the best fixed size in hindsight), runs
    (successful/all), diverged (count), then ``mean ± s.e.`` of each metric (the header says
    ``± s.e.``). ``aggregates_section``: the Markdown of the across-task numbers
    (:func:`arbiter_env.lab.aggregates.aggregates_markdown`).
    """
    if not rows:
        return "No results.\n"
    metrics = [
        m for m in (*METRICS, *TARGET_METRICS, HYPERGRADIENT_METRIC) if f"{m[0]}_mean" in rows[0]
    ]
    lines = [f"# {title}", ""] if title else []
    for task in dict.fromkeys(r["task"] for r in rows):
        lines += [f"## {task}", ""]
        header = ["controller", "runs", "diverged", *[f"{m[1]} (± s.e.)" for m in metrics]]
        if target_accuracy is not None:
            header = [h.replace("to target", f"to {target_accuracy:g} acc") for h in header]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for row in (r for r in rows if r["task"] == task):
            lines.append("| " + " | ".join(_markdown_cells(row, metrics)) + " |")
        lines.append("")
        failures = [r for r in rows if r["task"] == task and r["failed"]]
        if failures:
            lines.append("Failed runs:")
            lines += [f"- {r['controller']}: {r['errors']}" for r in failures]
            lines.append("")
    seeds = sorted({r["seeds"] for r in rows})
    lines.append(
        f"Mean ± standard error over seeds (n = {', '.join(map(str, seeds))} per controller; "
        "runs = successful/all). Diverged runs are counted in 'diverged' and left out of the "
        "means; a mean over fewer runs than succeeded shows its count as (n=...). "
        "★ marks the best fixed size in hindsight: the fixed size with the lowest mean final "
        "validation loss on these seeds among those that never diverged, chosen after seeing "
        "them. Mean "
        "batch size is sample-weighted; samples and inner updates are totals over the episode; "
        "wall time is the evaluation episode's (training of trained controllers not included)."
    )
    if target_accuracy is not None:
        lines.append(
            f"Time to target: first interval end with validation accuracy ≥ {target_accuracy:g}, "
            "averaged over the runs that reached it (reached/successful runs in parentheses)."
        )
    if aggregates_section:
        lines += ["", aggregates_section.rstrip("\n")]
    return "\n".join(lines) + "\n"


def as_number(value: Any) -> float:
    """``value`` as a float; NaN for ``None``, text or anything that is not a number."""
    if value is None or isinstance(value, str):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


__all__ = [
    "HYPERGRADIENT_METRIC",
    "METRICS",
    "SCORE_METRIC",
    "TARGET_METRICS",
    "as_number",
    "best_fixed_labels",
    "controller_kind",
    "format_mean_sem",
    "markdown_table",
    "mean_sem",
    "median_fixed_size",
    "rank_fixed_sizes",
    "summarize",
]
