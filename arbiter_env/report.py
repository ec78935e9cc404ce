"""The numbers of a comparison's report: tables, reliable aggregates and strict JSON.

Pure functions of result records (the dicts of ``runs/TASK/LABEL/seed-S/result.json``), so that
every number in a report can be tested without running anything.

Per task and controller (:func:`summarize`, :func:`markdown_table`):

* mean ± standard error over the seeds that finished (``s.e. = std(ddof=1)/√n``; the seed count
  is in the table), for the final validation loss, test accuracy, sample-weighted mean batch
  size, samples, inner updates and wall time;
* diverged runs counted and shown (their losses are not finite, so they are left out of the
  means and counted instead);
* the **best fixed size in hindsight** marked: among the controllers registered as ``fixed``, the
  one with the highest mean *score* on that task (see below). It is an oracle: it was chosen after
  seeing the evaluation seeds, so it is an upper bound for any single static choice.

Across tasks and seeds (:func:`aggregate`), the aggregates of Agarwal et al., "Deep
Reinforcement Learning at the Edge of the Statistical Precipice" (NeurIPS 2021), defined as the
``rliable`` library defines them and computed here with numpy:

* **IQM**: the interquartile mean of all runs' scores pooled over tasks (``scipy.stats.trim_mean``
  with 25 % cut at each end, as ``rliable.metrics.aggregate_iqm``);
* **probability of improvement** P(X > Y) over the best fixed size Y of each task: the
  Mann–Whitney U statistic divided by ``n_x·n_y`` (ties count one half), averaged over tasks, as
  ``rliable.metrics.probability_of_improvement``;
* **95 % confidence intervals** by the stratified bootstrap (runs resampled with replacement
  within each task; for P(X > Y) X's and Y's runs are resampled independently), percentile
  method, as ``rliable.library.get_interval_estimates``; 2,000 resamples from a fixed seed by
  default (rliable's default is 50,000), so a rebuilt report gives the same numbers;
* the **performance profile** (run-score distribution): for each threshold τ, the fraction of
  runs whose score exceeds τ, averaged over tasks, with pointwise bootstrap bands, as
  ``rliable.metrics``' ``create_performance_profile``.

rliable itself is not a dependency: it pins ``arch`` and pulls statsmodels, pandas and seaborn
into the environment for a few lines of arithmetic. ``tests/test_report.py`` checks these
functions against rliable's formulas on known inputs.

The **score** of a run is its final test accuracy; a diverged run (no finite accuracy) scores 0,
the worst possible, so diverging can never look better than finishing. Failed runs (an error, no
episode) have no score and are counted as failures instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SCORE_METRIC = "test_accuracy"
"""The result key used as a run's score (higher is better)."""

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95

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


def controller_kind(registered: str) -> str:
    """The kind of a registered controller name (``fixed``, ``schedule``, ..., or ``other``).

    Each controller's registry entry says its kind; a name that is not registered (a user's
    controller whose module is not imported here) is of kind ``"other"``.
    """
    from arbiter_env.controllers import controller_kind as registered_kind

    return registered_kind(registered)


# --- strict JSON --------------------------------------------------------------------------------


