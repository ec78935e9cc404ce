"""Plots drawn from hand-made results: files, colour families and honest axes."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import pytest

from arbiter_env.lab import plots


def _run(label: str, controller: str, seed: int, accuracy: float, batch: int) -> dict:
    log = [
        {"samples": 100 * (i + 1), "batch_size": batch, "val_loss": 2.0 / (i + 1)} for i in range(4)
    ]
    return {
        "task": "toy",
        "label": label,
        "controller": controller,
        "seed": seed,
        "status": "ok",
        "diverged": False,
        "test_accuracy": accuracy,
        "log": log,
    }


def _results() -> list[dict]:
    entries = [(f"fixed-{b}", "fixed", b) for b in (8, 16, 32, 64)]
    entries += [("cabs", "cabs", 32), ("simigrad", "simigrad", 64), ("arbiter", "arbiter", 16)]
    return [
        _run(label, controller, seed, 0.90 + 0.01 * i + 0.001 * seed, batch)
        for i, (label, controller, batch) in enumerate(entries)
        for seed in range(2)
    ]


def test_fixed_sizes_are_greys_and_every_controller_has_its_own_colour() -> None:
    style = plots.style_for(_results())
    fixed = [style.colour[f"fixed-{b}"] for b in (8, 16, 32, 64)]
    # Greys: red, green and blue equal; shades differ.
    assert all(math.isclose(c[0], c[1]) and math.isclose(c[1], c[2]) for c in fixed)
    assert len(set(style.colour.values())) == len(style.colour) == 7
    # Many controllers of one kind still get distinct colours (palette, then evenly spaced hues).
    many = plots.Style({f"rule-{i}": "adaptive" for i in range(40)})
    assert len(set(map(tuple, many.colour.values()))) == 40


def test_plot_comparison_writes_png_and_pdf_with_small_multiples_when_crowded(tmp_path) -> None:
    paths = plots.plot_comparison(_results(), tmp_path)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in paths)
    assert names == [
        "performance_profile.png",
        "toy/batch_size.png",
        "toy/test_accuracy.png",
        "toy/val_loss.png",
    ]
    for path in paths:
        assert path.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    # 7 controllers of 3 kinds: one panel per kind.
    style = plots.style_for(_results())
    figure, panels = plots._panels(style, list(style.kinds), "t")
    assert (
        set(panels) == {"fixed", "adaptive", "arbiter"} and len(set(map(id, panels.values()))) == 3
    )
    plt.close(figure)


def test_accuracy_axis_says_when_it_does_not_start_at_zero(tmp_path) -> None:
    results = _results()
    by_label = {}
    for r in results:
        by_label.setdefault(r["label"], []).append(r)
    captured = {}
    original = plots._save

    def keep_label(figure, path):
        captured["xlabel"] = figure.axes[0].get_xlabel()
        captured["xlim"] = figure.axes[0].get_xlim()
        return original(figure, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "_save", keep_label)
        plots.plot_test_accuracy(by_label, plots.style_for(results), tmp_path / "a.png", "toy")
    assert captured["xlim"][0] > 0.8
    assert "not 0" in captured["xlabel"]


# --- awkward controller sets -------------------------------------------------------------------


def _mixed_results() -> list[dict]:
    """One fixed size, one adaptive rule, a user's controller, PPO, Arbiter, a diverging rule."""
    entries = [
        ("fixed-64", "fixed", 64),
        ("noise-scale", "noise-scale", 48),
        ("grow-on-plateau", "grow-on-plateau", 32),  # not registered here: kind "other"
        ("ppo", "ppo", 128),
        ("arbiter", "arbiter", 100),
    ]
    results = [
        _run(label, controller, seed, 0.90 + 0.01 * i + 0.001 * seed, batch)
        for i, (label, controller, batch) in enumerate(entries)
        for seed in range(2)
    ]
    for seed in range(2):
        diverged = _run("cabs", "cabs", seed, math.nan, 8)
        # It blows up to 1e6 and then to NaN: the axis must not follow it.
        diverged["log"] = [
            *diverged["log"][:2],
            {"samples": 300, "batch_size": 8, "val_loss": 1e6},
            {"samples": 400, "batch_size": 8, "val_loss": None},
        ]
        diverged["diverged"] = True
        results.append(diverged)
    return results


def _dashes(line) -> str:
    # get_linestyle() names every custom dash pattern "--": compare the patterns themselves.
    return str(line._unscaled_dash_pattern)


