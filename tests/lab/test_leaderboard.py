"""The leaderboard's numbers by hand: normalised scores, pooled statistics, costs to target."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arbiter_env.lab import rliable_stats
from arbiter_env.lab.aggregates import score_table
from arbiter_env.lab.leaderboard import (
    cost_to_target,
    leaderboard_markdown,
    median_fixed_sizes,
    pooled_rows,
    task_targets,
)
from arbiter_env.lab.report import summarize


def _run(label, controller, seed, accuracy, val_loss, diverged=False, task="t"):
    return {
        "task": task,
        "label": label,
        "controller": controller,
        "seed": seed,
        "status": "ok",
        "diverged": diverged,
        "test_accuracy": accuracy,
        "final_val_loss": val_loss,
        "final_val_accuracy": accuracy,
    }


def _results(oracle_accuracy=None):
    # Three fixed sizes, ranked by validation loss: fixed-8 (0.1), fixed-16 (0.2), fixed-32 (0.3).
    # The median is rank ceil(3/2) = 2, fixed-16 (accuracy 0.8); the best, fixed-8 (0.9).
    results = []
    for seed in (0, 1):
        results += [
            _run("fixed-8", "fixed", seed, 0.9, 0.1),
            _run("fixed-16", "fixed", seed, 0.8, 0.2),
            _run("fixed-32", "fixed", seed, 0.6, 0.3),
            _run("ramp", "batch-ramp", seed, 0.85 + 0.1 * seed, 0.15),
        ]
        if oracle_accuracy is not None:
            results.append(_run("oracle-greedy", "oracle-greedy", seed, oracle_accuracy, 0.05))
    # ramp, seed 1 diverged: the worker then records no test accuracy.
    results[-1 if oracle_accuracy is None else -2] |= {"diverged": True, "test_accuracy": None}
    return results


def test_scores_are_zero_at_the_median_fixed_size_and_one_at_the_best_by_hand():
    results = _results()
    scores = score_table(results, leave_out_tasks=True)
    assert median_fixed_sizes(summarize(results)) == {"t": "fixed-16"}
    assert scores.reference_labels == {"t": "fixed-8"}
    (ramp,) = scores.scores["ramp"]
    # Seed 0: (0.85 − 0.8)/(0.9 − 0.8) = 0.5. Seed 1 diverged: one below the worst finished
    # score, fixed-32's (0.6 − 0.8)/0.1 = −2, so −3.
    assert ramp == pytest.approx([0.5, -3.0], abs=1e-12)
    assert scores.scores["fixed-8"][0] == pytest.approx([1.0, 1.0], abs=1e-12)


def test_the_oracle_is_the_upper_reference_where_it_ran():
    scores = score_table(_results(oracle_accuracy=1.0), leave_out_tasks=True)
    assert scores.reference_labels == {"t": "oracle-greedy"}
    # (0.85 − 0.8)/(1.0 − 0.8) = 0.25
    assert scores.scores["ramp"][0][0] == pytest.approx(0.25, abs=1e-12)


def test_cost_to_target_is_read_at_the_first_interval_that_reaches_it():
    log = [
        {"val_accuracy": 0.5, "updates": 10, "episode_samples": 100, "elapsed": 1.0},
        {"val_accuracy": 0.8, "updates": 20, "episode_samples": 200, "elapsed": 2.0},
        {"val_accuracy": 0.9, "updates": 30, "episode_samples": 300, "elapsed": 3.0},
    ]
    assert cost_to_target({"log": log}, 0.75) == {"updates": 20, "samples": 200, "seconds": 2.0}
    assert all(math.isnan(v) for v in cost_to_target({"log": log}, 0.95).values())
    results = _results()
    assert task_targets(results, {"t": "fixed-16"}) == {"t": pytest.approx(0.8)}


def test_the_leaderboard_says_where_the_oracle_loses_to_a_fixed_size():
    text = leaderboard_markdown(_results(oracle_accuracy=0.85), title="x", resamples=200)
    assert "The oracle loses to a fixed size on t:** fixed-8" in text
    for section in ("## Leaderboard", "## Normalised score per task", "## Cost to the target"):
        assert section in text


def test_pooled_numbers_are_rliable_functions_of_the_normalised_scores():
    scores = score_table(_results(), leave_out_tasks=True)
    rows = pooled_rows(scores, resamples=200)
    ramp = next(r for r in rows if r["controller"] == "ramp")
    assert ramp["kind"] == "schedule"
    assert ramp["iqm"][0] == rliable_stats.iqm(scores.scores["ramp"])
    assert ramp["p_improvement"][0] == rliable_stats.probability_of_improvement(
        scores.scores["ramp"], scores.scores["fixed-8"]
    )
    assert ramp["profile"][0][0] == pytest.approx(np.mean([0.5 > 0, -3.0 > 0]))


def test_a_task_where_the_oracle_is_below_the_median_fixed_size_is_left_out_and_named():
    # On u the oracle (0.7) is worse than the median fixed size (0.8): 0 and 1 would swap.
    worse = [r | {"task": "u"} for r in _results(oracle_accuracy=0.7)]
    text = leaderboard_markdown(_results(oracle_accuracy=1.0) + worse, title="x", resamples=100)
    assert "**Left out of the pooled scores: u: the upper reference oracle-greedy" in text
    assert "| controller | t |" in text  # t is still scored and pooled
    assert "The oracle loses to a fixed size on u:** fixed-8, fixed-16 have" in text
