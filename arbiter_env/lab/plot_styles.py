"""How a comparison's figures tell controllers apart: a colour and line style for each.

Every controller gets a colour of its own, whatever the mix of kinds: fixed sizes in shades of
grey (solid), every other controller the next colour of a qualitative palette (then evenly
spaced hues when it runs out), with a line style per kind (schedules dashed, adaptive rules
dash-dot, RL agents long dashes, Arbiter solid, ...). The best fixed size in hindsight is the
reference: black, densely dotted and thick, a style no controller uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps

from arbiter_env.lab import report

KINDS = ("fixed", "schedule", "adaptive", "hpo", "rl", "arbiter", "other")
"""Controller kinds in the order of the panels."""

KIND_LINES: dict[str, Any] = {
    "fixed": "-",
    "schedule": "--",
    "adaptive": "-.",
    "hpo": (0, (3, 1, 1, 1, 1, 1)),
    "rl": (0, (6, 2)),
    "arbiter": "-",
    "other": (0, (4, 1, 1, 1)),
}
"""The line style of each controller kind."""

REFERENCE_COLOUR = "black"
REFERENCE_LINE: Any = (0, (1, 1))
"""The best fixed size's style: black and densely dotted, which no controller uses."""
REFERENCE_WIDTH = 2.4


def _palette() -> list[Any]:
    # tab10 without its grey (kept for fixed sizes), then tab20's light variants.
    tab10 = [colormaps["tab10"](i) for i in range(10) if i != 7]
    tab20_light = [colormaps["tab20"](2 * i + 1) for i in range(10) if i != 7]
    return tab10 + tab20_light


class Style:
    """Colour, line style and kind of every controller label of a plot.

    Every label gets a different colour (fixed sizes greys from light to dark, the others a
    qualitative palette, then evenly spaced hues when it runs out), so no two controllers share
    a colour and line style. ``reference`` (the best fixed size, if any) is drawn in the
    reference style instead.
    """

    def __init__(self, kinds: dict[str, str], reference: str | None = None):
        self.kinds = {label: kind if kind in KINDS else "other" for label, kind in kinds.items()}
        self.reference = reference
        self.colour: dict[str, Any] = {}
        self.line: dict[str, Any] = {}
        fixed = [label for label, kind in self.kinds.items() if kind == "fixed"]
        # Greys between 0.35 and 0.75 of the map: visible on white, never near the black reference.
        shades = [0.55] if len(fixed) == 1 else np.linspace(0.35, 0.75, len(fixed))
        for shade, label in zip(shades, fixed, strict=False):
            self.colour[label] = colormaps["Greys"](float(shade))
        others = [label for label in self.kinds if label not in self.colour]
        palette = _palette()
        extra = max(0, len(others) - len(palette))
        hues = [colormaps["hsv"](h) for h in np.linspace(0.0, 1.0, extra, endpoint=False)]
        for label, colour in zip(others, palette + hues, strict=False):
            self.colour[label] = colour
        for label, kind in self.kinds.items():
            self.line[label] = KIND_LINES[kind]

    def kinds_present(self, labels: list[str]) -> list[str]:
        """The controller kinds among ``labels``, in the fixed order of :data:`KINDS`."""
        return [kind for kind in KINDS if any(self.kinds[label] == kind for label in labels)]

    def curve(self, label: str) -> dict[str, Any]:
        """Keyword arguments of ``label``'s curve (the reference style for the best fixed size)."""
        if label == self.reference:
            return {
                "color": REFERENCE_COLOUR,
                "linestyle": REFERENCE_LINE,
                "lw": REFERENCE_WIDTH,
                "label": f"{label} (best fixed ★)",
                "zorder": 1.5,  # under the controllers' curves: a guide, not a cover
            }
        return {
            "color": self.colour[label],
            "linestyle": self.line[label],
            "lw": 1.6,
            "label": label,
        }


def style_for(results: list[dict[str, Any]], reference: str | None = None) -> Style:
    """The :class:`Style` of every label in ``results`` (kinds from the registered names)."""
    kinds: dict[str, str] = {}
    for result in results:
        kinds.setdefault(result["label"], report.controller_kind(str(result.get("controller", ""))))
    return Style(kinds, reference)


__all__ = [
    "KINDS",
    "KIND_LINES",
    "REFERENCE_COLOUR",
    "REFERENCE_LINE",
    "REFERENCE_WIDTH",
    "Style",
    "style_for",
]
