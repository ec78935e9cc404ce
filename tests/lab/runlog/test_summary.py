"""The episode summary: sample-weighted mean batch size, and the record winning over intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arbiter_env.controllers import EpisodeRecord
from arbiter_env.lab.runlog.summary import (
    EpisodeProgress,
    mean_batch_size,
    record_metrics,
    summarise_episode,
)


def test_mean_batch_size_weights_each_interval_by_the_samples_it_trained_on():
    # 100 samples at 10, then 300 at 50: (100 * 10 + 300 * 50) / 400 = 40, not the plain mean 30.
    assert mean_batch_size([10, 50], [100, 400]) == pytest.approx(40.0)
    assert mean_batch_size([], []) is None
    assert mean_batch_size([8], [0]) is None


def _mean_batch_size(record: EpisodeRecord) -> float:
    """The experiment result's mean batch size (its summary is :func:`record_metrics`)."""
    return record_metrics(record)["mean_batch_size"]


def test_the_logged_summary_and_the_experiment_result_agree_on_the_mean_batch_size():
    record = EpisodeRecord(seed=0, batch_sizes=[16, 32, 64], samples=[160, 480, 1120])
    rows = [
        {"batch_size": b, "episode_samples": s, "reward": 0.0}
        for b, s in zip(record.batch_sizes, record.samples, strict=True)
    ]
    summary = summarise_episode(
        EpisodeProgress(0, 0, intervals=rows), seed=0, controller=None, record=None
    )
    # (160 * 16 + 320 * 32 + 640 * 64) / 1120, as numpy's weighted average computes it.
    expected = float(np.average([16, 32, 64], weights=[160, 320, 640]))
    assert summary["mean_batch_size"] == expected == _mean_batch_size(record)
    assert summary["min_batch_size"] == 16 and summary["max_batch_size"] == 64
    assert math.isnan(_mean_batch_size(EpisodeRecord(seed=0)))


def test_the_episode_record_wins_where_it_has_the_value():
    rows = [{"batch_size": 8, "episode_samples": 80, "reward": 0.5, "test_accuracy": 0.1}]
    record = EpisodeRecord(seed=3, rewards=[0.25], test_accuracy=0.9, diverged=True)
    summary = summarise_episode(
        EpisodeProgress(2, 1, intervals=rows), seed=3, controller="c", record=record
    )
    assert summary["return"] == 0.25 and summary["test_accuracy"] == 0.9 and summary["diverged"]
    assert (summary["episode"], summary["env_index"], summary["controller"]) == (2, 1, "c")


def test_the_record_metrics_are_the_episode_outcome_and_nan_where_never_reached():
    record = EpisodeRecord(
        seed=0,
        batch_sizes=[16, 32],
        samples=[160, 480],
        updates=[10, 20],
        val_losses=[1.0, 0.5],
        val_accuracies=[0.4, 0.7],
        rewards=[0.25, 0.5],
        test_accuracy=0.6,
    )
    metrics = record_metrics(record)
    assert metrics["final_val_loss"] == 0.5 and metrics["final_val_accuracy"] == 0.7
    assert metrics["episode_return"] == 0.75 and metrics["samples"] == 480
    assert metrics["updates"] == 20 and metrics["intervals"] == 2
    assert metrics["mean_batch_size"] == pytest.approx((160 * 16 + 320 * 32) / 480)
    assert math.isnan(metrics["test_loss"]) and metrics["test_accuracy"] == 0.6
    empty = record_metrics(EpisodeRecord(seed=1))
    assert math.isnan(empty["final_val_loss"]) and math.isnan(empty["final_val_accuracy"])
    assert empty["samples"] == 0 and empty["intervals"] == 0
