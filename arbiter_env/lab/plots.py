"""Plots of a comparison, drawn from its saved results (matplotlib without pyplot; PNG and PDF).

For each task, :func:`plot_comparison` writes, each as ``NAME.png`` and a vector ``NAME.pdf``:

* ``batch_size``: the batch-size schedule of every controller against samples seen (every seed
  drawn; first seed bold);
* ``val_loss``: validation loss against samples seen, mean over the seeds that finished with a
  min–max band; a run that diverged is drawn thin up to its divergence and ends in a ×;
* ``test_accuracy``: final test accuracy per controller, every seed as a dot and the mean ± standard
  error, on an axis zoomed to the data and labelled so (a dot plot, so no bar length suggests
  a zero baseline); diverged runs are counted in the controller's label;

and across tasks ``performance_profile``: the fraction of runs whose normalised score exceeds τ,
with 95 % stratified-bootstrap bands (:mod:`arbiter_env.lab.aggregates`: 0 = the median fixed size,
1 = the best fixed size or the oracle).

Styles (:mod:`arbiter_env.lab.plot_styles`): every controller gets a colour and line style of its
own, whatever the mix of kinds; the best fixed size in hindsight is the reference, drawn in a
style no controller uses and listed once in the legend. With more than :data:`CROWDED`
controllers the curves are split into small multiples, one panel per kind, on shared axes, with
one legend for the figure.

Runs that diverged never set an axis range: the loss axis is fitted to the runs that finished
(log scale when they are all positive), and a diverged run's last point is a × clipped to the
axis edge. A report where every run diverged still gets every figure.

``figure_size`` is ``"page"`` (7 in wide, titled) or ``"column"`` (3.4 in wide, a paper column,
no title: the caption goes in the paper).

The inputs are result dicts as :func:`arbiter_env.lab.experiments.results.load_results` returns them (with
``"log"``: the interval rows of the run), so plots can be redrawn without rerunning anything.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from arbiter_env.lab import aggregates, report, rliable_stats
from arbiter_env.lab.plot_styles import (
    KIND_LINES,
    KINDS,
    REFERENCE_COLOUR,
    REFERENCE_LINE,
    Style,
    style_for,
)

FigureSize = Literal["page", "column"]
FIGURE_SIZES: tuple[FigureSize, ...] = ("page", "column")
_WIDTH = {"page": 7.0, "column": 3.4}
_FONT_SIZE = {"page": 9.0, "column": 7.0}

CROWDED = 6
"""More controllers than this in one plot: one panel per controller kind."""

DIVERGED_MARKER = "x"

FORMATS = ("png", "pdf")


def plot_comparison(
    results: list[dict[str, Any]], out_dir: str | Path, figure_size: FigureSize = "page"
) -> list[Path]:
    """Writes every plot under ``out_dir`` (per task in ``out_dir/TASK/``); returns the PNG paths.

    Each PNG has a PDF of the same name beside it. Every figure is written whatever the
    outcome (every run diverged, a single run, no fixed size).
    """
    if figure_size not in FIGURE_SIZES:
        raise ValueError(f"figure_size {figure_size!r}: use one of {', '.join(FIGURE_SIZES)}.")
    out_dir = Path(out_dir)
    paths: list[Path] = []
    best = report.best_fixed_labels(report.summarize(results))
    with _fonts(figure_size):
        for task in dict.fromkeys(r["task"] for r in results):
            task_results = [r for r in results if r["task"] == task and r.get("status") == "ok"]
            if not task_results:
                continue
            style = style_for(results, reference=best.get(task))
            folder = out_dir / task
            folder.mkdir(parents=True, exist_ok=True)
            labels = list(dict.fromkeys(r["label"] for r in task_results))
            by_label = {label: [r for r in task_results if r["label"] == label] for label in labels}
            for draw, name in (
                (plot_batch_sizes, "batch_size"),
                (plot_val_loss, "val_loss"),
                (plot_test_accuracy, "test_accuracy"),
            ):
                paths.append(draw(by_label, style, folder / f"{name}.png", task, figure_size))
        if any(r.get("status") == "ok" for r in results):
            table = aggregates.score_table(results)
            paths.append(
                plot_performance_profile(
                    table, style_for(results), out_dir / "performance_profile.png", figure_size
                )
            )
    return paths


@contextlib.contextmanager
def _fonts(figure_size: FigureSize) -> Iterator[None]:
    with matplotlib.rc_context({"font.size": _FONT_SIZE[figure_size], "legend.fontsize": "small"}):
        yield


def _figure(
    size: tuple[float, float], rows: int = 1, columns: int = 1, **subplots: Any
) -> tuple[Figure, Any]:
    """A figure and its axes, made without pyplot: no backend to choose, no global figure list."""
    figure = Figure(figsize=size, layout="constrained")
    return figure, figure.subplots(rows, columns, **subplots)


def _panels(
    style: Style, labels: list[str], title: str, figure_size: FigureSize = "page"
) -> tuple[Any, dict[str, Any]]:
    """One axes for all labels, or a grid of small multiples (one per kind) when crowded."""
    kinds = style.kinds_present(labels)
    width = _WIDTH[figure_size]
    if len(labels) <= CROWDED or len(kinds) == 1:
        figure, axes = _figure((width, width * 0.55))
        _title(figure, title, figure_size)
        return figure, dict.fromkeys(kinds, axes)
    columns = min(3 if figure_size == "page" else 2, len(kinds))
    rows = math.ceil(len(kinds) / columns)
    panel = width / columns
    figure, grid = _figure(
        (width, panel * 0.8 * rows + 1.2), rows, columns, sharex=True, sharey=True, squeeze=False
    )
    _title(figure, title, figure_size)
    flat = list(grid.flat)
    for extra in flat[len(kinds) :]:
        extra.set_visible(False)
    panels = dict(zip(kinds, flat, strict=False))
    for kind, axes in panels.items():
        axes.set_title(kind, fontsize="medium")
    return figure, panels


def _title(figure: Any, title: str, figure_size: FigureSize) -> None:
    if figure_size == "page":
        figure.suptitle(title)


def plot_batch_sizes(
    by_label: dict[str, list[dict[str, Any]]],
    style: Style,
    path: Path,
    task: str,
    figure_size: FigureSize = "page",
) -> Path:
    """Batch size (log scale) against samples seen, as steps: one interval, one size."""
    labels = list(by_label)
    figure, panels = _panels(
        style, labels, f"{task}: batch-size schedules (every seed; first seed bold)", figure_size
    )
    for label, runs in by_label.items():
        axes = panels[style.kinds[label]]
        curve = style.curve(label)
        for index, run in enumerate(runs):
            log = run.get("log") or []
            sizes = [_finite_or_nan(row.get("batch_size")) for row in log]
            if not log or not all(size > 0 for size in sizes):
                continue
            edges = [0, *(row["samples"] for row in log)]
            axes.stairs(
                sizes,
                edges,
                color=curve["color"],
                linestyle=curve["linestyle"],
                alpha=0.9 if index == 0 else 0.4,
                linewidth=curve["lw"] if index == 0 else 0.8,
                label=curve["label"] if index == 0 else None,
                baseline=None,
            )
            if run.get("diverged"):
                _mark_divergence(axes, edges[-1], sizes[-1], curve["color"])
    for axes in _unique(panels):
        if axes.has_data():
            axes.set_yscale("log", base=2)
        _finish(axes)
    _label_outer(panels, "samples seen", "batch size (log scale)")
    _legend(figure, panels)
    return _save(figure, path)


def plot_val_loss(
    by_label: dict[str, list[dict[str, Any]]],
    style: Style,
    path: Path,
    task: str,
    figure_size: FigureSize = "page",
) -> Path:
    """Validation loss against samples seen: mean over the seeds that finished, min–max band.

    A diverged run is a thin line up to its last finite loss, ending in a ×; the axis is fitted
    to the runs that finished, so a blow-up never squeezes them (a × beyond it sits on the
    edge). The best fixed size (``style.reference``) is drawn in the reference style in every
    panel.
    """
    labels = list(by_label)
    figure, panels = _panels(
        style, labels, f"{task}: validation loss (mean over seeds, min–max band)", figure_size
    )
    finished_values: list[float] = []
    ends: list[tuple[Any, float, float, Any]] = []
    for label, runs in by_label.items():
        targets = _unique(panels) if label == style.reference else [panels[style.kinds[label]]]
        for number, axes in enumerate(targets):
            curve = style.curve(label) | ({"label": None} if number else {})
            finished_values += _draw_losses(axes, runs, curve, ends)
    limits = _loss_limits(finished_values)
    for axes in _unique(panels):
        if limits is None:
            _note(axes, "every run diverged")
        else:
            scale, bottom, top = limits
            axes.set_yscale(scale)
            axes.set_ylim(bottom, top)
    for axes, last_x, last_y, colour in ends:
        _mark_divergence(axes, last_x, last_y, colour)
    scale_note = " (log scale)" if limits is not None and limits[0] == "log" else ""
    for axes in _unique(panels):
        _finish(axes)
    _label_outer(panels, "samples seen", f"validation loss{scale_note}")
    _legend(figure, panels, diverged=bool(ends))
    return _save(figure, path)


def _draw_losses(
    axes: Any,
    runs: list[dict[str, Any]],
    curve: dict[str, Any],
    ends: list[tuple[Any, float, float, Any]],
) -> list[float]:
    """One controller's loss curves in ``axes``; returns the finished runs' values.

    Adds each diverged run's last point to ``ends``. The label goes on the first line drawn.
    """
    finished_values: list[float] = []
    mean_curve = _mean_curve([run for run in runs if not run.get("diverged")])
    if mean_curve is not None:
        x, mean, low, high, seeds = mean_curve
        axes.plot(x, mean, **curve)
        if seeds > 1:
            axes.fill_between(x, low, high, color=curve["color"], alpha=0.15, linewidth=0)
        finished_values += [v for v in (*low, *high) if math.isfinite(v)]
        curve = curve | {"label": None}
    for run in runs:
        if not run.get("diverged"):
            continue
        x, y = _losses(run)
        if len(x):
            thin = {"color": curve["color"], "linestyle": curve["linestyle"], "lw": 0.8}
            axes.plot(x, y, alpha=0.7, label=curve["label"], **thin)
            ends.append((axes, float(x[-1]), float(y[-1]), curve["color"]))
        elif curve["label"] is not None:
            axes.plot([], [], **curve)  # diverged before its first interval: still in the legend
        curve = curve | {"label": None}
    return finished_values


def _note(axes: Any, text: str) -> None:
    """Grey text in the middle of ``axes`` (what is missing, and why)."""
    axes.text(
        0.5, 0.5, text, ha="center", va="center", wrap=True, transform=axes.transAxes, color="0.3"
    )


def _losses(run: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A run's samples and finite validation losses (a non-finite loss ends the curve)."""
    xs, ys = [], []
    for row in run.get("log") or []:
        loss = _finite_or_nan(row.get("val_loss"))
        if not math.isfinite(loss):
            break
        xs.append(float(row["samples"]))
        ys.append(loss)
    return np.asarray(xs), np.asarray(ys)


