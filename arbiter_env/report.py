"""The numbers of a comparison's report: tables, reliable aggregates and strict JSON.

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
  choice.

Before anything is pooled across tasks, scores are **normalised per task**
(:func:`task_normalisation`): 0 = the median fixed size (:func:`median_fixed_size`, rank
``ceil(k/2)`` of the k ranked sizes), 1 = the upper reference (the best fixed size, or
:data:`ORACLE_LABEL` when it ran), each by its mean over seeds; separately on test accuracy
and on final validation loss (higher is better on both scales). A diverged run scores one
below the worst finished run of its task, and at most -1 (:func:`run_scores`), so diverging
never scores as well as finishing. Per-task tables stay in raw units.

Across tasks and seeds (:func:`aggregate`), the aggregates of Agarwal et al., "Deep
Reinforcement Learning at the Edge of the Statistical Precipice" (NeurIPS 2021), defined as the
``rliable`` library defines them and computed here with numpy:

* **IQM**: the interquartile mean of all runs' normalised scores pooled over tasks
  (``scipy.stats.trim_mean`` with 25 % cut at each end, as ``rliable.metrics.aggregate_iqm``);
* **probability of improvement** P(X > Y) over the upper reference Y of each task: the
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

A comparison with a single task whose scores cannot be normalised (no fixed size, or only
one) reports raw scores; several such tasks get no across-task numbers at all, with the reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SCORE_METRIC = "test_accuracy"
"""The result key of the main score: the profile's and the ``iqm``/``p_improvement`` columns'."""

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
        loss = _number(row.get("final_val_loss_mean"))
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
    aggregates: list[dict[str, Any]] | None = None,
    aggregates_note: str = "",
) -> str:
    """The summary as Markdown: one table per task, then the aggregates across tasks, if given.

    Columns: controller (``**label** ★`` for the best fixed size in hindsight), runs
    (successful/all), diverged (count), then ``mean ± s.e.`` of each metric (the header says
    ``± s.e.``). ``aggregates_note`` says why the aggregates are raw or missing.
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
    if aggregates or aggregates_note:
        lines += ["", aggregates_markdown(aggregates or [], aggregates_note).rstrip("\n")]
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


# --- normalised scores ---------------------------------------------------------------------------

ORACLE_LABEL = "oracle-greedy"
"""A controller of this name, when a comparison has it on every task, is the upper reference
of the normalised scores instead of the best fixed size."""

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

    ``upper`` if given; else :data:`ORACLE_LABEL` when the task has a successful run of it;
    else the best fixed size (rank 1 of :func:`rank_fixed_sizes`).
    """
    if upper is not None:
        return upper
    if any(r["task"] == task and r["controller"] == ORACLE_LABEL and r["ok"] for r in rows):
        return ORACLE_LABEL
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
    means = {r["controller"]: _number(r.get(f"{metric}_mean")) for r in rows if r["task"] == task}
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
    """Why the scores are raw, if they are."""


def score_table(
    results: list[dict[str, Any]], metric: str = SCORE_METRIC, upper: str | None = None
) -> ScoreTable:
    """Normalised run scores of ``metric`` per controller and task (see :func:`run_scores`).

    Every task is normalised (:func:`task_normalisation`) before anything is pooled. When some
    task cannot be, a single-task comparison keeps raw scores (nothing is pooled across tasks)
    and a multi-task one has no scores (``scores`` empty, ``note`` says why).
    """
    rows = summarize(results)
    tasks = list(dict.fromkeys(r["task"] for r in results))
    labels = list(dict.fromkeys(r["label"] for r in results))
    kinds = {r["controller"]: r["kind"] for r in rows}
    maps: dict[str, Normalisation] = {}
    problems = []
    for task in tasks:
        try:
            maps[task] = task_normalisation(rows, task, metric, upper)
        except NormalisationError as error:
            problems.append(str(error))
    normalised = not problems
    note = ""
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
        value = _number(result.get(metric))
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
    results: list[dict[str, Any]],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    upper: str | None = None,
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
            value, low, high = iqm_interval(scores, resamples, seed)
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
                p, p_low, p_high = improvement_interval(scores, table.reference, resamples, seed)
                row |= {
                    f"{metric}_p_improvement": p,
                    f"{metric}_p_improvement_low": p_low,
                    f"{metric}_p_improvement_high": p_high,
                }
        for key in (
            "normalised",
            "iqm",
            "iqm_low",
            "iqm_high",
            "p_improvement",
            "p_improvement_low",
            "p_improvement_high",
        ):
            if f"{SCORE_METRIC}_{key}" in row:
                row[key] = row[f"{SCORE_METRIC}_{key}"]
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
    for row in rows:
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
            cells.append(
                f"{number.format(sign * value)} [{number.format(low)}, {number.format(high)}]"
            )
        for metric, _ in with_poi:
            if f"{metric}_p_improvement" not in row:
                cells.append("–")
                continue
            p, low, high = (row[f"{metric}_p_improvement{s}"] for s in ("", "_low", "_high"))
            cells.append(f"{p:.2f} [{low:.2f}, {high:.2f}]")
        lines.append("| " + " | ".join(cells) + " |")
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


def _number(value: Any) -> float:
    if value is None or isinstance(value, str):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


__all__ = [
    "METRICS",
    "NORMALISED_METRICS",
    "ORACLE_LABEL",
    "SCORE_METRIC",
    "Normalisation",
    "NormalisationError",
    "ScoreTable",
    "aggregate",
    "aggregates_markdown",
    "aggregates_note",
    "best_fixed_labels",
    "controller_kind",
    "dumps_strict",
    "format_mean_sem",
    "improvement_interval",
    "iqm",
    "iqm_interval",
    "markdown_table",
    "mean_sem",
    "median_fixed_size",
    "performance_profile",
    "probability_of_improvement",
    "profile_interval",
    "rank_fixed_sizes",
    "run_scores",
    "score_table",
    "stratified_bootstrap",
    "strict_json_value",
    "summarize",
    "task_normalisation",
    "upper_reference",
]