def strict_json_value(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` and numpy scalars made plain.

    JSON has no NaN or infinity; ``json.dumps`` writes bare ``NaN`` unless told not to, which
    most JSON readers reject. Objects JSON cannot hold become their ``str``.
    """
    if isinstance(value, dict):
        return {str(k): strict_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json_value(v) for v in value]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """JSON text of ``value`` that any JSON reader accepts (``null`` for non-finite numbers)."""
    return json.dumps(strict_json_value(value), allow_nan=False, **kwargs)


# --- per task and controller --------------------------------------------------------------------


def mean_sem(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, standard error of the mean and count of the finite ``values``.

    The standard error is ``std(ddof=1)/√n``; NaN for fewer than two values (one seed says
    nothing about the spread). Mean is NaN when there is no finite value.
    """
    array = np.asarray([_number(v) for v in values], dtype=float)
    finite = array[np.isfinite(array)]
    n = len(finite)
    if n == 0:
        return math.nan, math.nan, 0
    sem = float(np.std(finite, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return float(np.mean(finite)), sem, n


def run_score(result: dict[str, Any]) -> float | None:
    """The score of one run (see the module docstring); ``None`` for a failed run."""
    if result.get("status") != "ok":
        return None
    value = _number(result.get(SCORE_METRIC))
    if bool(result.get("diverged")) or not math.isfinite(value):
        return 0.0
    return value


def summarize(
    results: list[dict[str, Any]], target_accuracy: float | None = None
) -> list[dict[str, Any]]:
    """One row per (task, controller): counts, and mean/std/s.e./n of each metric over seeds.

    Means are over the successful runs that did not diverge, and only their finite values;
    the time-to-target metrics are over the runs that reached the target (``target_reached``).
    ``score_mean`` is the mean :func:`run_score`; ``best_fixed`` marks the best fixed size in
    hindsight of each task (:func:`best_fixed_labels`).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["task"], result["label"]), []).append(result)
    with_hypergradient = any(
        math.isfinite(_number(r.get("hypergradient_var")))
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
            values = [_number(r.get(key)) for r in finished]
            mean, sem, n = mean_sem(values)
            finite = [v for v in values if math.isfinite(v)]
            row[f"{key}_mean"] = mean
            row[f"{key}_std"] = float(np.std(finite, ddof=1)) if n > 1 else math.nan
            row[f"{key}_sem"] = sem
            row[f"{key}_n"] = n
            if key == "samples_to_target":
                row["target_reached"] = n
        scores = [s for s in (run_score(r) for r in ok) if s is not None]
        row["score_mean"] = float(np.mean(scores)) if scores else math.nan
        row["errors"] = "; ".join(f"seed {r['seed']}: {r.get('error')}" for r in failed)
        rows.append(row)
    best = best_fixed_labels(rows)
    for row in rows:
        row["best_fixed"] = best.get(row["task"]) == row["controller"]
    return rows


def best_fixed_labels(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Task -> label of its best fixed size in hindsight (highest mean score; ties: first).

    Only controllers registered as ``fixed`` with at least one successful run count; a task
    without any has no entry.
    """
    best: dict[str, tuple[float, str]] = {}
    for row in rows:
        if row.get("kind") != "fixed" or not row.get("ok"):
            continue
        score = _number(row.get("score_mean"))
        if not math.isfinite(score):
            continue
        task = row["task"]
        if task not in best or score > best[task][0]:
            best[task] = (score, row["controller"])
    return {task: label for task, (_, label) in best.items()}


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
    aggregates: list[dict[str, Any]] | None = None,
) -> str:
    """The summary as Markdown: one table per task, then the aggregates across tasks, if given.

    Columns: controller (``**label** ★`` for the best fixed size in hindsight), runs
    (successful/all), diverged (count), then ``mean ± s.e.`` of each metric.
    """
    if not rows:
        return "No results.\n"
    metrics = [
        m for m in (*METRICS, *TARGET_METRICS, HYPERGRADIENT_METRIC) if f"{m[0]}_mean" in rows[0]
    ]
    lines = [f"# {title}", ""] if title else []
    for task in dict.fromkeys(r["task"] for r in rows):
        lines += [f"## {task}", ""]
        header = ["controller", "runs", "diverged", *[m[1] for m in metrics]]
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
        "★ marks the best fixed size in hindsight: the fixed size with the highest mean test "
        "accuracy on these seeds (a diverged run counts as 0), chosen after seeing them. Mean "
        "batch size is sample-weighted; samples and inner updates are totals over the episode; "
        "wall time is the evaluation episode's (training of trained controllers not included)."
    )
    if target_accuracy is not None:
        lines.append(
            f"Time to target: first interval end with validation accuracy ≥ {target_accuracy:g}, "
            "averaged over the runs that reached it (reached/successful runs in parentheses)."
        )
    if aggregates:
        lines += ["", aggregates_markdown(aggregates).rstrip("\n")]
    return "\n".join(lines) + "\n"


# --- across tasks and seeds ---------------------------------------------------------------------


def iqm(scores: Sequence[np.ndarray]) -> float:
    """Interquartile mean of the scores of all tasks pooled (25 % trimmed at each end)."""
    from scipy.stats import trim_mean

    pooled = np.concatenate([np.asarray(s, dtype=float) for s in scores])
    return float(trim_mean(pooled, proportiontocut=0.25))


def probability_of_improvement(x: Sequence[np.ndarray], y: Sequence[np.ndarray]) -> float:
    """P(X > Y): per task the fraction of run pairs where X beats Y (ties ½), mean over tasks."""
    per_task = [_pairwise_win_rate(np.asarray(a), np.asarray(b)) for a, b in zip(x, y, strict=True)]
    return float(np.mean(np.asarray(per_task, dtype=float)))


def _pairwise_win_rate(x: np.ndarray, y: np.ndarray) -> np.ndarray | float:
    # The last two axes are the runs of X and of Y; leading axes (bootstrap resamples) are kept.
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    ties = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * ties


def performance_profile(scores: Sequence[np.ndarray], taus: np.ndarray) -> np.ndarray:
    """Fraction of runs with score > τ for each τ, averaged over tasks (equal task weights)."""
    taus = np.asarray(taus, dtype=float)
    return np.mean([(np.asarray(s)[:, None] > taus[None, :]).mean(axis=0) for s in scores], axis=0)


def stratified_bootstrap(
    scores: Sequence[np.ndarray],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int | np.random.Generator = BOOTSTRAP_SEED,
) -> list[np.ndarray]:
    """Stratified bootstrap resamples: per task, ``(resamples, n_task)`` runs drawn with replacement.

    Tasks are the strata: each resample keeps every task's run count, as rliable's
    ``StratifiedBootstrap``.
    """
    rng = np.random.default_rng(seed)
    out = []
    for task_scores in scores:
        task_scores = np.asarray(task_scores, dtype=float)
        index = rng.integers(0, len(task_scores), size=(resamples, len(task_scores)))
        out.append(task_scores[index])
    return out


def percentile_interval(
    estimates: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval over the first axis of ``estimates``."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail], axis=0)
    return low, high


def iqm_interval(
    scores: Sequence[np.ndarray],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """IQM and its stratified-bootstrap percentile interval: ``(iqm, low, high)``."""
    from scipy.stats import trim_mean

    samples = np.concatenate(stratified_bootstrap(scores, resamples, seed), axis=1)
    estimates = trim_mean(samples, proportiontocut=0.25, axis=1)
    low, high = percentile_interval(estimates, confidence)
    return iqm(scores), float(low), float(high)


def improvement_interval(
    x: Sequence[np.ndarray],
    y: Sequence[np.ndarray],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """P(X > Y) and its interval; X's and Y's runs are resampled independently within tasks."""
    rng = np.random.default_rng(seed)
    x_samples = stratified_bootstrap(x, resamples, rng)
    y_samples = stratified_bootstrap(y, resamples, rng)
    per_task = [_pairwise_win_rate(a, b) for a, b in zip(x_samples, y_samples, strict=True)]
    estimates = np.mean(np.stack([np.asarray(p, dtype=float) for p in per_task]), axis=0)
    low, high = percentile_interval(estimates, confidence)
    return probability_of_improvement(x, y), float(low), float(high)


def profile_interval(
    scores: Sequence[np.ndarray],
    taus: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The performance profile at ``taus`` and its pointwise bootstrap band."""
    taus = np.asarray(taus, dtype=float)
    samples = stratified_bootstrap(scores, resamples, seed)
    per_task = [(s[:, :, None] > taus[None, None, :]).mean(axis=1) for s in samples]
    low, high = percentile_interval(np.mean(per_task, axis=0), confidence)
    return performance_profile(scores, taus), low, high


@dataclass(frozen=True)
class ScoreTable:
    """Scores of every controller, per task: what the aggregates are computed from."""

    tasks: list[str]
    scores: dict[str, list[np.ndarray]]
    """Label -> one array of run scores per task (in ``tasks`` order)."""
    kinds: dict[str, str]
    reference: list[np.ndarray] | None
    """Per task, the scores of its best fixed size in hindsight; ``None`` if a task has none."""
    reference_labels: dict[str, str]
    left_out: list[str]
    """Labels without a successful run on every task (not comparable across tasks)."""


def score_table(results: list[dict[str, Any]]) -> ScoreTable:
    """Collects run scores per controller and task, and the best fixed size of each task."""
    tasks = list(dict.fromkeys(r["task"] for r in results))
    labels = list(dict.fromkeys(r["label"] for r in results))
    collected: dict[str, dict[str, list[float]]] = {label: {} for label in labels}
    kinds: dict[str, str] = {}
    for result in results:
        kinds.setdefault(result["label"], controller_kind(str(result.get("controller", ""))))
        score = run_score(result)
        if score is not None:
            collected[result["label"]].setdefault(result["task"], []).append(score)
    complete = {
        label: [np.asarray(per_task[t], dtype=float) for t in tasks]
        for label, per_task in collected.items()
        if all(per_task.get(t) for t in tasks)
    }
    best = best_fixed_labels(summarize(results))
    reference = None
    if all(t in best for t in tasks):
        reference = [np.asarray(collected[best[t]][t], dtype=float) for t in tasks]
    left_out = [label for label in labels if label not in complete]
    return ScoreTable(tasks, complete, kinds, reference, best, left_out)


def aggregate(
    results: list[dict[str, Any]],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> list[dict[str, Any]]:
    """One row per controller: IQM and P(improvement over the best fixed size), with 95 % CIs.

    Rows have ``controller, kind, tasks, runs, iqm, iqm_low, iqm_high`` and, when every task
    has a fixed size, ``p_improvement, p_improvement_low, p_improvement_high``. Controllers
    without a successful run on every task are left out.
    """
    table = score_table(results)
    rows = []
    for label, scores in table.scores.items():
        value, low, high = iqm_interval(scores, resamples, seed)
        row: dict[str, Any] = {
            "controller": label,
            "kind": table.kinds[label],
            "tasks": len(table.tasks),
            "runs": int(sum(len(s) for s in scores)),
            "iqm": value,
            "iqm_low": low,
            "iqm_high": high,
        }
        if table.reference is not None:
            p, p_low, p_high = improvement_interval(scores, table.reference, resamples, seed)
            row |= {"p_improvement": p, "p_improvement_low": p_low, "p_improvement_high": p_high}
        rows.append(row)
    return rows


def aggregates_markdown(rows: list[dict[str, Any]]) -> str:
    """The aggregates as a Markdown section."""
    if not rows:
        return ""
    with_poi = "p_improvement" in rows[0]
    lines = ["## Across tasks and seeds", ""]
    header = ["controller", "kind", "runs", "IQM test accuracy [95% CI]"]
    if with_poi:
        header.append("P(improvement over best fixed) [95% CI]")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---|---|" + "|".join(["---:"] * (len(header) - 2)) + "|")
    for row in rows:
        cells = [
            row["controller"],
            row["kind"],
            f"{row['runs']} ({row['tasks']} task{'s' if row['tasks'] != 1 else ''})",
            f"{row['iqm']:.4f} [{row['iqm_low']:.4f}, {row['iqm_high']:.4f}]",
        ]
        if with_poi:
            cells.append(
                f"{row['p_improvement']:.2f} "
                f"[{row['p_improvement_low']:.2f}, {row['p_improvement_high']:.2f}]"
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Score: final test accuracy (a diverged run scores 0). IQM: interquartile mean of all "
        "runs pooled over tasks. P(improvement): probability that a run of the controller beats "
        "a run of the task's best fixed size in hindsight (ties count ½), averaged over tasks; "
        "0.5 means no difference. 95% CIs: stratified bootstrap over runs within tasks, "
        f"percentile method, {BOOTSTRAP_RESAMPLES:,} resamples (definitions of the rliable "
        "library; Agarwal et al., NeurIPS 2021). With few seeds the intervals are wide.",
    ]
    return "\n".join(lines) + "\n"


def _number(value: Any) -> float:
    if value is None or isinstance(value, str):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


__all__ = [
    "METRICS",
    "SCORE_METRIC",
    "ScoreTable",
    "aggregate",
    "aggregates_markdown",
    "best_fixed_labels",
    "controller_kind",
    "dumps_strict",
    "format_mean_sem",
    "improvement_interval",
    "iqm",
    "iqm_interval",
    "markdown_table",
    "mean_sem",
    "performance_profile",
    "probability_of_improvement",
    "profile_interval",
    "run_score",
    "score_table",
    "stratified_bootstrap",
    "strict_json_value",
    "summarize",
]