def _loss_limits(values: list[float]) -> tuple[str, float, float] | None:
    """Axis scale and limits fitted to the finished runs' values (``None``: there are none)."""
    if not values:
        return None
    low, high = min(values), max(values)
    if low > 0:
        ratio = (high / low) ** 0.05 if high > low else 1.2
        return "log", low / ratio, high * ratio
    pad = 0.05 * (high - low) or 0.1
    return "linear", low - pad, high + pad


def _mark_divergence(axes: Any, x: float, y: float, colour: Any) -> None:
    """A × where a run diverged, clipped to the axes' edge when it lies beyond it."""
    low, high = axes.get_ylim()
    y = min(max(y, low), high) if math.isfinite(y) else high
    axes.plot(
        [x],
        [y],
        marker=DIVERGED_MARKER,
        color=colour,
        markersize=7,
        mew=2,
        ls="none",
        clip_on=False,
        zorder=5,
    )


def plot_test_accuracy(
    by_label: dict[str, list[dict[str, Any]]],
    style: Style,
    path: Path,
    task: str,
    figure_size: FigureSize = "page",
) -> Path:
    """Final test accuracy per controller: each seed a dot, the mean ± standard error a bar.

    Horizontal, one row per controller, on an axis zoomed to the data: dots carry no length, so
    a zoomed axis does not exaggerate differences the way a zoomed bar chart would; the axis
    label says that it does not start at 0.
    """
    labels = list(by_label)
    width = _WIDTH[figure_size]
    figure, axes = _figure((width, 0.22 * width / 3.4 * len(labels) + 1.2))
    finite_all: list[float] = []
    names = []
    for row, label in enumerate(labels):
        runs = by_label[label]
        finite_all += _accuracy_row(axes, row, runs, style.curve(label)["color"])
        diverged = sum(bool(r.get("diverged")) for r in runs)
        star = " ★" if label == style.reference else ""
        names.append(label + star + (f" ({diverged} diverged)" if diverged else ""))
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
            xlabel += f" (axis from {lower:.2f}, not 0)"
    else:
        axes.set_xlim(0.0, 1.0)
        _note(axes, "no run finished")
    axes.set_xlabel(xlabel)
    if figure_size == "page":
        axes.set_title(f"{task}: final test accuracy (dots: seeds; ◆: mean ± s.e.)")
    return _save(figure, path)


