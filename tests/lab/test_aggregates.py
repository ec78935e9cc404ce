"""Scores normalised per task, then pooled: from hand-made result records."""

from __future__ import annotations

import numpy as np
import pytest
from report_records import experiment, ladder, result

from arbiter_env.lab import aggregates, report


def test_aggregate_compares_every_controller_with_the_best_fixed_size() -> None:
    results = experiment() + [result("fixed-32", s, 0.70 + 0.01 * s) for s in range(3)]
    rows = {r["controller"]: r for r in aggregates.aggregate(results, resamples=300)}
    assert "broken" not in rows  # no successful run: not comparable
    assert rows["fixed-64"]["p_improvement"] == pytest.approx(0.5)
    # arbiter's 0.95 and 0.85 against fixed-64's 0.80, 0.82, 0.84: every pair is a win.
    assert rows["arbiter"]["p_improvement"] == pytest.approx(1.0)
    assert rows["arbiter"]["runs"] == 2 and rows["arbiter"]["kind"] == "arbiter"
    assert rows["fixed-8"]["iqm_low"] <= rows["fixed-8"]["iqm"] <= rows["fixed-8"]["iqm_high"]
    markdown = aggregates.aggregates_markdown(list(rows.values()))
    assert "P(better test accuracy than upper reference)" in markdown
    assert "IQM normalised test accuracy" in markdown


def test_normalised_scores_put_the_median_fixed_size_at_0_and_the_best_at_1() -> None:
    results = ladder("t", [0.30, 0.10, 0.20])  # best fixed-2 (0.1), median fixed-4 (0.2)
    rows = report.summarize(results)
    for metric in ("test_accuracy", "final_val_loss"):
        norm = aggregates.task_normalisation(rows, "t", metric)
        assert (norm.lower_label, norm.upper_label) == ("fixed-4", "fixed-2")
        assert float(norm(rows[2][f"{metric}_mean"])) == pytest.approx(0.0)
        assert float(norm(rows[1][f"{metric}_mean"])) == pytest.approx(1.0)
    # Lower loss is better: a loss below the best fixed size's scores above 1.
    loss = aggregates.task_normalisation(rows, "t", "final_val_loss")
    assert float(loss(0.05)) == pytest.approx(1.5)


def test_across_task_numbers_pool_normalised_scores_not_raw_units() -> None:
    # Two tasks on very different accuracy scales; arbiter sits at the best fixed size's level
    # on both, so its normalised IQM is 1 on each and pooled, whatever the raw numbers.
    results = ladder("easy", [0.30, 0.10, 0.20], offset=0.0)
    results += ladder("hard", [1.30, 1.10, 1.20], offset=0.4)
    results += [result("arbiter", s, 0.9, task="easy", final_val_loss=0.1) for s in (0, 1)]
    results += [
        result("arbiter", s, 0.0, task="hard", final_val_loss=1.1) | {"test_accuracy": 0.3}
        for s in (0, 1)
    ]
    rows = {r["controller"]: r for r in aggregates.aggregate(results, resamples=100)}
    assert rows["arbiter"]["iqm"] == pytest.approx(1.0)
    assert rows["arbiter"]["final_val_loss_iqm"] == pytest.approx(1.0)
    assert rows["fixed-4"]["iqm"] == pytest.approx(0.0)
    assert rows["arbiter"]["normalised"] and rows["arbiter"]["reference"] == "fixed-2"
    table = aggregates.score_table(results)
    assert table.normalised and [len(s) for s in table.scores["arbiter"]] == [2, 2]


