"""Adaptive batch sizes from the gradient statistics of the observation.

Every rule reads the statistics the environment measures on its probe batch of ``P`` training
examples after each interval (see :mod:`arbiter_env.training.stats`), through
:func:`~arbiter_env.envs.observation.observation_value`:

* ``S = tr(Σ)``, the unbiased estimate ``P/(P−1)·(mean‖g_i‖² − ‖ḡ‖²)`` (``log10_trace_cov``);
* ``|G|² = ‖ḡ‖² − S/P`` (``log10_grad_sq_norm``), ``‖ḡ‖`` (``log10_mean_grad_norm``);
* the cosine between the mean gradients of the two probe halves (``half_batch_cosine``);
* ``P`` (``log2_probe_size``), the last batch size ``B`` and learning rate ε.

The decisions are therefore functions of the observation history alone, and each rule is a policy
of the environment like any other controller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from arbiter_env.baselines.common import Baseline, NoiseAverages, check_batch_size, require
from arbiter_env.envs.observation import observation_value

# --- CABS -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CABSConfig:
    """Settings of :class:`CABS`.

    Attributes:
        c: Proportionality constant of ``B = c·ε·ξ/L``. Default 1, as in Balles et al. (2017).
        mu: Decay of the running averages of ξ and L. Default 0.95, the value of the authors'
            reference implementation.
    """

    c: float = 1.0
    mu: float = 0.95

    def __post_init__(self) -> None:
        require(self.c > 0 and math.isfinite(self.c), f"c must be positive, got {self.c}.")
        require(0 <= self.mu < 1, f"mu must be in [0, 1), got {self.mu}.")


def cabs_variance(observation: np.ndarray) -> float:
    """CABS's ``ξ = Σ_params (mean_i g_i² − ḡ²)``, the biased variance sum, from the observation.

    The observation holds the unbiased ``S = P/(P−1)·ξ``; CABS uses ``ξ = (P−1)/P · S``.
    """
    probe = observation_value(observation, "log2_probe_size")
    return (probe - 1) / probe * observation_value(observation, "log10_trace_cov")


class CABS(Baseline):
    """Coupled Adaptive Batch Size (Balles, Romero & Hennig, UAI 2017, arXiv:1612.05086).

    ``B = clip(round(c · ε · ξ̄ / L̄))`` with ξ the per-example gradient variance summed over all
    parameters (:func:`cabs_variance`), L the training loss (the interval's mean, the closest the
    observation has to CABS's mini-batch loss) and bars running averages with decay μ, started at
    the first observation. ε is the learning rate of the last interval.

    CABS is derived for plain SGD without momentum (the rule makes the expected improvement per
    sample maximal for that update). With momentum, as in the built-in tasks (SGD, momentum 0.9),
    the effective step is about ε/(1−μ_momentum) and the rule is a heuristic, not the paper's
    optimum; it is applied unchanged so that it stays comparable with the paper.
    """

    Config = CABSConfig
    kind = "adaptive"
    config: CABSConfig
    # The running averages ξ̄ and L̄; None until the first observation of an episode.
    _xi: float | None = None
    _loss: float | None = None

    def on_episode_start(self, observation: np.ndarray) -> None:
        """Forgets the running averages: they restart at the episode's first observation."""
        self._xi = None
        self._loss = None

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """Updates the running averages of ξ and L and returns ``c·ε·ξ̄/L̄``, clipped."""
        xi = cabs_variance(observation)
        loss = observation_value(observation, "train_loss")
        mu = self.config.mu
        if self._xi is None or self._loss is None:
            self._xi, self._loss = xi, loss
        else:
            self._xi = mu * self._xi + (1 - mu) * xi
            self._loss = mu * self._loss + (1 - mu) * loss
        lr = observation_value(observation, "log10_lr")
        if self._loss <= 0:
            return self.batch_min  # a zero loss leaves nothing to average away
        return self.clip(self.config.c * lr * self._xi / self._loss)


# --- gradient noise scale -------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseScaleConfig:
    """Settings of :class:`NoiseScale`.

    Attributes:
        ema_decay: Decay of the moving averages of tr(Σ) and |G|², one update per interval.
            McCandlish et al. (2018, App. A) average numerator and denominator separately but fix
            no coefficient for this setting; 0.9 (a ten-interval memory) is ours.
        scale: Multiplier of B_simple. Default 1: B ≈ B_simple, McCandlish et al.'s estimate of
            the critical batch size.
    """

    ema_decay: float = 0.9
    scale: float = 1.0

    def __post_init__(self) -> None:
        require(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}.")
        require(self.scale > 0, f"scale must be > 0, got {self.scale}.")


class NoiseScale(Baseline):
    """Gradient noise scale (McCandlish, Kaplan, Amodei et al., 2018, arXiv:1812.06162).

    ``B = clip(round(scale · S̄ / |G|²̄))``: the ratio of the moving averages of the unbiased
    estimates ``S = tr(Σ)`` and ``|G|²``, not the average of the ratios (which the noisy,
    near-zero denominators would bias), started at the first observation.
    """

    Config = NoiseScaleConfig
    kind = "adaptive"
    config: NoiseScaleConfig

    def on_episode_start(self, observation: np.ndarray) -> None:
        """Forgets the moving averages: they restart at the episode's first observation."""
        self._averages = NoiseAverages(self.config.ema_decay)

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """Updates the moving averages of S and |G|² and returns ``scale·S̄/|G|²̄``, clipped."""
        trace, grad_sq = self._averages.update(observation)
        return self.clip(self.config.scale * trace / grad_sq)


# --- norm test ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormTestConfig:
    """Settings of :class:`NormTest`.

    Attributes:
        theta: θ of the test ``Var/B ≤ θ²‖ḡ‖²``. Default 0.9, the value of Bollapragada, Byrd &
            Nocedal (2018)'s experiments.
        initial_batch_size: Starting size; ``None`` takes ``task.batch_min`` (progressive
            batching starts small and only grows).
    """

    theta: float = 0.9
    initial_batch_size: int | None = None

    def __post_init__(self) -> None:
        require(self.theta > 0, f"theta must be > 0, got {self.theta}.")
        check_batch_size("initial_batch_size", self.initial_batch_size)


class NormTest(Baseline):
    """Norm test (Byrd, Chin, Nocedal & Wu, 2012; Bollapragada, Byrd & Nocedal, 2018).

    The batch is large enough when the variance of its mean gradient is small against the
    gradient: ``Var/B ≤ θ²‖ḡ‖²``, with ``Var = S`` the unbiased per-example variance (trace) and
    ``ḡ`` the probe's mean gradient. When the test fails for the size B just used, the size grows
    to ``⌈Var/(θ²‖ḡ‖²)⌉``; sizes only grow.
    """

    Config = NormTestConfig
    kind = "adaptive"
    config: NormTestConfig

    def on_episode_start(self, observation: np.ndarray) -> None:
        """Goes back to the starting size: sizes only grow within an episode."""
        self._size = self.clip(self.config.initial_batch_size or self.batch_min)

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """Runs the test on the size just used and grows the size when it fails."""
        if not hasattr(self, "_size"):
            self.on_episode_start(observation)
        used = self.observed_batch_size(observation)
        variance = observation_value(observation, "log10_trace_cov")
        bound = self.config.theta**2 * observation_value(observation, "log10_mean_grad_norm") ** 2
        if variance / used > bound:
            self._size = max(self._size, self.clip(math.ceil(variance / bound)))
        return self._size


# --- SimiGrad -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimiGradConfig:
    """Settings of :class:`SimiGrad`.

    Attributes:
        target_similarity: The cosine the rule steers toward. SimiGrad tunes it per model; 0.5
            is ours (halves of size B/2 reach it at B ≈ 2·B_simple under the noise model).
        adjustment: Relative step of the size, 0.1 as in Qin et al. (2021): B ← ⌊1.1B⌋ or
            ⌊0.9B⌋.
        sqrt_lr_scaling: Also set ε = ε₀·√(B/B₀) (B₀ the starting size), SimiGrad's optional
            square-root learning-rate scaling.
        rescale_to_batch: The observation's cosine is measured between the halves of the probe
            (P/2 examples each), not of the batch. When true (default), it is converted to
            halves of B/2 with the noise model ``cos(m) = 1/(1 + B_simple/m)``:
            ``c_B = 1/(1 + (P/B)(1/c_P − 1))``. When false, the probe's cosine is used as it is,
            which makes the decision independent of B (the size then drifts to a bound).
        initial_batch_size: Starting size; ``None`` takes ``task.batch_start``.
    """

    target_similarity: float = 0.5
    adjustment: float = 0.1
    sqrt_lr_scaling: bool = False
    rescale_to_batch: bool = True
    initial_batch_size: int | None = None

    def __post_init__(self) -> None:
        require(
            -1 < self.target_similarity < 1,
            f"target_similarity must be in (-1, 1), got {self.target_similarity}.",
        )
        require(0 < self.adjustment < 1, f"adjustment must be in (0, 1), got {self.adjustment}.")
        check_batch_size("initial_batch_size", self.initial_batch_size)


def batch_cosine(probe_cosine: float, probe_size: float, batch_size: float) -> float:
    """The half-batch cosine expected at ``batch_size`` given the one measured on the probe.

    Under the noise model the mean of m examples has ``cos = 1/(1 + B_simple/m)`` with its
    independent twin, so ``B_simple/(P/2) = 1/c_P − 1`` and ``c_B = 1/(1 + (P/B)(1/c_P − 1))``. A
    non-positive probe cosine (noise dominates) is returned unchanged.
    """
    if probe_cosine <= 0:
        return probe_cosine
    return 1.0 / (1.0 + probe_size / batch_size * (1.0 / probe_cosine - 1.0))


class SimiGrad(Baseline):
    """SimiGrad (Qin, Rajbhandari, Ruwase, Yan & He, NeurIPS 2021).

    With ``c`` the cosine between the gradients of the two halves of the batch: if
    ``c < target`` the size grows, ``B ← max(B+1, ⌊(1+a)B⌋)``; if ``c > target`` it shrinks,
    ``B ← ⌊(1−a)B⌋``; clipped to the ladder bounds. The controller keeps its own B between
    intervals (the environment rounds it to the ladder), so small steps add up. With
    ``sqrt_lr_scaling`` it sets ε = ε₀·√(B/B₀) for the size the environment really uses.
    """

    Config = SimiGradConfig
    kind = "adaptive"
    config: SimiGradConfig

    def on_episode_start(self, observation: np.ndarray) -> None:
        """Goes back to the starting size, which the square-root rate scaling is relative to."""
        self._size = self.clip(self.config.initial_batch_size or self.batch_env.task.batch_start)
        self._start = self._size

    def similarity(self, observation: np.ndarray) -> float:
        """The cosine the rule compares with its target (see ``rescale_to_batch``)."""
        cosine = observation_value(observation, "half_batch_cosine")
        if not self.config.rescale_to_batch:
            return cosine
        return batch_cosine(
            cosine,
            observation_value(observation, "log2_probe_size"),
            self.observed_batch_size(observation),
        )

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """Steps the size up or down by ``adjustment`` toward the target cosine."""
        if not hasattr(self, "_size"):
            self.on_episode_start(observation)
        cosine, size, a = self.similarity(observation), self._size, self.config.adjustment
        if cosine < self.config.target_similarity:
            size = max(size + 1, math.floor((1 + a) * size))
        elif cosine > self.config.target_similarity:
            size = math.floor((1 - a) * size)
        self._size = self.clip(size)
        if self.config.sqrt_lr_scaling:
            self.set_learning_rate(
                self.task_lr * math.sqrt(self.reachable(self._size) / self._start)
            )
        return self._size
