"""Arbiter's hyperparameters and the milestones of a fixed schedule it adjusts around."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from arbiter_env.checks import check_int

__all__ = ["ArbiterConfig", "Milestone", "parse_schedule"]


@dataclass
class ArbiterConfig:
    """Arbiter's hyperparameters.

    The defaults are for *short* tasks (about a thousand inner updates per episode, such as
    ``digits-mlp``); :meth:`paper` returns the paper's reference values, set for CIFAR runs of
    100+ epochs. How the defaults were chosen: ``docs/hyper_learning.md``, "Defaults, and how
    they were chosen".

    Args:
        num_candidates: N, the number of candidate batch sizes φ proposes (paper: 4).
        phi_lr: Adam learning rate of φ (paper: 1e-5 to 1e-6; short-task default 1e-3).
        alpha_lr: Adam learning rate of α (paper: 1e-4 to 1e-6; short-task default 1e-2).
        map_lr: Adam learning rate of the linear response map (the paper trains it with φ; we
            give it φ's rate by default).
        weight_decay: Adam weight decay (L2) on φ, α and the map (paper: 5e-4).
        meta_period: Take a meta-step after every ``meta_period``-th inner update (paper: 1).
            Larger periods cost less and can change the schedules (``docs/hyper_learning.md``,
            "What it costs").
        phi_batch_size: Validation examples φ reads per meta-step and per decision.
        phi_hidden: Width of φ's hidden layers (MLP) or of its convolutional trunk's last layer.
        map_init_scale: The map's weights start uniform in ``±map_init_scale``, so the response
            starts as a mild perturbation of the features.
        response_batch_cap: Upper bound on the number of validation examples used for the
            meta-objective; ``None`` (default) uses B as the paper does. Draws beyond the size of
            the validation part are with replacement.
        warmup_lr: Adam learning rate of φ during the warm-up (a separate, fresh optimizer).
        warmup_tolerance: The warm-up ends when the decoded size is within this many samples of
            the target (paper: 2).
        warmup_max_iters: Iteration cap of the warm-up; :class:`WarmupError` beyond it.
        huber_delta: Threshold of the warm-up's Huber loss on s.
        seed: Seeds φ's and the map's initialisation and every validation draw of the agent.
        response: How s reaches the inner network. ``"features"`` (default, the paper): a
            bias-free linear map R → R^F gives a per-feature gain ``h = w·s``.
            ``"temperature"`` (our ablation): one gain ``c·s`` shared by every feature, which
            scales the output layer's logits (less its bias) by ``1 + c·s``: a pure logit
            temperature, the response's first-order mode (``docs/hyper_learning.md``).
        temperature_init: The initial gain c₀ of the ``"temperature"`` response; its sign sets
            the direction of the early schedule. Ignored by ``"features"``.
        freeze_map: Null control: the response map keeps its initial weights (no meta-learning).
        meta_loss_scale: Null control at 0: the meta-objective is multiplied by this factor
            before its gradient is taken, so φ, α and the map see only weight decay.
    """

    num_candidates: int = 4
    phi_lr: float = 1e-3
    alpha_lr: float = 1e-2
    map_lr: float = 1e-3
    weight_decay: float = 5e-4
    meta_period: int = 1
    phi_batch_size: int = 32
    phi_hidden: int = 64
    map_init_scale: float = 0.1
    response_batch_cap: int | None = None
    warmup_lr: float = 1e-2
    warmup_tolerance: int = 2
    warmup_max_iters: int = 2000
    huber_delta: float = 1.0
    seed: int = 0
    response: Literal["features", "temperature"] = "features"
    temperature_init: float = 0.1
    freeze_map: bool = False
    meta_loss_scale: float = 1.0

    def __post_init__(self) -> None:
        positive_ints = ("num_candidates", "meta_period", "phi_batch_size", "phi_hidden")
        for name in (*positive_ints, "warmup_max_iters"):
            setattr(self, name, check_int(f"ArbiterConfig.{name}", getattr(self, name), 1))
        for name in ("phi_lr", "alpha_lr", "map_lr", "warmup_lr", "huber_delta"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ValueError(
                    f"ArbiterConfig.{name} must be positive and finite, got {value!r}."
                )
        if not (self.weight_decay >= 0 and self.map_init_scale >= 0):
            raise ValueError("ArbiterConfig.weight_decay and map_init_scale must be >= 0.")
        if self.warmup_tolerance < 0:
            raise ValueError(
                f"ArbiterConfig.warmup_tolerance must be >= 0, got {self.warmup_tolerance}."
            )
        if self.response not in ("features", "temperature"):
            raise ValueError(
                f"ArbiterConfig.response must be 'features' or 'temperature', got {self.response!r}."
            )
        for name in ("temperature_init", "meta_loss_scale"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"ArbiterConfig.{name} must be finite, got {getattr(self, name)}.")
        if self.response_batch_cap is not None and self.response_batch_cap < 1:
            raise ValueError(
                "ArbiterConfig.response_batch_cap must be None (use B examples) or >= 1, "
                f"got {self.response_batch_cap}."
            )

    @classmethod
    def paper(cls, **changes: Any) -> ArbiterConfig:
        """The paper's reference values (CIFAR, 100+ epochs): φ 1e-5, α 1e-4, weight decay 5e-4."""
        return dataclasses.replace(
            cls(), phi_lr=1e-5, alpha_lr=1e-4, map_lr=1e-5, weight_decay=5e-4, **changes
        )


@dataclass(frozen=True)
class Milestone:
    """One step of a fixed schedule that Arbiter adjusts around (the paper's second use).

    Args:
        interval: Index of the scheduling interval (env step, from 0) at which the step happens.
        batch_size: Batch size the schedule sets there; φ is warmed up to it afresh.
        lr_factor: The base learning rate becomes ``task.optimizer.lr * lr_factor`` there
            (1.0 leaves it at the task's).
    """

    interval: int
    batch_size: int
    lr_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.interval < 0 or self.batch_size < 1 or not self.lr_factor > 0:
            raise ValueError(
                f"A milestone needs interval >= 0, batch_size >= 1 and lr_factor > 0; got {self}."
            )


def parse_schedule(schedule: Sequence[Milestone | dict[str, Any]] | None) -> list[Milestone]:
    """Milestones (or their dicts) sorted by interval; two at one interval are an error."""
    milestones = [m if isinstance(m, Milestone) else Milestone(**m) for m in schedule or []]
    intervals = [m.interval for m in milestones]
    if len(set(intervals)) != len(intervals):
        raise ValueError(f"The schedule has two milestones at the same interval: {intervals}.")
    return sorted(milestones, key=lambda m: m.interval)
