"""Plots of a comparison, drawn from its saved results (matplotlib, Agg backend, PNG files).

For each task, :func:`plot_comparison` writes

* ``batch_size.png``: the batch-size schedule of every controller against samples seen (every
  seed drawn, one colour per controller);
* ``val_loss.png``: validation loss against samples seen, mean over seeds with a min–max band;
* ``test_accuracy.png``: final test accuracy per controller, mean with ± std error bars.

The inputs are result dicts as :func:`arbiter_env.comparison.load_results` returns them (with
``"log"``: the interval rows of the run), so plots can be redrawn without rerunning anything.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_comparison(results: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Writes the three plots for each task under ``out_dir/TASK/``; returns the paths."""
    out_dir = Path(out_dir)
    paths: list[Path] = []
    for task in dict.fromkeys(r["task"] for r in results):
        task_results = [r for r in results if r["task"] == task and r.get("status") == "ok"]
        if not task_results:
            continue
        folder = out_dir / task
        folder.mkdir(parents=True, exist_ok=True)
        labels = list(dict.fromkeys(r["label"] for r in task_results))
        colours = _colours(labels)
        by_label = {label: [r for r in task_results if r["label"] == label] for label in labels}
        paths.append(plot_batch_sizes(by_label, colours, folder / "batch_size.png", task))
        paths.append(plot_val_loss(by_label, colours, folder / "val_loss.png", task))
        paths.append(plot_test_accuracy(by_label, colours, folder / "test_accuracy.png", task))
    return paths


def plot_batch_sizes(
    by_label: dict[str, list[dict[str, Any]]], colours: dict[str, Any], path: Path, task: str
) -> Path:
    """Batch size (log scale) against samples seen, as steps: one interval, one size."""
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for label, runs in by_label.items():
        schedules = [[row["batch_size"] for row in run.get("log") or []] for run in runs]
        # Constant schedules (fixed sizes) are references: thin dotted lines, so that the
        # adaptive controllers' schedules stand out.
        constant = all(len(set(s)) <= 1 for s in schedules)
        for index, run in enumerate(runs):
            log = run.get("log") or []
            if not log:
                continue
            edges = [0, *(row["samples"] for row in log)]
            axes.stairs(
                schedules[index],
                edges,
                color=colours[label],
                alpha=0.8 if index == 0 else 0.35,
                linewidth=1.0 if constant else (1.8 if index == 0 else 1.0),
                linestyle=":" if constant else "-",
                label=label if index == 0 else None,
                baseline=None,
            )
    axes.set_yscale("log", base=2)
    axes.set_xlabel("samples seen")
    axes.set_ylabel("batch size")
    axes.set_title(f"{task}: batch size schedules (all seeds; first seed bold)")
    _legend(axes)
    return _save(figure, path)


def plot_val_loss(
    by_label: dict[str, list[dict[str, Any]]], colours: dict[str, Any], path: Path, task: str
) -> Path:
    """Validation loss (log scale) against samples seen: mean over seeds, min–max band."""
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for label, runs in by_label.items():
        logs = [run.get("log") or [] for run in runs]
        length = max((len(log) for log in logs), default=0)
        if not length:
            continue
        # Interval ends are the same samples for every run of a task (they split one budget);
        # a diverged run stops early and pads with NaN.
        samples = next(log for log in logs if len(log) == length)
        x = np.array([row["samples"] for row in samples], dtype=float)
        losses = np.full((len(logs), length), np.nan)
        for i, log in enumerate(logs):
            for j, row in enumerate(log):
                losses[i, j] = _finite_or_nan(row.get("val_loss"))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all seeds diverged at a point
            mean = np.nanmean(losses, axis=0)
            low, high = np.nanmin(losses, axis=0), np.nanmax(losses, axis=0)
        axes.plot(x, mean, color=colours[label], label=label, linewidth=1.5)
        if len(logs) > 1:
            axes.fill_between(x, low, high, color=colours[label], alpha=0.15, linewidth=0)
    axes.set_yscale("log")
    axes.set_xlabel("samples seen")
    axes.set_ylabel("validation loss")
    axes.set_title(f"{task}: validation loss (mean over seeds, min–max band)")
    _legend(axes)
    return _save(figure, path)


def plot_test_accuracy(
    by_label: dict[str, list[dict[str, Any]]], colours: dict[str, Any], path: Path, task: str
) -> Path:
    """Final test accuracy per controller: mean over seeds with ± std error bars."""
    labels = list(by_label)
    values = [
        np.array([_finite_or_nan(r.get("test_accuracy")) for r in by_label[label]])
        for label in labels
    ]
    means = [float(np.nanmean(v)) if np.isfinite(v).any() else 0.0 for v in values]
    stds = [float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else 0.0 for v in values]
    figure, axes = plt.subplots(figsize=(max(6.0, 0.6 * len(labels) + 2), 4.5))
    positions = np.arange(len(labels))
    axes.bar(positions, means, yerr=stds, capsize=3, color=[colours[label] for label in labels])
    finite = [m for m in means if m > 0]
    if finite:
        # Accuracies of sensible controllers sit close together; zoom in so differences show.
        low = max(0.0, min(finite) - 0.05)
        axes.set_ylim(low, min(1.0, max(m + s for m, s in zip(means, stds, strict=True)) + 0.02))
    axes.set_xticks(positions, labels, rotation=45, ha="right")
    axes.set_ylabel("test accuracy")
    axes.set_title(f"{task}: final test accuracy (mean ± std over seeds)")
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def _colours(labels: list[str]) -> dict[str, Any]:
    palette = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: palette(i % palette.N) for i, label in enumerate(labels)}


def _legend(axes: Any) -> None:
    axes.grid(alpha=0.3)
    handles, _ = axes.get_legend_handles_labels()
    if handles:
        # Outside the axes: with a dozen controllers a legend inside would hide curves.
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    # No timestamp in the PNG metadata, so redrawing the same data gives the same bytes.
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)
    return path


def _finite_or_nan(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


__all__ = ["plot_batch_sizes", "plot_comparison", "plot_test_accuracy", "plot_val_loss"]
