"""Batch-size schedules: sizes (and learning rates) fixed in advance as functions of progress.

Time is the *progress* ``p`` of the observation, the fraction of the sample budget consumed before
the interval being decided (0 for the first interval, ``i/K`` for interval ``i`` of ``K``). Each
schedule exposes the pure function ``batch_size_at(p)`` (and ``lr_factor_at`` where it changes
the learning rate), so its documented sizes can be checked at documented times. Milestones are
fractions of training; a milestone ``m`` takes effect from the first interval starting at
``p >= m``.

Learning rates are set with ``BatchSizeEnv.set_learning_rate`` (the base rate of
``InnerTrainer.set_base_lr``), as a factor of the task's rate. Use these schedules with the
environment's default ``lr_scaling="none"``, otherwise the trainer rescales on top of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from arbiter_env.baselines.common import (
    PROGRESS_TOLERANCE,
    Baseline,
    check_batch_size,
    require,
)


def _milestones_passed(progress: float, milestones: tuple[float, ...]) -> int:
    """How many milestones ``progress`` has reached (with float32 slack, see PROGRESS_TOLERANCE)."""
    return sum(progress >= m - PROGRESS_TOLERANCE for m in milestones)


def _check_milestones(milestones: tuple[float, ...]) -> None:
    require(
        all(0 < m < 1 for m in milestones) and list(milestones) == sorted(set(milestones)),
        f"milestones must be increasing fractions of training in (0, 1), got {milestones}.",
    )


class Schedule(Baseline):
    """A controller whose batch size (and learning rate) is a function of training progress.

    Subclasses give ``batch_size_at(progress)`` and, when they change the learning rate,
    ``lr_factor_at(progress, batch_size)``: the factor on the task's learning rate for the size
    the environment will really use.
    """

    kind = "schedule"

    def batch_size_at(self, progress: float) -> int:
        """The size the schedule wants at ``progress`` (before the env's ladder rounds it)."""
        raise NotImplementedError

    def lr_factor_at(self, progress: float, batch_size: int) -> float | None:
        """Factor on the task's learning rate for ``batch_size`` at ``progress``.

        ``None`` (the default) leaves the learning rate alone.
        """
        return None

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """Reads progress, sets the learning rate if the schedule has one, returns the size."""
        progress = self.observed_progress(observation)
        batch_size = self.batch_size_at(progress)
        factor = self.lr_factor_at(progress, self.reachable(batch_size))
        if factor is not None:
            self.set_learning_rate(self.task_lr * factor)
        return batch_size


# --- fixed ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixedConfig:
    """Settings of :class:`FixedBatchSize`.

    Attributes:
        batch_size: The one size of the whole run; ``None`` takes the task's ``batch_start`` (128
            for the built-in tasks, the starting size of the Arbiter paper).
    """

    batch_size: int | None = None

    def __post_init__(self) -> None:
        check_batch_size("batch_size", self.batch_size)


class FixedBatchSize(Schedule):
    """One batch size for the whole run; a grid over the ladder is the honest reference."""

    Config = FixedConfig
    config: FixedConfig
    kind = "fixed"

    def __init__(self, env: gym.Env, config: FixedConfig | None = None, **overrides: Any):
        super().__init__(env, config, **overrides)
        wanted = self.config.batch_size
        encoding = self.batch_env.action_encoding
        reached = wanted and encoding.settled_size(wanted, self.batch_env.task.batch_start)
        if wanted is not None and reached != wanted:
            # The run would train at `reached` while its name and config say `wanted`.
            raise ValueError(
                f"fixed: batch_size {wanted} cannot be selected with the "
                f"{encoding.name!r} encoding of {self.batch_env.task.name} (ladder "
                f"{', '.join(str(int(b)) for b in encoding.ladder)}); the nearest size it can "
                f"select is {reached}. Use batch_size={reached}, or action_encoding=continuous "
                f"for any size in [{encoding.batch_min}, {encoding.batch_max}]."
            )

    def batch_size_at(self, progress: float) -> int:
        """The configured size at every ``progress``."""
        return self.config.batch_size or self.batch_env.task.batch_start


# --- step -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepConfig:
    """Settings of :class:`StepSchedule`.

    Attributes:
        initial_batch_size: Size before the first milestone; ``None`` takes ``task.batch_start``.
        milestones: Fractions of training where the size is multiplied. Default (0.3, 0.6, 0.8):
            the epochs 60, 120, 160 of 200 of Smith et al. (2018)'s CIFAR-10 Wide-ResNet schedule.
        factor: Multiplier at each milestone. Default 2, so every size stays on the default
            doubling ladder (Smith et al. use 5; see ``smith``).
    """

    initial_batch_size: int | None = None
    milestones: tuple[float, ...] = (0.3, 0.6, 0.8)
    factor: float = 2.0

    def __post_init__(self) -> None:
        check_batch_size("initial_batch_size", self.initial_batch_size)
        _check_milestones(self.milestones)
        require(self.factor > 0, f"factor must be > 0, got {self.factor}.")


class StepSchedule(Schedule):
    """Step schedule: ``B(p) = B₀ · factor^(milestones passed)``, clipped to the ladder bounds.

    The learning rate is left alone; ``smith`` is the variant that decays it once B is capped.
    """

    Config = StepConfig
    config: StepConfig

    def wanted_batch_size(self, progress: float) -> float:
        """``B₀ · factor^k`` after ``k`` milestones, unclipped."""
        start = self.config.initial_batch_size or self.batch_env.task.batch_start
        return start * self.config.factor ** _milestones_passed(progress, self.config.milestones)

    def batch_size_at(self, progress: float) -> int:
        """``B₀ · factor^k`` after ``k`` milestones, clipped to the ladder bounds."""
        return self.clip(self.wanted_batch_size(progress))


# --- Smith et al. 2018 ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SmithConfig(StepConfig):
    """Settings of :class:`SmithSchedule`.

    Attributes:
        initial_batch_size: B₀; ``None`` takes ``task.batch_start`` (Smith et al.: 128).
        milestones: Where a step schedule would decay ε. Default (0.3, 0.6, 0.8): epochs 60, 120,
            160 of 200 in Smith et al.'s CIFAR-10 Wide-ResNet experiments.
        factor: The decay factor k the schedule would divide ε by; B is multiplied by it instead.
            Default 5, Smith et al.'s value.
    """

    factor: float = 5.0

    def __post_init__(self) -> None:
        check_batch_size("initial_batch_size", self.initial_batch_size)
        _check_milestones(self.milestones)
        require(self.factor >= 1, f"factor must be >= 1 (B grows), got {self.factor}.")


class SmithSchedule(StepSchedule):
    """Smith, Kindermans, Ying & Le (2018), "Don't decay the learning rate, increase the batch size".

    Wherever a step schedule would divide ε by ``factor``, B is multiplied by it; once B is at its
    maximum the remaining factor decays ε (the paper's *hybrid* schedule). With
    ``B_want(p) = B₀·factor^k`` after ``k`` milestones and ``B`` the size the environment can
    really use (the ladder rounds, ``batch_max`` caps, ``relative`` moves one doubling per step)::

        ε(p) = ε₀ · min(1, B / B_want(p))

    so ε/B follows the step schedule's ε₀/(B₀·factor^k) whenever B falls short of the wish.
    """

    Config = SmithConfig
    config: SmithConfig

    def lr_factor_at(self, progress: float, batch_size: int) -> float:
        """ε/ε₀ when the environment uses ``batch_size`` at ``progress``."""
        return min(1.0, batch_size / self.wanted_batch_size(progress))


# --- AdaBatch -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaBatchConfig:
    """Settings of :class:`AdaBatch`.

    Attributes:
        initial_batch_size: B₀; ``None`` takes ``task.batch_start``.
        interval: Fraction of training between increases. Default 0.2: AdaBatch grows the batch
            at fixed epoch intervals (every 20 epochs of the paper's 100-epoch CIFAR runs).
        growth_factor: Multiplier of B at each increase; AdaBatch doubles (2).
        lr_decay: The factor by which the fixed-batch step schedule that AdaBatch replaces would
            multiply ε at each interval. Default 0.5, so ε stays constant while B doubles; set it
            to your schedule's decay.
    """

    initial_batch_size: int | None = None
    interval: float = 0.2
    growth_factor: float = 2.0
    lr_decay: float = 0.5

    def __post_init__(self) -> None:
        check_batch_size("initial_batch_size", self.initial_batch_size)
        require(0 < self.interval <= 1, f"interval must be in (0, 1], got {self.interval}.")
        require(self.growth_factor >= 1, f"growth_factor must be >= 1, got {self.growth_factor}.")
        require(0 < self.lr_decay <= 1, f"lr_decay must be in (0, 1], got {self.lr_decay}.")


class AdaBatch(Schedule):
    """AdaBatch (Devarakonda, Naumov & Garland, 2017, arXiv:1712.02029).

    At stage ``k = ⌊p / interval⌋`` the wished-for size is ``B₀·growth_factor^k`` and ε is scaled
    so that ε/B follows the fixed-batch schedule's decay, ``ε/B = (ε₀/B₀)·lr_decay^k``, with B the
    size the environment really uses::

        ε(p) = ε₀ · lr_decay^k · B / B₀

    So ε grows with B (linear scaling) and the schedule's decay acts on top; once B is capped at
    ``batch_max``, only the decay remains.
    """

    Config = AdaBatchConfig
    config: AdaBatchConfig

    def stage(self, progress: float) -> int:
        """``k = ⌊p / interval⌋``: how many increases have happened by ``progress``."""
        return math.floor(progress / self.config.interval + PROGRESS_TOLERANCE)

    def batch_size_at(self, progress: float) -> int:
        """``B₀·growth_factor^k`` at stage ``k``, clipped to the ladder bounds."""
        start = self.config.initial_batch_size or self.batch_env.task.batch_start
        return self.clip(start * self.config.growth_factor ** self.stage(progress))

    def lr_factor_at(self, progress: float, batch_size: int) -> float:
        """ε/ε₀ when the environment uses ``batch_size`` at ``progress``."""
        start = self.config.initial_batch_size or self.batch_env.task.batch_start
        return self.config.lr_decay ** self.stage(progress) * batch_size / start


# --- growth ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrowthConfig:
    """Settings of :class:`LinearGrowth` and :class:`ExponentialGrowth`.

    Attributes:
        start_batch_size: Size at ``p = 0``; ``None`` takes ``task.batch_min``.
        end_batch_size: Size reached at ``p = duration`` and kept; ``None`` takes
            ``task.batch_max``.
        duration: Fraction of training over which the size grows (default 1: all of it).
    """

    start_batch_size: int | None = None
    end_batch_size: int | None = None
    duration: float = 1.0

    def __post_init__(self) -> None:
        check_batch_size("start_batch_size", self.start_batch_size)
        check_batch_size("end_batch_size", self.end_batch_size)
        require(0 < self.duration <= 1, f"duration must be in (0, 1], got {self.duration}.")
        if self.start_batch_size and self.end_batch_size:
            require(
                self.start_batch_size <= self.end_batch_size,
                f"start_batch_size {self.start_batch_size} exceeds end_batch_size "
                f"{self.end_batch_size}; growth schedules only grow.",
            )


def ramp(start: float, end: float, fraction: float, shape: str) -> float:
    """The ramp from ``start`` to ``end`` at ``fraction`` ∈ [0, 1] of its duration.

    ``linear``: ``B₀ + (B₁ − B₀)·f``; ``geometric``: ``B₀·(B₁/B₀)^f``.
    """
    fraction = min(1.0, max(0.0, fraction))
    if shape == "linear":
        return start + (end - start) * fraction
    return start * (end / start) ** fraction


class _Growth(Schedule):
    Config = GrowthConfig
    config: GrowthConfig
    shape: str

    def batch_size_at(self, progress: float) -> int:
        """The ramp at ``progress`` (:func:`ramp`), rounded and clipped."""
        start = self.config.start_batch_size or self.batch_min
        end = self.config.end_batch_size or self.batch_max
        return self.clip(ramp(start, end, progress / self.config.duration, self.shape))


class LinearGrowth(_Growth):
    """Linear growth, ``B(p) = B_start + (B_end − B_start)·min(1, p/duration)``, rounded.

    The linear ramp of the batch-size warm-up of Brown et al. (2020, GPT-3); defaults grow from
    ``batch_min`` to ``batch_max`` over the whole run.
    """

    shape = "linear"


class ExponentialGrowth(_Growth):
    """Exponential growth, ``B(p) = B_start·(B_end/B_start)^min(1, p/duration)``, rounded.

    The continuous form of the geometric steps of Smith et al. (2018) and AdaBatch; with the
    defaults it climbs the doubling ladder from ``batch_min`` to ``batch_max`` at a constant rate.
    """

    shape = "geometric"


# --- batch-size ramp (warm-up) --------------------------------------------------------------------


@dataclass(frozen=True)
class RampConfig:
    """Settings of :class:`BatchRamp`.

    Attributes:
        start_batch_size: B₀, the size at ``p = 0``; ``None`` takes ``task.batch_min``.
        end_batch_size: B₁, reached at ``p = duration`` and kept; ``None`` takes
            ``task.batch_start`` (the task's tuned size, where a warm-up ends).
        duration: Fraction of the budget the ramp takes. Default 0.25; GPT-3 ramps over the
            first 4–12B of 300B tokens (1–4%), a tenth of our episodes' length in intervals.
        shape: ``"linear"`` (GPT-3's ramp) or ``"geometric"`` (a constant rate of doublings).
    """

    start_batch_size: int | None = None
    end_batch_size: int | None = None
    duration: float = 0.25
    shape: str = "linear"

    def __post_init__(self) -> None:
        check_batch_size("start_batch_size", self.start_batch_size)
        check_batch_size("end_batch_size", self.end_batch_size)
        require(0 < self.duration <= 1, f"duration must be in (0, 1], got {self.duration}.")
        require(
            self.shape in ("linear", "geometric"),
            f"shape must be 'linear' or 'geometric', got {self.shape!r}.",
        )


class BatchRamp(Schedule):
    """Batch-size warm-up: a linear or geometric ramp from B₀ to B₁ over ``duration``, then B₁.

    ``B(p) = ramp(B₀, B₁, p / duration)`` (:func:`ramp`), rounded and clipped to the ladder: the
    batch-size warm-up of Brown et al. (2020, GPT-3, linear over the first tokens) and the
    geometric form of Smith et al. (2018). The learning rate is left to the task's schedule.
    """

    Config = RampConfig
    config: RampConfig

    def batch_size_at(self, progress: float) -> int:
        """The ramp at ``progress``, rounded and clipped."""
        start = self.config.start_batch_size or self.batch_min
        end = self.config.end_batch_size or self.batch_env.task.batch_start
        return self.clip(ramp(start, end, progress / self.config.duration, self.config.shape))


# --- Seesaw ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeesawConfig:
    """Settings of :class:`Seesaw`.

    Attributes:
        initial_batch_size: B₀; ``None`` takes ``task.batch_start``.
        factor: α, the batch-size step: B is multiplied by α each time the task's schedule has
            decayed the learning rate by another α. Default 2, one rung of the doubling ladder.
    """

    initial_batch_size: int | None = None
    factor: float = 2.0

    def __post_init__(self) -> None:
        check_batch_size("initial_batch_size", self.initial_batch_size)
        require(self.factor > 1, f"factor must be > 1 (B grows), got {self.factor}.")


def seesaw_stage(schedule_factor: float, factor: float) -> float:
    """``n = ⌊log_α(1/m)⌋``: how many times the schedule's factor ``m`` has fallen by α.

    ``inf`` for ``m = 0`` (the end of a schedule that decays to zero).
    """
    if schedule_factor <= 0:
        return math.inf
    return math.floor(math.log(1 / schedule_factor) / math.log(factor) + PROGRESS_TOLERANCE)


class Seesaw(Schedule):
    """Seesaw (Meterez et al. 2025, arXiv:2510.14717), on the task's ``lr_schedule``.

    Where the task's schedule would multiply the learning rate by 1/α, Seesaw multiplies it by
    1/√α and the batch size by α. With ``m(p)`` the task's schedule factor at the start of the
    interval (1 during its warm-up), ``n = ⌊log_α(1/m)⌋`` (:func:`seesaw_stage`) and B the size
    the environment really uses::

        B(p) = clip(B₀·αⁿ),    ε = ε₀ · m(p') · √(B/B₀)   for every update at p' in the interval

    The trainer keeps applying ``m`` at every update (:mod:`arbiter_env.training.lr_schedule`);
    this controller sets the base rate ``ε₀·√(B/B₀)``. At ``m = α⁻ⁿ`` this is the paper's rule
    (ε₀·α^(−n/2) at B₀·αⁿ); between those points ε keeps decaying with the schedule, and once B
    is capped at ``batch_max`` the schedule's decay goes on alone, as in Smith et al.'s hybrid.
    Meant for tasks with a ``step``, ``cosine`` or ``wsd`` schedule and ``lr_scaling="none"``.
    """

    Config = SeesawConfig
    config: SeesawConfig

    def __init__(self, env: gym.Env, config: Any = None, **overrides: Any):
        super().__init__(env, config, **overrides)
        require(
            self.batch_env.trainer.lr_scaling == "none",
            f"seesaw sets the learning rate for the batch size itself; the env's lr_scaling is "
            f"{self.batch_env.trainer.lr_scaling!r}. Run it with lr_scaling='none'.",
        )

    def _start(self) -> int:
        return self.config.initial_batch_size or self.batch_env.task.batch_start

    def schedule_factor(self, progress: float) -> float:
        """The task schedule's ``m(p)``, taken as 1 during its warm-up."""
        schedule = self.batch_env.task.lr_schedule
        return 1.0 if progress < schedule.warmup else schedule.factor(progress)

    def batch_size_at(self, progress: float) -> int:
        """``B₀·αⁿ``, clipped to the ladder bounds."""
        stage = seesaw_stage(self.schedule_factor(progress), self.config.factor)
        if stage == math.inf:
            return self.batch_max
        return self.clip(self._start() * self.config.factor**stage)

    def lr_factor_at(self, progress: float, batch_size: int) -> float:
        """``√(B/B₀)``: the base rate's factor; the trainer multiplies it by ``m``."""
        return math.sqrt(batch_size / self._start())
