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
    assert rows["arbiter"]["mean_batch_size_mean"] == pytest.approx(39.0)
    assert rows["broken"]["failed"] == 1 and rows["broken"]["kind"] == "other"


def test_best_fixed_size_in_hindsight_penalises_divergence() -> None:
    rows = report.summarize(_experiment())
    # fixed-8 has the lowest loss when it finishes, but it diverged once: it ranks last.
    assert report.best_fixed_labels(rows) == {"t1": "fixed-64"}
    assert [r["controller"] for r in rows if r["best_fixed"]] == ["fixed-64"]


def test_markdown_table_marks_best_fixed_and_shows_divergence_and_batch_size() -> None:
    results = _experiment()
    markdown = report.markdown_table(report.summarize(results), aggregates=None)
    assert "| **fixed-64** ★ | 3/3 | 0 |" in markdown
    assert "test accuracy (± s.e.)" in markdown
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
    results = _experiment() + [_result("fixed-32", s, 0.70 + 0.01 * s) for s in range(3)]
    rows = {r["controller"]: r for r in report.aggregate(results, resamples=300)}
    assert "broken" not in rows  # no successful run: not comparable
    assert rows["fixed-64"]["p_improvement"] == pytest.approx(0.5)
    # arbiter's 0.95 and 0.85 against fixed-64's 0.80, 0.82, 0.84: every pair is a win.
    assert rows["arbiter"]["p_improvement"] == pytest.approx(1.0)
    assert rows["arbiter"]["runs"] == 2 and rows["arbiter"]["kind"] == "arbiter"
    assert rows["fixed-8"]["iqm_low"] <= rows["fixed-8"]["iqm"] <= rows["fixed-8"]["iqm_high"]
    markdown = report.aggregates_markdown(list(rows.values()))
    assert "P(better test accuracy than upper reference)" in markdown
    assert "IQM normalised test accuracy" in markdown


def _ladder(task, losses, *, seeds=(0, 1), offset=0.0):
    """Fixed sizes with the given final validation losses (accuracy = offset + 1 - loss)."""
    return [
        _result(f"fixed-{2**i}", seed, 0.0, task=task, final_val_loss=loss)
        | {"test_accuracy": offset + 1.0 - loss}
        for i, loss in enumerate(losses)
        for seed in seeds
    ]


def test_median_fixed_size_is_rank_ceil_k_over_2_by_validation_loss_diverged_last() -> None:
    # Seven sizes; fixed-1 diverged once, so it ranks last although its finished run is best.
    results = _ladder("t", [0.05, 0.30, 0.20, 0.10, 0.40, 0.25, 0.15])
    results[0] |= {"diverged": True, "final_val_loss": math.nan, "test_accuracy": math.nan}
    rows = report.summarize(results)
    ranking = report.rank_fixed_sizes(rows, "t")
    assert ranking == [
        "fixed-8",
        "fixed-64",
        "fixed-4",
        "fixed-32",
        "fixed-2",
        "fixed-16",
        "fixed-1",
    ]
    assert report.median_fixed_size(rows, "t") == "fixed-32"  # rank 4 of 7
    assert report.best_fixed_labels(rows) == {"t": "fixed-8"}
    assert report.median_fixed_size(report.summarize(_ladder("t", [0.2, 0.1])), "t") == "fixed-2"
    assert report.median_fixed_size(rows, "no such task") is None


def test_normalised_scores_put_the_median_fixed_size_at_0_and_the_best_at_1() -> None:
    results = _ladder("t", [0.30, 0.10, 0.20])  # best fixed-2 (0.1), median fixed-4 (0.2)
    rows = report.summarize(results)
    for metric in ("test_accuracy", "final_val_loss"):
        norm = report.task_normalisation(rows, "t", metric)
        assert (norm.lower_label, norm.upper_label) == ("fixed-4", "fixed-2")
        assert float(norm(rows[2][f"{metric}_mean"])) == pytest.approx(0.0)
        assert float(norm(rows[1][f"{metric}_mean"])) == pytest.approx(1.0)
    # Lower loss is better: a loss below the best fixed size's scores above 1.
    loss = report.task_normalisation(rows, "t", "final_val_loss")
    assert float(loss(0.05)) == pytest.approx(1.5)


