"""Plots drawn from hand-made results: files, colour families and honest axes."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest

from arbiter_env import plots


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


def test_each_controller_kind_gets_its_own_colour_family_and_distinct_styles() -> None:
    style = plots.style_for(_results())
    fixed = [style.colour[f"fixed-{b}"] for b in (8, 16, 32, 64)]
    # Greys: red, green and blue equal; shades and line styles differ within the family.
    assert all(math.isclose(c[0], c[1]) and math.isclose(c[1], c[2]) for c in fixed)
    assert len(set(fixed)) == 4
    assert len({str(style.line[f"fixed-{b}"]) for b in (8, 16, 32, 64)}) == 4
    cabs, arbiter = style.colour["cabs"], style.colour["arbiter"]
    assert cabs[0] > cabs[2] and arbiter[2] > arbiter[0]  # orange family, blue family


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
