"""The statistics of Agarwal et al. (NeurIPS 2021) on per-task arrays of run scores, with numpy.

"Deep Reinforcement Learning at the Edge of the Statistical Precipice" defines, and the
``rliable`` library implements, the aggregates a comparison reports across tasks and seeds:

* **IQM**: the interquartile mean of all runs' scores pooled over tasks (``scipy.stats.trim_mean``
  with 25 % cut at each end, as ``rliable.metrics.aggregate_iqm``);
* **probability of improvement** P(X > Y): per task the Mann–Whitney U statistic divided by
  ``n_x·n_y`` (ties count one half), averaged over tasks, as
  ``rliable.metrics.probability_of_improvement``;
* **95 % confidence intervals** by the stratified bootstrap (runs resampled with replacement
  within each task; for P(X > Y) X's and Y's runs are resampled independently), percentile
  method, as ``rliable.library.get_interval_estimates``; 2,000 resamples from a fixed seed by
  default (rliable's default is 50,000), so a rebuilt report gives the same numbers;
* the **performance profile** (run-score distribution): for each threshold τ, the fraction of
  runs whose score exceeds τ, averaged over tasks, with pointwise bootstrap bands, as
  ``rliable.metrics``' ``create_performance_profile``.

rliable itself is not a dependency: it pins ``arch`` and pulls statsmodels, pandas and seaborn
into the environment for a few lines of arithmetic. ``tests/lab/test_report.py`` checks these
functions against rliable's formulas on known inputs. What the scores are (normalised per task
first) is :mod:`arbiter_env.lab.aggregates`' business.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


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
) -> tuple[float, float, float]:
    """IQM and its stratified-bootstrap percentile interval: ``(iqm, low, high)``."""
    from scipy.stats import trim_mean

    samples = np.concatenate(stratified_bootstrap(scores, resamples, seed), axis=1)
    estimates = trim_mean(samples, proportiontocut=0.25, axis=1)
    low, high = percentile_interval(estimates)
    return iqm(scores), float(low), float(high)


def improvement_interval(
    x: Sequence[np.ndarray],
    y: Sequence[np.ndarray],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """P(X > Y) and its interval; X's and Y's runs are resampled independently within tasks."""
    rng = np.random.default_rng(seed)
    x_samples = stratified_bootstrap(x, resamples, rng)
    y_samples = stratified_bootstrap(y, resamples, rng)
    per_task = [_pairwise_win_rate(a, b) for a, b in zip(x_samples, y_samples, strict=True)]
    estimates = np.mean(np.stack([np.asarray(p, dtype=float) for p in per_task]), axis=0)
    low, high = percentile_interval(estimates)
    return probability_of_improvement(x, y), float(low), float(high)


def profile_interval(
    scores: Sequence[np.ndarray],
    taus: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The performance profile at ``taus`` and its pointwise bootstrap band."""
    taus = np.asarray(taus, dtype=float)
    samples = stratified_bootstrap(scores, resamples, seed)
    per_task = [(s[:, :, None] > taus[None, None, :]).mean(axis=1) for s in samples]
    low, high = percentile_interval(np.mean(per_task, axis=0))
    return performance_profile(scores, taus), low, high


__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "CONFIDENCE",
    "improvement_interval",
    "iqm",
    "iqm_interval",
    "percentile_interval",
    "performance_profile",
    "probability_of_improvement",
    "profile_interval",
    "stratified_bootstrap",
]
