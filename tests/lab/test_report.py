"""The report's per-task numbers, from hand-made result records: no process, no training."""

from __future__ import annotations

import math

import numpy as np
import pytest
from report_records import experiment, ladder

from arbiter_env.lab import report


def test_mean_sem_is_the_standard_error_over_finite_values() -> None:
    mean, sem, n = report.mean_sem([1.0, 2.0, 3.0, math.nan])
    assert (mean, n) == (2.0, 3)
    assert sem == pytest.approx(1.0 / math.sqrt(3))
    assert math.isnan(report.mean_sem([5.0])[1])
    assert report.mean_sem([])[2] == 0


def test_summary_counts_diverged_runs_and_leaves_them_out_of_the_means() -> None:
    rows = {r["controller"]: r for r in report.summarize(experiment())}
    fixed8 = rows["fixed-8"]
    assert (fixed8["ok"], fixed8["diverged"], fixed8["test_accuracy_n"]) == (3, 1, 2)
    assert fixed8["test_accuracy_mean"] == pytest.approx(0.91)
    assert fixed8["test_accuracy_sem"] == pytest.approx(np.std([0.90, 0.92], ddof=1) / math.sqrt(2))
    assert rows["arbiter"]["mean_batch_size_mean"] == pytest.approx(39.0)
    assert rows["broken"]["failed"] == 1 and rows["broken"]["kind"] == "other"


def test_best_fixed_size_in_hindsight_penalises_divergence() -> None:
    rows = report.summarize(experiment())
    # fixed-8 has the lowest loss when it finishes, but it diverged once: it ranks last.
    assert report.best_fixed_labels(rows) == {"t1": "fixed-64"}
    assert [r["controller"] for r in rows if r["best_fixed"]] == ["fixed-64"]


def test_markdown_table_marks_best_fixed_and_shows_divergence_and_batch_size() -> None:
    results = experiment()
    markdown = report.markdown_table(report.summarize(results))
    assert "| **fixed-64** ★ | 3/3 | 0 |" in markdown
    assert "test accuracy (± s.e.)" in markdown
    assert "| fixed-8 | 3/3 | 1 |" in markdown
    assert "mean batch size" in markdown and "39.0 ± 1.5" in markdown
    assert "0.9100 ± 0.0100 (n=2)" in markdown
    assert "standard error" in markdown and "| broken | 0/1 |" in markdown


def test_median_fixed_size_is_rank_ceil_k_over_2_by_validation_loss_diverged_last() -> None:
    # Seven sizes; fixed-1 diverged once, so it ranks last although its finished run is best.
    results = ladder("t", [0.05, 0.30, 0.20, 0.10, 0.40, 0.25, 0.15])
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
    assert report.median_fixed_size(report.summarize(ladder("t", [0.2, 0.1])), "t") == "fixed-2"
    assert report.median_fixed_size(rows, "no such task") is None
