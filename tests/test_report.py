"""The report's numbers, from hand-made result records: no process, no training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import trim_mean

from arbiter_env import report


def _result(label, seed, accuracy, *, task="t1", controller=None, diverged=False, **extra):
    registered = controller or ("fixed" if label.startswith("fixed") else label)
    return {
        "task": task,
        "label": label,
        "controller": registered,
        "seed": seed,
        "status": "ok",
        "diverged": diverged,
        "test_accuracy": math.nan if diverged else accuracy,
        "final_val_loss": math.nan if diverged else 1.0 - accuracy,
        "mean_batch_size": extra.pop("mean_batch_size", 64.0),
        "samples": 1000,
        "updates": 10,
        "wall_time": 1.0,
        **extra,
    }


def _experiment() -> list[dict]:
    return [
        _result("fixed-8", 0, 0.90),
        _result("fixed-8", 1, 0.0, diverged=True),
        _result("fixed-8", 2, 0.92),
        _result("fixed-64", 0, 0.80),
        _result("fixed-64", 1, 0.82),
        _result("fixed-64", 2, 0.84),
        _result("arbiter", 0, 0.95, mean_batch_size=37.5),
        _result("arbiter", 1, 0.85, mean_batch_size=40.5),
        {"task": "t1", "label": "broken", "controller": "broken", "seed": 0, "status": "failed"},
    ]


def test_strict_json_writes_null_for_non_finite_numbers() -> None:
    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float32(2.0), "d": np.int64(3)}
    text = report.dumps_strict(data)

    def reject(constant):
        raise ValueError(constant)

    assert json.loads(text, parse_constant=reject) == {
        "a": None,
        "b": [None, None, 1.5],
        "c": 2.0,
        "d": 3,
    }
    assert report.strict_json_value(np.bool_(True)) is True


def test_mean_sem_is_the_standard_error_over_finite_values() -> None:
    mean, sem, n = report.mean_sem([1.0, 2.0, 3.0, math.nan])
    assert (mean, n) == (2.0, 3)
    assert sem == pytest.approx(1.0 / math.sqrt(3))
    assert math.isnan(report.mean_sem([5.0])[1])
    assert report.mean_sem([])[2] == 0


def test_summary_counts_diverged_runs_and_leaves_them_out_of_the_means() -> None:
    rows = {r["controller"]: r for r in report.summarize(_experiment())}
    fixed8 = rows["fixed-8"]
    assert (fixed8["ok"], fixed8["diverged"], fixed8["test_accuracy_n"]) == (3, 1, 2)
    assert fixed8["test_accuracy_mean"] == pytest.approx(0.91)
    assert fixed8["test_accuracy_sem"] == pytest.approx(np.std([0.90, 0.92], ddof=1) / math.sqrt(2))
    # The diverged run scores 0 for the hindsight choice: (0.90 + 0 + 0.92) / 3.
    assert fixed8["score_mean"] == pytest.approx(1.82 / 3)
    assert rows["arbiter"]["mean_batch_size_mean"] == pytest.approx(39.0)
    assert rows["broken"]["failed"] == 1 and rows["broken"]["kind"] == "other"


def test_best_fixed_size_in_hindsight_penalises_divergence() -> None:
    rows = report.summarize(_experiment())
    # fixed-8 has the best accuracy when it finishes, but it diverged once: fixed-64 is the
    # better static choice (mean score 0.82 against 0.607).
    assert report.best_fixed_labels(rows) == {"t1": "fixed-64"}
    assert [r["controller"] for r in rows if r["best_fixed"]] == ["fixed-64"]


def test_markdown_table_marks_best_fixed_and_shows_divergence_and_batch_size() -> None:
    results = _experiment()
    markdown = report.markdown_table(report.summarize(results), aggregates=None)
    assert "| **fixed-64** ★ | 3/3 | 0 |" in markdown
    assert "| fixed-8 | 3/3 | 1 |" in markdown
    assert "mean batch size" in markdown and "39.0 ± 1.5" in markdown
    assert "0.9100 ± 0.0100 (n=2)" in markdown
    assert "standard error" in markdown and "| broken | 0/1 |" in markdown


def test_iqm_is_the_25_percent_trimmed_mean_of_pooled_runs() -> None:
    scores = [np.arange(1.0, 5.0), np.arange(5.0, 9.0)]
    assert report.iqm(scores) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    rng = np.random.default_rng(1)
    random_scores = [rng.random(10), rng.random(10)]
    assert report.iqm(random_scores) == pytest.approx(
        trim_mean(np.concatenate(random_scores), 0.25)
    )


def test_probability_of_improvement_counts_ties_as_half_and_averages_tasks() -> None:
    x = [np.array([2.0, 3.0]), np.array([1.0])]
    y = [np.array([1.0, 3.0]), np.array([2.0])]
    # Task 1: (1 + 0 + 1 + 0.5) / 4 = 0.625; task 2: 0. Mean over tasks: 0.3125.
    assert report.probability_of_improvement(x, y) == pytest.approx(0.3125)
    assert report.probability_of_improvement(y, y) == pytest.approx(0.5)


def test_bootstrap_intervals_are_seeded_and_contain_the_estimate() -> None:
    rng = np.random.default_rng(0)
    scores = [rng.normal(0.8, 0.05, 5), rng.normal(0.6, 0.05, 5)]
    first = report.iqm_interval(scores, resamples=500, seed=3)
    assert first == report.iqm_interval(scores, resamples=500, seed=3)
    value, low, high = first
    assert low <= value <= high and high - low > 0
    constant = [np.full(4, 0.7)]
    assert report.iqm_interval(constant, resamples=200) == pytest.approx((0.7, 0.7, 0.7))
    better = [s + 1.0 for s in scores]
    assert report.improvement_interval(better, scores, resamples=200) == pytest.approx(
        (1.0, 1.0, 1.0)
    )


def test_stratified_bootstrap_keeps_each_task_s_runs_within_the_task() -> None:
    scores = [np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0])]
    resampled = report.stratified_bootstrap(scores, resamples=50, seed=0)
    assert [r.shape for r in resampled] == [(50, 3), (50, 2)]
    assert set(np.unique(resampled[0])) <= {1.0, 2.0, 3.0}
    assert set(np.unique(resampled[1])) <= {10.0, 20.0}


def test_performance_profile_is_the_fraction_above_tau_averaged_over_tasks() -> None:
    scores = [np.array([0.1, 0.5, 0.9, 0.9]), np.array([0.5, 0.5])]
    profile = report.performance_profile(scores, np.array([0.0, 0.5, 0.95]))
    # tau 0.5: task 1 has 2/4 above, task 2 has 0/2 above -> 0.25.
    np.testing.assert_allclose(profile, [1.0, 0.25, 0.0])
    values, low, high = report.profile_interval(scores, np.array([0.0, 0.5]), resamples=100)
    assert np.all(low <= values + 1e-12) and np.all(values <= high + 1e-12)


def test_aggregate_compares_every_controller_with_the_best_fixed_size() -> None:
    rows = {r["controller"]: r for r in report.aggregate(_experiment(), resamples=300)}
    assert "broken" not in rows  # no successful run: not comparable
    assert rows["fixed-64"]["p_improvement"] == pytest.approx(0.5)
    # arbiter's 0.95 and 0.85 against fixed-64's 0.80, 0.82, 0.84: every pair is a win.
    assert rows["arbiter"]["p_improvement"] == pytest.approx(1.0)
    assert rows["arbiter"]["runs"] == 2 and rows["arbiter"]["kind"] == "arbiter"
    assert rows["fixed-8"]["iqm_low"] <= rows["fixed-8"]["iqm"] <= rows["fixed-8"]["iqm_high"]
    markdown = report.aggregates_markdown(list(rows.values()))
    assert "P(improvement over best fixed)" in markdown and "IQM" in markdown


def test_aggregate_without_fixed_sizes_reports_iqm_only() -> None:
    results = [_result("arbiter", s, 0.9, task=t) for s in range(2) for t in ("a", "b")]
    (row,) = report.aggregate(results, resamples=100)
    assert row["tasks"] == 2 and row["iqm"] == pytest.approx(0.9)
    assert "p_improvement" not in row


def test_aggregates_match_rliable_when_it_is_installed() -> None:
    metrics = pytest.importorskip("rliable.metrics")
    rng = np.random.default_rng(7)
    x = rng.random((6, 3))  # rliable's layout: runs x tasks
    y = rng.random((6, 3))
    ours_x = [x[:, task] for task in range(3)]
    ours_y = [y[:, task] for task in range(3)]
    assert report.iqm(ours_x) == pytest.approx(metrics.aggregate_iqm(x))
    assert report.probability_of_improvement(ours_x, ours_y) == pytest.approx(
        metrics.probability_of_improvement(x, y)
    )
    taus = np.linspace(0, 1, 11)
    expected = np.mean(x[:, :, None] > taus[None, None, :], axis=(0, 1))
    np.testing.assert_allclose(report.performance_profile(ours_x, taus), expected)
