"""What ``BatchSizeEnv.render()`` draws: the episode so far, as text or as an image.

``"ansi"`` gives one line of text per interval; ``"rgb_array"`` gives an RGB image (``uint8``,
height × width × 3) with the batch size and the validation loss against the training samples
consumed, which is what Gymnasium's ``RecordVideo`` and SB3's ``VecVideoRecorder`` record.
The image is drawn with matplotlib's Agg canvas into memory (no window, no pyplot state), on one
figure the renderer keeps, so a frame costs a redraw rather than a new figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RENDER_MODES = ("ansi", "rgb_array")
FRAME_SIZE = (640, 480)
"""Width and height of an ``rgb_array`` frame in pixels (even, as video encoders need)."""


@dataclass
class EpisodeHistory:
    """The points of the current episode that ``render`` shows, one per observation."""

    budget: int = 1
    num_intervals: int = 1
    task: str = ""
    batch_range: tuple[int, int] = (1, 1)
    """The ladder's smallest and largest batch sizes, which fix the image's batch-size axis."""
    samples: list[int] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    val_accuracies: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    diverged: bool = False

    def add(self, info: dict[str, Any], reward: float = math.nan) -> None:
        """Records the ``info`` of a reset (no reward) or of a step."""
        self.diverged = self.diverged or bool(info.get("diverged", False))
        self.samples.append(int(info["samples"]))
        self.batch_sizes.append(int(info["batch_size"]))
        self.learning_rates.append(float(info["lr"]))
        self.val_losses.append(float(info["val_loss"]))
        self.val_accuracies.append(float(info["val_accuracy"]))
        self.rewards.append(float(reward))


def render_ansi(history: EpisodeHistory) -> str:
    """One line per interval of the episode so far (the first line is the starting state)."""
    lines = []
    width = len(str(history.budget))
    for index, samples in enumerate(history.samples):
        line = (
            f"interval {index:>3}/{history.num_intervals}  "
            f"samples {samples:>{width}}/{history.budget}  "
            f"batch {history.batch_sizes[index]:>5}  "
            f"lr {history.learning_rates[index]:.3g}  "
            f"val_loss {history.val_losses[index]:.4f}  "
            f"val_acc {history.val_accuracies[index]:.4f}"
        )
        if index > 0:  # the first line is the starting state, which has no reward
            line += f"  reward {history.rewards[index]:+.4f}"
        lines.append(line)
    if history.diverged:
        lines.append("diverged")
    return "\n".join(lines) + ("\n" if lines else "")


class FrameRenderer:
    """Draws :class:`EpisodeHistory` into an RGB array with one reusable matplotlib figure."""

    def __init__(self, size: tuple[int, int] = FRAME_SIZE, dpi: int = 100):
        # Imported here: only an env made with render_mode="rgb_array" pays for matplotlib.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        width, height = size
        self.figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.figure)
        self.batch_axes, self.loss_axes = self.figure.subplots(2, 1, sharex=True)

    def render(self, history: EpisodeHistory) -> np.ndarray:
        from matplotlib.ticker import ScalarFormatter

        batch_axes, loss_axes = self.batch_axes, self.loss_axes
        batch_axes.clear()
        loss_axes.clear()
        samples = np.asarray(history.samples, dtype=float)
        if samples.size:
            # The batch size of interval i holds from the previous point's samples to its own.
            batch_axes.step(samples, history.batch_sizes, where="pre", color="tab:blue")
            batch_axes.plot(samples[-1:], history.batch_sizes[-1:], "o", color="tab:blue")
            loss_axes.plot(samples, history.val_losses, "-o", color="tab:red", markersize=3)
        batch_axes.set_yscale("log", base=2)
        low, high = history.batch_range
        batch_axes.set_ylim(low / 1.25, high * 1.25)
        batch_axes.yaxis.set_major_formatter(ScalarFormatter())
        batch_axes.set_ylabel("batch size")
        loss_axes.set_ylabel("validation loss")
        finite = [v for v in history.val_losses if math.isfinite(v) and v > 0]
        if finite:
            loss_axes.set_yscale("log")
        loss_axes.set_xlabel("training samples")
        loss_axes.set_xlim(0, max(history.budget, 1))
        title = f"{history.task}: interval {max(len(samples) - 1, 0)}/{history.num_intervals}"
        if history.diverged:
            title += " (diverged)"
        batch_axes.set_title(title)
        for axes in (batch_axes, loss_axes):
            axes.grid(True, alpha=0.3)
        self.figure.tight_layout()
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()

    def close(self) -> None:
        self.figure.clear()
