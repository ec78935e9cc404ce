"""A comparison's report rebuilt from its saved files survives any outcome.

Every run diverged, every number is NaN, a single controller, a single seed, a single run: every
table and figure is written, and divergence is marked instead of drawn on a log axis.
"""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path

import pytest

from arbiter_env.lab.experiments.files import (
    AGGREGATES_JSON,
    RESULTS_CSV,
    RESULTS_MD,
    RUNS_CSV,
    write_json,
)
from arbiter_env.lab.experiments.results import rebuild_report
from arbiter_env.lab.runlog import INTERVALS_FILE

FIGURES = ("batch_size", "val_loss", "test_accuracy")


def _write_run(run_dir: Path, label: str, seed: int, *, losses: list, diverged: bool) -> None:
    controller = "fixed" if label.startswith("fixed") else label
    folder = run_dir / "runs" / "toy" / label / f"seed-{seed}"
    folder.mkdir(parents=True)
    rows = [
        {"samples": 100 * (i + 1), "batch_size": 64, "val_loss": loss, "interval": i}
        for i, loss in enumerate(losses)
    ]
    (folder / INTERVALS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    finite = [v for v in losses if v is not None and math.isfinite(v)]
    write_json(
        folder / "result.json",
        {
            "kind": "evaluate",
            "task": "toy",
            "label": label,
            "controller": controller,
            "seed": seed,
            "status": "ok",
            "diverged": diverged,
            "final_val_loss": None if diverged or not finite else finite[-1],
            "test_accuracy": None if diverged or not finite else 0.9,
            "mean_batch_size": 64.0,
            "samples": rows[-1]["samples"] if rows else 0,
            "updates": 4,
            "wall_time": 0.1,
            "log_rows": len(rows),
        },
    )


def _assert_complete_report(run_dir: Path, report: dict) -> None:
    for name in (RESULTS_CSV, RESULTS_MD, RUNS_CSV, AGGREGATES_JSON):
        assert (run_dir / name).is_file(), name
    written = {p.relative_to(run_dir / "plots").as_posix() for p in report["plots"]}
    assert written == {f"toy/{name}.png" for name in FIGURES} | {"performance_profile.png"}
    for path in report["plots"]:
        assert path.stat().st_size > 0 and path.with_suffix(".pdf").is_file()


BLOWN_UP = [2.0, 50.0, 1e30, None]


@pytest.mark.parametrize(
    "runs",
    [
        pytest.param(
            [(label, seed, BLOWN_UP, True) for label in ("fixed-8", "cabs") for seed in (0, 1)],
            id="all-diverged",
        ),
        pytest.param(
            [(label, seed, [None] * 4, False) for label in ("fixed-8", "ppo") for seed in (0, 1)],
            id="all-nan",
        ),
        pytest.param([("ppo", seed, [2.0, 1.0], False) for seed in (0, 1, 2)], id="one-controller"),
        pytest.param(
            [(f"fixed-{b}", 0, [2.0, 1.0 + b / 100], False) for b in (8, 16, 32)], id="one-seed"
        ),
        pytest.param([("fixed-8", 0, [2.0, 1.0], False)], id="one-run"),
        pytest.param([("fixed-8", 0, [], True)], id="diverged-before-first-interval"),
    ],
)
def test_every_table_and_figure_is_written_whatever_the_outcome(tmp_path, runs) -> None:
    for label, seed, losses, diverged in runs:
        _write_run(tmp_path, label, seed, losses=losses, diverged=diverged)
    report = rebuild_report(tmp_path)
    _assert_complete_report(tmp_path, report)
    assert "toy" in report["markdown"]


def test_a_diverged_run_is_marked_not_drawn_on_the_log_axis(tmp_path, monkeypatch) -> None:
    from arbiter_env.lab import plots

    _write_run(tmp_path, "fixed-8", 0, losses=[2.0, 1.5, 1.2, 1.0], diverged=False)
    _write_run(tmp_path, "cabs", 0, losses=BLOWN_UP, diverged=True)
    seen = {}
    original = plots._save

    def keep(figure, path):
        seen[path.stem] = [(axes.get_yscale(), axes.get_ylim()) for axes in figure.axes]
        seen[path.stem + "-markers"] = [
            line.get_marker() for axes in figure.axes for line in axes.get_lines()
        ]
        return original(figure, path)

    monkeypatch.setattr(plots, "_save", keep)
    rebuild_report(tmp_path)
    ((scale, (_low, high)),) = seen["val_loss"]
    assert scale == "log" and high < 3.0  # fitted to fixed-8, not to the 1e30 blow-up
    assert "x" in seen["val_loss-markers"]


def test_tables_and_results_are_written_with_the_plots_permissions(tmp_path) -> None:
    _write_run(tmp_path, "fixed-8", 0, losses=[2.0, 1.0], diverged=False)
    report = rebuild_report(tmp_path)
    plot_mode = stat.S_IMODE(report["plots"][0].stat().st_mode)
    for path in (
        tmp_path / RESULTS_CSV,
        tmp_path / RESULTS_MD,
        tmp_path / RUNS_CSV,
        tmp_path / AGGREGATES_JSON,
        tmp_path / "runs" / "toy" / "fixed-8" / "seed-0" / "result.json",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == plot_mode, path


def test_every_wandb_run_of_a_comparison_is_linked_into_one_folder(tmp_path) -> None:
    from arbiter_env.lab.experiments.results import gather_wandb_runs

    evaluation = tmp_path / "runs/toy/fixed-8/seed-0/wandb/offline-run-20260101_000000-aaa"
    training = tmp_path / "models/toy/ppo/wandb/offline-run-20260101_000001-bbb"
    summary = tmp_path / "wandb/offline-run-20260101_000002-toy-summary-ccc"
    for folder in (evaluation, training, summary):
        folder.mkdir(parents=True)
    runs = gather_wandb_runs(tmp_path)
    assert [p.name for p in runs] == [evaluation.name, training.name, summary.name]
    linked = tmp_path / "wandb" / training.name
    assert linked.is_symlink() and linked.resolve() == training.resolve()
    assert not Path(linked.readlink()).is_absolute()  # the run folder can be moved
    assert gather_wandb_runs(tmp_path) == runs  # a second call adds nothing


def test_without_wandb_runs_nothing_is_linked_or_printed(tmp_path) -> None:
    from arbiter_env.lab.experiments.results import gather_wandb_runs
    from arbiter_env.lab.wandb_utils import wandb_review_lines

    assert gather_wandb_runs(tmp_path) == [] and not (tmp_path / "wandb").exists()
    assert wandb_review_lines(tmp_path / "wandb", 0) == []
    lines = "\n".join(wandb_review_lines(tmp_path / "wandb", 3))
    assert f"wandb leet {tmp_path / 'wandb'}" in lines
    assert f"wandb sync {tmp_path / 'wandb'}" in lines and "3 offline runs" in lines
