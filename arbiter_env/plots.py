"""Plots of a comparison, drawn from its saved results (matplotlib, Agg backend; PNG and PDF).

For each task, :func:`plot_comparison` writes, each as ``NAME.png`` and a vector ``NAME.pdf``:

* ``batch_size``: the batch-size schedule of every controller against samples seen (every seed
  drawn; first seed bold);
* ``val_loss``: validation loss against samples seen, mean over seeds with a min–max band; in
  each panel the best fixed size in hindsight is drawn as a black dashed reference;
* ``test_accuracy``: final test accuracy per controller, every seed as a dot and the mean ± standard
  error, on an axis zoomed to the data and labelled so (a dot plot, so no bar length suggests
  a zero baseline); diverged runs are counted in the controller's label;

and across tasks ``performance_profile``: the fraction of runs whose test accuracy exceeds τ, with
95 % stratified-bootstrap bands (:mod:`arbiter_env.report`).

Colours: one colour family per controller kind (fixed sizes grey, schedules green, adaptive rules
orange, HPO purple, RL agents red, Arbiter blue, other controllers brown), shades and line
styles within it. With more than :data:`CROWDED` controllers the curves are split into small
multiples, one panel per kind, on shared axes.

The inputs are result dicts as :func:`arbiter_env.experiments.results.load_results` returns them (with
``"log"``: the interval rows of the run), so plots can be redrawn without rerunning anything.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from arbiter_env import report

CROWDED = 6
"""More controllers than this in one plot: one panel per controller kind."""

FAMILIES: dict[str, str] = {
    "fixed": "Greys",
    "schedule": "Greens",
    "adaptive": "Oranges",
    "hpo": "Purples",
    "rl": "Reds",
    "arbiter": "Blues",
    "other": "YlOrBr",
}
"""Controller kind -> matplotlib sequential colour map of its family."""

LINE_STYLES: tuple[Any, ...] = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))

FORMATS = ("png", "pdf")


class Style:
    """Colour, line style and kind of every controller label of a plot."""

    def __init__(self, kinds: dict[str, str]):
        self.kinds = dict(kinds)
        self.colour: dict[str, Any] = {}
        self.line: dict[str, Any] = {}
        for kind in FAMILIES:
            members = [label for label, k in kinds.items() if k == kind]
            cmap = plt.get_cmap(FAMILIES[kind])
            # Light ends of sequential maps are invisible on white: stay in 0.45..0.95.
            shades = [0.7] if len(members) == 1 else np.linspace(0.45, 0.95, len(members))
            for index, label in enumerate(members):
                self.colour[label] = cmap(float(shades[index]))
                self.line[label] = LINE_STYLES[index % len(LINE_STYLES)]

    def kinds_present(self, labels: list[str]) -> list[str]:
        """The controller kinds among ``labels``, in the fixed order of ``FAMILIES``."""
        return [kind for kind in FAMILIES if any(self.kinds[label] == kind for label in labels)]


def style_for(results: list[dict[str, Any]]) -> Style:
    """The :class:`Style` of every label in ``results`` (kinds from the registered names)."""
    kinds: dict[str, str] = {}
    for result in results:
        kinds.setdefault(result["label"], report.controller_kind(str(result.get("controller", ""))))
    return Style(kinds)


def plot_comparison(results: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Writes every plot under ``out_dir`` (per task in ``out_dir/TASK/``); returns the PNG paths.

    Each PNG has a PDF of the same name beside it.
    """
    out_dir = Path(out_dir)
    paths: list[Path] = []
    style = style_for(results)
    best = report.best_fixed_labels(report.summarize(results))
    for task in dict.fromkeys(r["task"] for r in results):
        task_results = [r for r in results if r["task"] == task and r.get("status") == "ok"]
        if not task_results:
            continue
        folder = out_dir / task
        folder.mkdir(parents=True, exist_ok=True)
        labels = list(dict.fromkeys(r["label"] for r in task_results))
        by_label = {label: [r for r in task_results if r["label"] == label] for label in labels}
        paths.append(plot_batch_sizes(by_label, style, folder / "batch_size.png", task))
        paths.append(
            plot_val_loss(by_label, style, folder / "val_loss.png", task, best=best.get(task))
        )
        paths.append(plot_test_accuracy(by_label, style, folder / "test_accuracy.png", task))
    table = report.score_table(results)
    if table.scores:
        paths.append(plot_performance_profile(table, style, out_dir / "performance_profile.png"))
    return paths