def test_across_task_numbers_pool_normalised_scores_not_raw_units() -> None:
    # Two tasks on very different accuracy scales; arbiter sits at the best fixed size's level
    # on both, so its normalised IQM is 1 on each and pooled, whatever the raw numbers.
    results = _ladder("easy", [0.30, 0.10, 0.20], offset=0.0)
    results += _ladder("hard", [1.30, 1.10, 1.20], offset=0.4)
    results += [_result("arbiter", s, 0.9, task="easy", final_val_loss=0.1) for s in (0, 1)]
    results += [
        _result("arbiter", s, 0.0, task="hard", final_val_loss=1.1) | {"test_accuracy": 0.3}
        for s in (0, 1)
    ]
    rows = {r["controller"]: r for r in report.aggregate(results, resamples=100)}
    assert rows["arbiter"]["iqm"] == pytest.approx(1.0)
    assert rows["arbiter"]["final_val_loss_iqm"] == pytest.approx(1.0)
    assert rows["fixed-4"]["iqm"] == pytest.approx(0.0)
    assert rows["arbiter"]["normalised"] and rows["arbiter"]["reference"] == "fixed-2"
    table = report.score_table(results)
    assert table.normalised and [len(s) for s in table.scores["arbiter"]] == [2, 2]


def test_an_oracle_in_the_results_becomes_the_upper_reference() -> None:
    results = _ladder("t", [0.30, 0.10, 0.20])
    results += [_result("oracle-greedy", s, 0.0, final_val_loss=0.0) for s in (0, 1)]
    for result in results[-2:]:
        result["task"], result["test_accuracy"] = "t", 1.0
    rows = report.summarize(results)
    assert report.upper_reference(rows, "t") == report.ORACLE_LABEL
    norm = report.task_normalisation(rows, "t", "final_val_loss")
    assert float(norm(0.0)) == pytest.approx(1.0) and float(norm(0.2)) == pytest.approx(0.0)
    # The parameter picks another upper reference explicitly.
    assert report.task_normalisation(rows, "t", "final_val_loss", upper="fixed-2").upper == 0.1


def test_a_diverged_run_scores_below_every_finished_run_of_its_task() -> None:
    results = _ladder("t", [0.30, 0.10, 0.20])
    results += [_result("wild", 0, 0.0, diverged=True, task="t"), _result("wild", 1, 0.1, task="t")]
    scores = report.score_table(results, "final_val_loss").scores
    finished = np.concatenate([s[0] for label, s in scores.items() if label != "wild"])
    wild = scores["wild"][0]
    assert wild[0] <= -2.0 and wild[0] < min(finished.min(), wild[1])


def test_without_normalisable_references_one_task_is_raw_and_several_get_a_reason() -> None:
    single = [_result("arbiter", s, 0.9) for s in range(2)] + [_result("fixed-8", 0, 0.8)]
    (arbiter, _) = report.aggregate(single, resamples=100)
    assert arbiter["iqm"] == pytest.approx(0.9) and not arbiter["normalised"]
    assert "not normalised" in report.aggregates_note(single)
    several = [_result("arbiter", s, 0.9, task=t) for s in range(2) for t in ("a", "b")]
    assert report.aggregate(several, resamples=100) == []
    note = report.aggregates_note(several)
    assert "no across-task numbers" in note and "no fixed size" in note
    markdown = report.markdown_table(report.summarize(several), aggregates=[], aggregates_note=note)
    assert "No across-task numbers" in markdown


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


def test_a_best_size_with_worse_accuracy_than_the_median_is_not_used_to_normalise_accuracy() -> (
    None
):
    # Ranked by validation loss, fixed-2 is best, but its test accuracy is below the median's:
    # 0 and 1 would swap on accuracy, so accuracy stays raw while loss is normalised.
    results = _ladder("t", [0.30, 0.10, 0.20])
    for result in results:
        if result["label"] == "fixed-2":
            result["test_accuracy"] = 0.5
    rows = report.summarize(results)
    with pytest.raises(report.NormalisationError, match="would swap"):
        report.task_normalisation(rows, "t", "test_accuracy")
    (row, *_) = report.aggregate(results, resamples=50)
    assert row["final_val_loss_normalised"] and not row["test_accuracy_normalised"]
    markdown = report.aggregates_markdown(
        report.aggregate(results, resamples=50), report.aggregates_note(results)
    )
    assert "IQM test accuracy (raw)" in markdown and "IQM normalised final val loss" in markdown