def _accuracy_row(axes: Any, row: int, runs: list[dict[str, Any]], colour: Any) -> list[float]:
    """One controller's dots and mean ± s.e. at height ``row``; returns its finite accuracies."""
    values = np.array([_finite_or_nan(r.get("test_accuracy")) for r in runs])
    finite = values[np.isfinite(values)]
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
    return finite.tolist()


def plot_performance_profile(
    table: aggregates.ScoreTable, style: Style, path: Path, figure_size: FigureSize = "page"
) -> Path:
    """Run-score distribution across tasks and seeds, with 95 % bootstrap bands (rliable's).

    Scores are normalised per task (``table.normalised``): 0 and 1, the median and the best
    fixed size (or the oracle), are marked. Without comparable scores the figure says why.
    """
    labels = list(table.scores)
    scale = "normalised " if table.normalised else ""
    metric = table.metric.replace("_", " ")
    if not labels:
        width = _WIDTH[figure_size]
        figure, axes = _figure((width, width * 0.4))
        _note(axes, table.note or "no scores")
        axes.set_axis_off()
        return _save(figure, path)
    figure, panels = _panels(
        style,
        labels,
        f"Performance profile over {len(table.tasks)} task(s), all seeds (95% bootstrap bands)",
        figure_size,
    )
    taus = _profile_taus(table)
    for label, scores in table.scores.items():
        profile, band_low, band_high = rliable_stats.profile_interval(scores, taus)
        axes = panels[style.kinds[label]]
        curve = style.curve(label)
        axes.plot(taus, profile, **curve)
        axes.fill_between(taus, band_low, band_high, color=curve["color"], alpha=0.1, lw=0)
    for axes in _unique(panels):
        axes.set_ylim(0, 1.02)
        if table.normalised:
            for tau in (0.0, 1.0):
                axes.axvline(tau, color="0.6", lw=0.6, zorder=0)
        _finish(axes)
    xlabel = f"{scale}{metric} τ"
    if table.normalised:
        upper = ", ".join(sorted(set(table.reference_labels.values()) & {aggregates.ORACLE_LABEL}))
        xlabel += f" (0: median fixed, 1: {upper or 'best fixed'})"
    _label_outer(panels, xlabel, "fraction of runs with score > τ")
    _legend(figure, panels)
    return _save(figure, path)


