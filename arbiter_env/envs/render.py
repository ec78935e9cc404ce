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
    """Draws :class:`EpisodeHistory` into an RGB array with one reusable matplotlib figure.

    The axes, labels and layout are made once; a frame only updates the lines' data, the limits
    and the title, then redraws the canvas.
    """

    def __init__(self, size: tuple[int, int] = FRAME_SIZE, dpi: int = 100):
        # Imported here: only an env made with render_mode="rgb_array" pays for matplotlib.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import ScalarFormatter

        width, height = size
        self.figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.figure)
        self.batch_axes, self.loss_axes = self.figure.subplots(2, 1, sharex=True)
        self.figure.subplots_adjust(left=0.13, right=0.97, top=0.92, bottom=0.1, hspace=0.12)
        self.batch_axes.set_yscale("log", base=2)
        self.batch_axes.yaxis.set_major_formatter(ScalarFormatter())
        self.batch_axes.set_ylabel("batch size")
        self.loss_axes.set_yscale("log")
        self.loss_axes.set_ylabel("validation loss")
        self.loss_axes.set_xlabel("training samples")
        for axes in (self.batch_axes, self.loss_axes):
            axes.grid(True, alpha=0.3)
        # The batch size of interval i holds from the previous point's samples to its own.
        (self.batch_line,) = self.batch_axes.step([], [], where="pre", color="tab:blue")
        (self.batch_point,) = self.batch_axes.plot([], [], "o", color="tab:blue")
        (self.loss_line,) = self.loss_axes.plot([], [], "-o", color="tab:red", markersize=3)
        self.title = self.batch_axes.set_title("")

    def render(self, history: EpisodeHistory) -> np.ndarray:
        """Redraws the figure for ``history`` and returns it as an RGB array (H, W, 3)."""
        samples = np.asarray(history.samples, dtype=float)
        batch_sizes = np.asarray(history.batch_sizes, dtype=float)
        losses = np.asarray(history.val_losses, dtype=float)
        self.batch_line.set_data(samples, batch_sizes)
        self.batch_point.set_data(samples[-1:], batch_sizes[-1:])
        self.loss_line.set_data(samples, losses)
        low, high = history.batch_range
        self.batch_axes.set_ylim(low / 1.25, high * 1.25)
        self.loss_axes.set_xlim(0, max(history.budget, 1))
        finite = losses[np.isfinite(losses) & (losses > 0)]
        if finite.size:
            self.loss_axes.set_ylim(finite.min() / 1.25, finite.max() * 1.25)
        title = f"{history.task}: interval {max(len(samples) - 1, 0)}/{history.num_intervals}"
        self.title.set_text(title + (" (diverged)" if history.diverged else ""))
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()

    def close(self) -> None:
        """Clears the figure, releasing its artists."""
        self.figure.clear()