def test_an_oracle_in_the_results_becomes_the_upper_reference() -> None:
    results = ladder("t", [0.30, 0.10, 0.20])
    results += [result("oracle-greedy", s, 0.0, final_val_loss=0.0) for s in (0, 1)]
    for oracle in results[-2:]:
        oracle["task"], oracle["test_accuracy"] = "t", 1.0
    rows = report.summarize(results)
    assert aggregates.upper_reference(rows, "t") == aggregates.ORACLE_LABEL
    norm = aggregates.task_normalisation(rows, "t", "final_val_loss")
    assert float(norm(0.0)) == pytest.approx(1.0) and float(norm(0.2)) == pytest.approx(0.0)
    # Found by its registered name under another label as well.
    for oracle in results[-2:]:
        oracle["label"], oracle["controller"] = "oracle", aggregates.ORACLE_LABEL
    assert aggregates.upper_reference(report.summarize(results), "t") == "oracle"
    # The parameter picks another upper reference explicitly.
    assert aggregates.task_normalisation(rows, "t", "final_val_loss", upper="fixed-2").upper == 0.1


def test_a_diverged_run_scores_below_every_finished_run_of_its_task() -> None:
    results = ladder("t", [0.30, 0.10, 0.20])
    results += [result("wild", 0, 0.0, diverged=True, task="t"), result("wild", 1, 0.1, task="t")]
    scores = aggregates.score_table(results, "final_val_loss").scores
    finished = np.concatenate([s[0] for label, s in scores.items() if label != "wild"])
    wild = scores["wild"][0]
    assert wild[0] <= -2.0 and wild[0] < min(finished.min(), wild[1])


def test_without_normalisable_references_one_task_is_raw_and_several_get_a_reason() -> None:
    single = [result("arbiter", s, 0.9) for s in range(2)] + [result("fixed-8", 0, 0.8)]
    (arbiter, _) = aggregates.aggregate(single, resamples=100)
    assert arbiter["iqm"] == pytest.approx(0.9) and not arbiter["normalised"]
    assert "not normalised" in aggregates.aggregates_note(single)
    several = [result("arbiter", s, 0.9, task=t) for s in range(2) for t in ("a", "b")]
    assert aggregates.aggregate(several, resamples=100) == []
    note = aggregates.aggregates_note(several)
    assert "no across-task numbers" in note and "no fixed size" in note
    section = aggregates.aggregates_markdown([], note)
    markdown = report.markdown_table(report.summarize(several), aggregates_section=section)
    assert "No across-task numbers" in markdown


def test_leave_out_tasks_pools_the_normalisable_tasks_and_names_the_others() -> None:
    # Task a: fixed-8 (0.9) is the best, fixed-16 (0.8) the median; task b has no fixed size.
    sizes = (("fixed-8", 0.9), ("fixed-16", 0.8), ("fixed-32", 0.7))
    normalisable = [result(label, s, acc, task="a") for label, acc in sizes for s in range(2)]
    arbiter = [result("arbiter", s, 0.85, task=t) for s in range(2) for t in ("a", "b")]
    table = aggregates.score_table(normalisable + arbiter, leave_out_tasks=True)
    assert table.tasks == ["a"] and table.normalised
    assert table.scores["arbiter"][0] == pytest.approx([0.5, 0.5])
    assert "left out of the pooled scores" in table.note and "b: no fixed size" in table.note
    assert aggregates.score_table(normalisable + arbiter).scores == {}  # the default: no numbers


def test_a_best_size_with_worse_accuracy_than_the_median_is_not_used_to_normalise_accuracy() -> (
    None
):
    # Ranked by validation loss, fixed-2 is best, but its test accuracy is below the median's:
    # 0 and 1 would swap on accuracy, so accuracy stays raw while loss is normalised.
    results = ladder("t", [0.30, 0.10, 0.20])
    for record in results:
        if record["label"] == "fixed-2":
            record["test_accuracy"] = 0.5
    rows = report.summarize(results)
    with pytest.raises(aggregates.NormalisationError, match="would swap"):
        aggregates.task_normalisation(rows, "t", "test_accuracy")
    (row, *_) = aggregates.aggregate(results, resamples=50)
    assert row["final_val_loss_normalised"] and not row["test_accuracy_normalised"]
    markdown = aggregates.aggregates_markdown(
        aggregates.aggregate(results, resamples=50), aggregates.aggregates_note(results)
    )
    assert "IQM test accuracy (raw)" in markdown and "IQM normalised final val loss" in markdown