def _panels(style: Style, labels: list[str], title: str) -> tuple[Any, dict[str, Any]]:
    """One axes for all labels, or a grid of small multiples (one per kind) when crowded."""
    kinds = style.kinds_present(labels)
    if len(labels) <= CROWDED or len(kinds) == 1:
        figure, axes = plt.subplots(figsize=(9, 4.5))
        figure.suptitle(title)
        return figure, dict.fromkeys(kinds, axes)
    columns = min(3, len(kinds))
    rows = math.ceil(len(kinds) / columns)
    figure, grid = plt.subplots(
        rows,
        columns,
        figsize=(4.2 * columns, 3.2 * rows + 0.6),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    figure.suptitle(title)
    flat = list(grid.flat)
    for extra in flat[len(kinds) :]:
        extra.set_visible(False)
    panels = dict(zip(kinds, flat, strict=False))
    for kind, axes in panels.items():
        axes.set_title(kind, fontsize="medium")
    return figure, panels


def plot_batch_sizes(
    by_label: dict[str, list[dict[str, Any]]], style: Style, path: Path, task: str
) -> Path:
    """Batch size (log scale) against samples seen, as steps: one interval, one size."""
    labels = list(by_label)
    figure, panels = _panels(
        style, labels, f"{task}: batch-size schedules (every seed; first seed bold)"
    )
    for label, runs in by_label.items():
        axes = panels[style.kinds[label]]
        schedules = [[row["batch_size"] for row in run.get("log") or []] for run in runs]
        # A constant schedule (a fixed size) is labelled at its right end instead of in a
        # legend, which would cover the top lines of a panel of fixed sizes.
        constant = all(len(set(s)) == 1 for s in schedules) and len({s[0] for s in schedules}) == 1
        for index, run in enumerate(runs):
            log = run.get("log") or []
            if not log:
                continue
            edges = [0, *(row["samples"] for row in log)]
            axes.stairs(
                schedules[index],
                edges,
                color=style.colour[label],
                linestyle=style.line[label],
                alpha=0.9 if index == 0 else 0.4,
                linewidth=1.8 if index == 0 else 0.9,
                label=label if index == 0 and not constant else None,
                baseline=None,
            )
        if constant and schedules[0]:
            end = (runs[0].get("log") or [{}])[-1].get("samples", 0)
            axes.annotate(
                label,
                (end, schedules[0][0]),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize="x-small",
                color=style.colour[label],
                annotation_clip=False,
            )
    for axes in _unique(panels):
        axes.set_yscale("log", base=2)
        _finish(axes)
    _label_outer(panels, "samples seen", "batch size (log scale)")
    return _save(figure, path)


def plot_val_loss(
    by_label: dict[str, list[dict[str, Any]]],
    style: Style,
    path: Path,
    task: str,
    best: str | None = None,
) -> Path:
    """Validation loss (log scale) against samples seen: mean over seeds, min–max band.

    ``best`` (the best fixed size in hindsight) is drawn in every panel as a black dashed line.
    """
    labels = list(by_label)
    figure, panels = _panels(
        style, labels, f"{task}: validation loss (mean over seeds, min–max band)"
    )
    curves = {label: _mean_curve(runs) for label, runs in by_label.items()}
    for label, curve in curves.items():
        if curve is None:
            continue
        x, mean, low, high, seeds = curve
        axes = panels[style.kinds[label]]
        axes.plot(
            x, mean, color=style.colour[label], linestyle=style.line[label], label=label, lw=1.6
        )
        if seeds > 1:
            axes.fill_between(x, low, high, color=style.colour[label], alpha=0.15, linewidth=0)
    best_curve = curves.get(best) if best is not None else None
    if best_curve is not None:
        x, mean, *_ = best_curve
        for kind, axes in panels.items():
            if kind != "fixed" or len(set(map(id, panels.values()))) == 1:
                axes.plot(
                    x, mean, color="black", linestyle="--", lw=1.0, label=f"best fixed: {best}"
                )
    for axes in _unique(panels):
        axes.set_yscale("log")
        _finish(axes)
    _label_outer(panels, "samples seen", "validation loss (log scale)")
    return _save(figure, path)


def plot_test_accuracy(
    by_label: dict[str, list[dict[str, Any]]], style: Style, path: Path, task: str
) -> Path:
    """Final test accuracy per controller: each seed a dot, the mean ± standard error a bar.

    Horizontal, one row per controller, on an axis zoomed to the data: dots carry no length, so
    a zoomed axis does not exaggerate differences the way a zoomed bar chart would; the axis
    label says that it does not start at 0.
    """
    labels = list(by_label)
    figure, axes = plt.subplots(figsize=(7.5, 0.38 * len(labels) + 1.6))
    finite_all: list[float] = []
    names = []
    for row, label in enumerate(labels):
        runs = by_label[label]
        values = np.array([_finite_or_nan(r.get("test_accuracy")) for r in runs])
        diverged = sum(bool(r.get("diverged")) for r in runs)
        finite = values[np.isfinite(values)]
        finite_all += finite.tolist()
        names.append(label + (f" ({diverged} diverged)" if diverged else ""))
        colour = style.colour[label]
        axes.scatter(finite, np.full(len(finite), row), s=14, color=colour, alpha=0.6, zorder=2)
        mean, sem, n = report.mean_sem(finite.tolist())
        if n:
            axes.errorbar(
                mean,
                row,
                xerr=sem if math.isfinite(sem) else None,
                fmt="D",
                color=colour,
                markeredgecolor="black",
                markersize=6,
                capsize=3,
                zorder=3,
            )
    axes.set_yticks(range(len(labels)), names)
    axes.invert_yaxis()
    axes.grid(axis="x", alpha=0.3)
    xlabel = "test accuracy"
    if finite_all:
        low, high = min(finite_all), max(finite_all)
        pad = max(0.01, 0.08 * (high - low))
        lower, upper = max(0.0, low - pad), min(1.0, high + pad)
        axes.set_xlim(lower, upper)
        if lower > 0:
            xlabel += f" (axis zoomed to the data: starts at {lower:.2f}, not 0)"
    axes.set_xlabel(xlabel)
    axes.set_title(f"{task}: final test accuracy (dots: seeds; ◆: mean ± s.e.)")
    return _save(figure, path)


def plot_performance_profile(table: report.ScoreTable, style: Style, path: Path) -> Path:
    """Run-score distribution across tasks and seeds, with 95 % bootstrap bands (rliable's)."""
    pooled = np.concatenate([s for scores in table.scores.values() for s in scores])
    # Diverged runs score 0 and would stretch the axis over an empty range: zoom to the runs
    # that finished (a diverged run still counts, as a run below every τ shown).
    finished = pooled[pooled > 0] if np.any(pooled > 0) else pooled
    low, high = float(finished.min()), float(finished.max())
    pad = max(0.01, 0.05 * (high - low))
    taus = np.linspace(max(0.0, low - pad), min(1.0, high + pad), 201)
    labels = list(table.scores)
    figure, panels = _panels(
        style,
        labels,
        f"Performance profile over {len(table.tasks)} task(s), all seeds (95% bootstrap bands)",
    )
    for label, scores in table.scores.items():
        profile, band_low, band_high = report.profile_interval(scores, taus)
        axes = panels[style.kinds[label]]
        axes.plot(
            taus, profile, color=style.colour[label], linestyle=style.line[label], label=label
        )
        axes.fill_between(taus, band_low, band_high, color=style.colour[label], alpha=0.1, lw=0)
    if table.reference is not None and len(_unique(panels)) > 1:
        reference = report.performance_profile(table.reference, taus)
        for kind, axes in panels.items():
            if kind != "fixed":
                axes.plot(taus, reference, color="black", ls="--", lw=1.0, label="best fixed")
    for axes in _unique(panels):
        axes.set_ylim(0, 1.02)
        _finish(axes)
    xlabel = "test accuracy τ" + (f" (axis from {taus[0]:.2f})" if taus[0] > 0 else "")
    _label_outer(panels, xlabel, "fraction of runs with score > τ")
    return _save(figure, path)


def _mean_curve(
    runs: list[dict[str, Any]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int] | None:
    logs = [run.get("log") or [] for run in runs]
    length = max((len(log) for log in logs), default=0)
    if not length:
        return None
    # Interval ends are the same samples for every run of a task (they split one budget); a
    # diverged run stops early and pads with NaN.
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
    return x, mean, low, high, len(logs)


def _unique(panels: dict[str, Any]) -> list[Any]:
    return list({id(axes): axes for axes in panels.values()}.values())


def _finish(axes: Any) -> None:
    axes.grid(alpha=0.3)
    handles, _ = axes.get_legend_handles_labels()
    if handles:
        axes.legend(fontsize="x-small", loc="best", framealpha=0.8)


def _label_outer(panels: dict[str, Any], xlabel: str, ylabel: str) -> None:
    for axes in _unique(panels):
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        if len(panels) > 1 and hasattr(axes, "label_outer"):
            axes.label_outer()


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    path = path.with_suffix(".png")
    # No timestamps in the metadata, so redrawing the same data gives the same bytes.
    figure.savefig(path, dpi=110, metadata={"Software": None})
    figure.savefig(path.with_suffix(".pdf"), metadata={"CreationDate": None, "Producer": None})
    plt.close(figure)
    return path


def _finite_or_nan(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


__all__ = [
    "CROWDED",
    "FAMILIES",
    "Style",
    "plot_batch_sizes",
    "plot_comparison",
    "plot_performance_profile",
    "plot_test_accuracy",
    "plot_val_loss",
    "style_for",
]