def _captured_figures(monkeypatch) -> dict:
    figures = {}

    def keep(figure, path):
        figures[path.stem] = {
            "lines": [
                (line.get_label(), line.get_color(), _dashes(line), line)
                for axes in figure.axes
                for line in axes.get_lines()
            ],
            "ylim": [axes.get_ylim() for axes in figure.axes],
            "yscale": [axes.get_yscale() for axes in figure.axes],
            "legend": [
                text.get_text()
                for legend in [*figure.legends, *(a.get_legend() for a in figure.axes)]
                if legend is not None
                for text in legend.get_texts()
            ],
            "size": tuple(figure.get_size_inches()),
            "title": figure._suptitle.get_text() if figure._suptitle else None,
        }
        plt.close(figure)  # inspected, not written: saving PNG and PDF is most of the time
        return path

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_a_mixed_controller_set_gets_distinct_styles_and_one_best_fixed_reference(
    tmp_path, monkeypatch
) -> None:
    figures = _captured_figures(monkeypatch)
    plots.plot_comparison(_mixed_results(), tmp_path)
    val_loss = figures["val_loss"]
    curves = {}
    for label, colour, linestyle, line in val_loss["lines"]:
        if line.get_linewidth() >= 1.5 and not label.startswith("_"):
            curves[label] = (matplotlib.colors.to_hex(colour), linestyle)
    # Every controller's curve: a colour and line style no other controller has.
    assert set(curves) == {
        "fixed-64 (best fixed ★)",
        "noise-scale",
        "grow-on-plateau",
        "ppo",
        "arbiter",
    }
    assert len(set(curves.values())) == len(curves)
    assert len({colour for colour, _ in curves.values()}) == len(curves)
    # The best fixed size is the reference: drawn once, black and densely dotted, a style that
    # no other controller's line (the diverged cabs runs included) uses.
    probe = matplotlib.lines.Line2D([], [], linestyle=plots.REFERENCE_LINE)
    reference = ("#000000", _dashes(probe))
    drawn = [
        (matplotlib.colors.to_hex(c), ls)
        for _, c, ls, line in val_loss["lines"]
        if line.get_marker() in ("None", None, "")
    ]
    assert drawn.count(reference) == 1
    assert curves["fixed-64 (best fixed ★)"] == reference
    assert val_loss["legend"].count("fixed-64 (best fixed ★)") == 1
    assert len(val_loss["legend"]) == len(set(val_loss["legend"]))
    # The diverged runs do not set the y-range (1e6 would); each ends in a × on the edge.
    ((_low, high),) = val_loss["ylim"]
    assert high < 10 and val_loss["yscale"] == ["log"]
    crosses = [line for _, _, _, line in val_loss["lines"] if line.get_marker() == "x"]
    assert len(crosses) == 2 and all(line.get_ydata()[0] <= high for line in crosses)
    assert any("diverged" in text for text in val_loss["legend"])
    assert "cabs" in val_loss["legend"]


def test_crowded_plots_list_each_controller_and_the_reference_once(tmp_path, monkeypatch) -> None:
    figures = _captured_figures(monkeypatch)
    plots.plot_comparison(_results() + _mixed_results(), tmp_path)
    legend = figures["val_loss"]["legend"]
    assert len(legend) == len(set(legend))
    assert sum("best fixed" in text for text in legend) == 1
    # The reference is drawn in every panel (a guide), always in its own style.
    labels = [label for label, *_ in figures["val_loss"]["lines"]]
    assert len([x for x in labels if "best fixed" in x]) == 1


def test_column_figures_are_a_paper_column_wide_without_a_title(tmp_path, monkeypatch) -> None:
    figures = _captured_figures(monkeypatch)
    plots.plot_comparison(_mixed_results(), tmp_path, figure_size="column")
    assert all(f["size"][0] == pytest.approx(3.4) for f in figures.values())
    assert all(not f["title"] for f in figures.values())
    page = _captured_figures(monkeypatch)
    plots.plot_comparison(_mixed_results(), tmp_path, figure_size="page")
    assert page["val_loss"]["size"][0] == pytest.approx(7.0) and page["val_loss"]["title"]
    with pytest.raises(ValueError, match="column"):
        plots.plot_comparison(_mixed_results(), tmp_path, figure_size="poster")


def test_the_benchmark_references_of_kind_other_get_own_styles_and_their_own_panel(
    tmp_path, monkeypatch
) -> None:
    # oracle-greedy and cbs-warmup are registered with kind "other", beside every other kind.
    references = [
        _run(label, label, seed, 0.95, 64)
        for label in ("oracle-greedy", "cbs-warmup")
        for seed in range(2)
    ]
    results = _results() + _mixed_results() + references
    style = plots.style_for(results)
    assert style.kinds["oracle-greedy"] == style.kinds["cbs-warmup"] == "other"
    looks = {
        label: (matplotlib.colors.to_hex(style.colour[label]), str(style.line[label]))
        for label in style.kinds
    }
    assert len(set(looks.values())) == len(looks)
    figures = _captured_figures(monkeypatch)
    plots.plot_comparison(results, tmp_path)
    legend = figures["batch_size"]["legend"]
    assert "oracle-greedy" in legend and "cbs-warmup" in legend
    assert len(legend) == len(set(legend))
    assert "performance_profile" in figures
