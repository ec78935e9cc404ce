"""Batch sizes and learning rates from statistical efficiency: AdaScale and Pollux's goodput.

Both use AdaScale's gain (Johnson, Agrawal, Gu & Guestrin, ICML 2020, arXiv:2007.05105)

    r(B) = (σ² + |G|²) / (σ²/S + |G|²),    S = B/B₀,  σ² = tr(Σ)/B₀,

how many base-size steps one step at B is worth (:func:`~arbiter_env.training.trainer.
adascale_gain`). The statistics come from the observation (``log10_trace_cov``,
``log10_grad_sq_norm``), so these are policies of the environment like the other adaptive rules;
the learning rate follows the gain through the env's ``lr_scaling="adascale"`` rule, which both
controllers register as their env default.

What is not reproduced: AdaScale also advances the schedule's clock by ``r`` per step and stops
after ``T_base`` scale-invariant iterations, so it trains on more samples at larger scales. The
budget of this environment is counted in samples, so the run ends after the same data whatever
the scale, and the schedule runs on that sample clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from arbiter_env.baselines.common import Baseline, NoiseAverages, check_batch_size, require
from arbiter_env.training.trainer import adascale_gain

# --- AdaScale -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaScaleConfig:
    """Settings of :class:`AdaScale`.

    Attributes:
        scale: S, the batch size as a multiple of the env's base size B₀ (``base_batch_size``,
            by default ``task.batch_start``). Default 4, the smallest scale of the paper's
            ImageNet and CIFAR experiments beyond 1 (they use 2–32 for CIFAR-10).
    """

    scale: float = 4.0

    def __post_init__(self) -> None:
        require(
            self.scale > 0 and math.isfinite(self.scale), f"scale must be > 0, got {self.scale}."
        )


class AdaScale(Baseline):
    """AdaScale SGD (Johnson et al. 2020): a fixed scale ``S``, the learning rate times the gain.

    ``B = clip(S·B₀)`` throughout; the env's ``lr_scaling="adascale"`` multiplies the base
    learning rate by ``r(B)`` computed from the latest gradient statistics before every interval.
    Needs that env setting (registered as this controller's env default).
    """

    Config = AdaScaleConfig
    kind = "adaptive"
    config: AdaScaleConfig

    def __init__(self, env: gym.Env, config: Any = None, **overrides: Any):
        super().__init__(env, config, **overrides)
        require(
            self.batch_env.trainer.lr_scaling == "adascale",
            f"adascale scales the learning rate through the env; its lr_scaling is "
            f"{self.batch_env.trainer.lr_scaling!r}. Build the env with lr_scaling='adascale'.",
        )

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """``S·B₀``, clipped."""
        return self.clip(self.config.scale * self.batch_env.trainer.base_batch_size)


# --- Pollux goodput -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoodputConfig:
    """Settings of :class:`Goodput`.

    Attributes:
        ema_decay: Decay of the moving averages of tr(Σ) and |G|² (ratio of averages, as for
            the gradient noise scale). Default 0.9, ours; Pollux smooths its estimates too.
        probe_batch_size: The second size measured, in the episode's second interval, so that
            the iteration-time model has two sizes to fit; ``None`` takes 4·B₀ (or B₀/4 when
            that exceeds ``batch_max``).
    """

    ema_decay: float = 0.9
    probe_batch_size: int | None = None

    def __post_init__(self) -> None:
        require(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}.")
        check_batch_size("probe_batch_size", self.probe_batch_size)


def fit_iteration_time(batch_sizes: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """Least-squares ``T(B) = α + β·B`` per inner update, with α, β ≥ 0 (Pollux's model).

    One distinct size leaves the split unidentified: the time then counts as per-sample (α = 0),
    and a negative fitted coefficient is set to 0 and the other refitted alone.
    """
    sizes = np.asarray(batch_sizes, dtype=np.float64)
    times = np.asarray(seconds, dtype=np.float64)
    if len(np.unique(sizes)) < 2:
        return 0.0, float(np.sum(times * sizes) / np.sum(sizes * sizes))
    design = np.stack([np.ones_like(sizes), sizes], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(design, times, rcond=None)
    if beta < 0:
        return float(np.mean(times)), 0.0
    if alpha < 0:
        return 0.0, float(np.sum(times * sizes) / np.sum(sizes * sizes))
    return float(alpha), float(beta)


def goodput(
    batch_sizes: np.ndarray,
    alpha: float,
    beta: float,
    trace_covariance: float,
    grad_sq_norm: float,
    base_batch_size: int,
) -> np.ndarray:
    """Pollux's goodput ``throughput(B) · r(B)/S`` = ``B/T(B) · r(B)·B₀/B`` for each size.

    In base-size samples' worth of progress per second: ``B/T(B)`` samples per second times the
    statistical efficiency ``r(B)/S`` of each sample.
    """
    sizes = np.asarray(batch_sizes, dtype=np.float64)
    gains = np.array(
        [
            adascale_gain(b / base_batch_size, trace_covariance, grad_sq_norm, base_batch_size)
            for b in sizes
        ]
    )
    seconds = np.maximum(alpha + beta * sizes, np.finfo(np.float64).tiny)
    return sizes / seconds * gains * base_batch_size / sizes


class Goodput(Baseline):
    """Pollux / AdaptDL goodput (Qiao et al., OSDI 2021, arXiv:2008.12260).

    Each interval picks, among the geometrically spaced sizes of the env's ladder, the one of
    largest :func:`goodput`, with the iteration time ``T(B) = α + β·B`` fitted
    (:func:`fit_iteration_time`) to the measured seconds per update of the intervals so far
    (``BatchSizeEnv.last_training_time``, the training part of each interval) and the gain from
    moving averages of the observation's tr(Σ) and |G|². The first interval runs at B₀, the
    second at ``probe_batch_size`` so that two sizes are timed. The learning rate follows the
    gain through ``lr_scaling="adascale"``, as Pollux pairs goodput with AdaScale.

    Wall time makes the choice depend on the machine and is not reproducible; the decision is
    meaningful with the ``wall_time`` reward cost (``reward.cost``), which charges for time.
    """

    Config = GoodputConfig
    kind = "adaptive"
    config: GoodputConfig

    def on_episode_start(self, observation: np.ndarray) -> None:
        """Forgets the timings and the moving averages of the last episode."""
        self._sizes: list[float] = []
        self._seconds: list[float] = []
        self._updates_before = 0
        self._averages = NoiseAverages(self.config.ema_decay)

    def _record(self, observation: np.ndarray) -> None:
        env = self.batch_env
        updates = env.trainer.updates - self._updates_before
        self._updates_before = env.trainer.updates
        if updates > 0 and math.isfinite(env.last_training_time):
            self._sizes.append(float(env.batch_size))
            self._seconds.append(env.last_training_time / updates)
        self._averages.update(observation)

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """B₀, then the probe size, then the ladder size of largest goodput."""
        self._record(observation)
        base = self.batch_env.trainer.base_batch_size
        if not self._sizes:
            return base
        if len(self._sizes) == 1:  # time a second size before fitting T(B)
            probe = self.config.probe_batch_size
            if probe is None:
                probe = 4 * base if 4 * base <= self.batch_max else max(base // 4, 1)
            return probe
        alpha, beta = fit_iteration_time(np.array(self._sizes), np.array(self._seconds))
        trace, grad_sq = self._averages.trace, self._averages.grad_sq
        assert trace is not None and grad_sq is not None
        ladder = np.asarray(self.batch_env.ladder)
        scores = goodput(ladder, alpha, beta, trace, grad_sq, base)
        return int(ladder[int(np.argmax(scores))])