def _profile_taus(table: aggregates.ScoreTable) -> np.ndarray:
    """The thresholds τ of the profile: the finished runs' range, 0 and 1 included."""
    pooled = np.concatenate([s for scores in table.scores.values() for s in scores])
    # Diverged runs score below every finished run of their task and would stretch the axis
    # over an empty range: zoom to the runs that finished (a diverged run still counts, as a
    # run below every τ shown).
    floor = pooled.min()
    finished = pooled[pooled > floor] if np.any(pooled > floor) else pooled
    low, high = float(finished.min()), float(finished.max())
    if table.normalised:
        low, high = min(low, 0.0), max(high, 1.0)
    pad = max(0.01, 0.05 * (high - low))
    low, high = low - pad, high + pad
    if not table.normalised and table.metric == report.SCORE_METRIC:
        low, high = max(0.0, low), min(1.0, high)  # raw accuracy
    return np.linspace(low, high, 201)


def _mean_curve(
    runs: list[dict[str, Any]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int] | None:
    logs = [run.get("log") or [] for run in runs]
    length = max((len(log) for log in logs), default=0)
    if not length:
        return None
    # Interval ends are the same samples for every run of a task (they split one budget).
    samples = next(log for log in logs if len(log) == length)
    x = np.array([row["samples"] for row in samples], dtype=float)
    losses = np.full((len(logs), length), np.nan)
    for i, log in enumerate(logs):
        for j, row in enumerate(log):
            losses[i, j] = _finite_or_nan(row.get("val_loss"))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no finite loss at a point
        mean = np.nanmean(losses, axis=0)
        low, high = np.nanmin(losses, axis=0), np.nanmax(losses, axis=0)
    return x, mean, low, high, len(logs)


def _unique(panels: dict[str, Any]) -> list[Any]:
    return list({id(axes): axes for axes in panels.values()}.values())


def _finish(axes: Any) -> None:
    axes.grid(alpha=0.3)


def _legend(figure: Any, panels: dict[str, Any], diverged: bool = False) -> None:
    """One legend: in the axes for a single panel, below the grid for small multiples.

    Each label once (the reference is drawn in every panel but listed once).
    """
    handles: dict[str, Any] = {}
    for axes in _unique(panels):
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if diverged:
        handles["run diverged (×, clipped to the axis)"] = Line2D(
            [], [], marker=DIVERGED_MARKER, color="0.2", ls="none", mew=2
        )
    if not handles:
        return
    axes_list = _unique(panels)
    if len(axes_list) == 1:
        axes_list[0].legend(handles.values(), handles.keys(), loc="best", framealpha=0.8)
        return
    figure.legend(
        handles.values(),
        handles.keys(),
        loc="outside lower center",
        ncols=min(4, len(handles)),
        framealpha=0.8,
    )


def _label_outer(panels: dict[str, Any], xlabel: str, ylabel: str) -> None:
    for axes in _unique(panels):
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        if len(panels) > 1 and hasattr(axes, "label_outer"):
            axes.label_outer()


def _save(figure: Any, path: Path) -> Path:
    path = path.with_suffix(".png")
    # No timestamps in the metadata, so redrawing the same data gives the same bytes.
    figure.savefig(path, dpi=150, metadata={"Software": None})
    figure.savefig(path.with_suffix(".pdf"), metadata={"CreationDate": None, "Producer": None})
    return path


def _finite_or_nan(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


__all__ = [
    "CROWDED",
    "FIGURE_SIZES",
    "KINDS",
    "KIND_LINES",
    "REFERENCE_COLOUR",
    "REFERENCE_LINE",
    "FigureSize",
    "Style",
    "plot_batch_sizes",
    "plot_comparison",
    "plot_performance_profile",
    "plot_test_accuracy",
    "plot_val_loss",
    "style_for",
]
