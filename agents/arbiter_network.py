"""How Arbiter proposes batch sizes: the agent network φ and the stretched logit."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

__all__ = ["batch_size_to_logit", "build_phi", "logit_to_batch_size"]


# --- stretched logit ----------------------------------------------------------------------------


def logit_to_batch_size(s: float, b_min: int, b_max: int) -> int:
    """The paper's map from logit space to a batch size: ``floor((b_max - b_min)·σ(s) + b_min)``.

    Computed in float64 and clipped to ``[b_min, b_max]``. ``s = +inf`` gives ``b_max`` (in
    exact arithmetic that is the only logit that does) and ``-inf`` gives ``b_min``.
    """
    s = float(s)
    if math.isnan(s):
        raise ValueError(
            "Arbiter's logit s is NaN: the meta-optimisation diverged. Lower phi_lr / alpha_lr or "
            "raise weight_decay."
        )
    sigmoid = 1.0 / (1.0 + math.exp(-s)) if s >= 0 else math.exp(s) / (1.0 + math.exp(s))
    size = math.floor((b_max - b_min) * sigmoid + b_min)
    return int(min(max(size, b_min), b_max))


def batch_size_to_logit(batch_size: int, b_min: int, b_max: int) -> float:
    """The logit that :func:`logit_to_batch_size` maps back to ``batch_size``.

    Choice: the paper gives only the forward map. Because of the floor, each size B < b_max owns
    the interval of fractions ``[(B - b_min), (B - b_min + 1)) / (b_max - b_min)``; we return the
    logit of its centre, so that small numerical errors cannot move the round trip to a
    neighbour. ``b_max`` is reached only at σ(s) = 1 and maps to ``+inf``. When
    ``b_min == b_max`` every logit decodes to that size and 0 is returned.
    """
    if not b_min <= batch_size <= b_max:
        raise ValueError(f"batch_size {batch_size} is outside [b_min, b_max] = [{b_min}, {b_max}].")
    span = b_max - b_min
    if span == 0:
        return 0.0
    if batch_size == b_max:
        return math.inf
    fraction = (batch_size - b_min + 0.5) / span
    return math.log(fraction) - math.log1p(-fraction)


# --- the agent network φ ------------------------------------------------------------------------


def build_phi(input_shape: Sequence[int], num_candidates: int, hidden: int = 64) -> nn.Module:
    """φ: an encoder fitted to the input shape, mapping ``(n, *input_shape)`` to ``(n, N)``.

    * flat inputs ``(d,)``: an MLP ``d → hidden → hidden → N`` with ReLU;
    * 1-D signals ``(C, L)``: two strided ``Conv1d`` layers, global average pooling, a Linear;
    * images ``(C, H, W)``: the same with ``Conv2d``.

    Choice: the paper's φ is a 4-layer conv net for CIFAR images; ours is smaller because it runs
    after every inner update of much smaller inner networks, and picks its kind from the data.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 1:
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(shape[0], hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_candidates),
        )
    if len(shape) in (2, 3):
        conv = nn.Conv1d if len(shape) == 2 else nn.Conv2d
        pool = nn.AdaptiveAvgPool1d(1) if len(shape) == 2 else nn.AdaptiveAvgPool2d(1)
        width = max(hidden // 2, 1)
        return nn.Sequential(
            conv(shape[0], width, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            conv(width, hidden, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            pool,
            nn.Flatten(),
            nn.Linear(hidden, num_candidates),
        )
    raise ValueError(
        f"Arbiter's φ supports inputs of shape (d,), (C, L) or (C, H, W); got {shape}. Reshape the "
        "task's data or pass a custom φ with Arbiter(env, phi=...)."
    )
