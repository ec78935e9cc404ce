"""The rliable statistics (IQM, P(improvement), bootstrap, performance profile) on known inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import trim_mean

from arbiter_env.lab import rliable_stats


def test_iqm_is_the_25_percent_trimmed_mean_of_pooled_runs() -> None:
    scores = [np.arange(1.0, 5.0), np.arange(5.0, 9.0)]
    assert rliable_stats.iqm(scores) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    rng = np.random.default_rng(1)
    random_scores = [rng.random(10), rng.random(10)]
    assert rliable_stats.iqm(random_scores) == pytest.approx(
        trim_mean(np.concatenate(random_scores), 0.25)
    )


def test_probability_of_improvement_counts_ties_as_half_and_averages_tasks() -> None:
    x = [np.array([2.0, 3.0]), np.array([1.0])]
    y = [np.array([1.0, 3.0]), np.array([2.0])]
    # Task 1: (1 + 0 + 1 + 0.5) / 4 = 0.625; task 2: 0. Mean over tasks: 0.3125.
    assert rliable_stats.probability_of_improvement(x, y) == pytest.approx(0.3125)
    assert rliable_stats.probability_of_improvement(y, y) == pytest.approx(0.5)


def test_bootstrap_intervals_are_seeded_and_contain_the_estimate() -> None:
    rng = np.random.default_rng(0)
    scores = [rng.normal(0.8, 0.05, 5), rng.normal(0.6, 0.05, 5)]
    first = rliable_stats.iqm_interval(scores, resamples=500, seed=3)
    assert first == rliable_stats.iqm_interval(scores, resamples=500, seed=3)
    value, low, high = first
    assert low <= value <= high and high - low > 0
    constant = [np.full(4, 0.7)]
    assert rliable_stats.iqm_interval(constant, resamples=200) == pytest.approx((0.7, 0.7, 0.7))
    better = [s + 1.0 for s in scores]
    assert rliable_stats.improvement_interval(better, scores, resamples=200) == pytest.approx(
        (1.0, 1.0, 1.0)
    )


def test_stratified_bootstrap_keeps_each_task_s_runs_within_the_task() -> None:
    scores = [np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0])]
    resampled = rliable_stats.stratified_bootstrap(scores, resamples=50, seed=0)
    assert [r.shape for r in resampled] == [(50, 3), (50, 2)]
    assert set(np.unique(resampled[0])) <= {1.0, 2.0, 3.0}
    assert set(np.unique(resampled[1])) <= {10.0, 20.0}


def test_performance_profile_is_the_fraction_above_tau_averaged_over_tasks() -> None:
    scores = [np.array([0.1, 0.5, 0.9, 0.9]), np.array([0.5, 0.5])]
    profile = rliable_stats.performance_profile(scores, np.array([0.0, 0.5, 0.95]))
    # tau 0.5: task 1 has 2/4 above, task 2 has 0/2 above -> 0.25.
    np.testing.assert_allclose(profile, [1.0, 0.25, 0.0])
    values, low, high = rliable_stats.profile_interval(scores, np.array([0.0, 0.5]), resamples=100)
    assert np.all(low <= values + 1e-12) and np.all(values <= high + 1e-12)


def test_aggregates_match_rliable_when_it_is_installed() -> None:
    metrics = pytest.importorskip("rliable.metrics")
    rng = np.random.default_rng(7)
    x = rng.random((6, 3))  # rliable's layout: runs x tasks
    y = rng.random((6, 3))
    ours_x = [x[:, task] for task in range(3)]
    ours_y = [y[:, task] for task in range(3)]
    assert rliable_stats.iqm(ours_x) == pytest.approx(metrics.aggregate_iqm(x))
    assert rliable_stats.probability_of_improvement(ours_x, ours_y) == pytest.approx(
        metrics.probability_of_improvement(x, y)
    )
    taus = np.linspace(0, 1, 11)
    expected = np.mean(x[:, :, None] > taus[None, None, :], axis=(0, 1))
    np.testing.assert_allclose(rliable_stats.performance_profile(ours_x, taus), expected)
