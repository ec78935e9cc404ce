"""Learning-rate schedules on the sample clock: ``constant``, ``step``, ``cosine`` and ``wsd``.

A schedule is a factor ``m(p)`` on the learning rate, a function of ``p``, the fraction of the
episode's *sample* budget consumed. The trainer evaluates it once per inner update, at the middle
of the update's batch: an update that trains on samples ``[s, s + b)`` of a budget of ``N`` uses

    ε = ε_base · scaling(b / B₀) · m((s + b/2) / N)

where ``scaling`` is the env's ``lr_scaling`` rule (none / linear / sqrt / adascale) and ε_base
the task's learning rate (or the one a baseline set with ``BatchSizeEnv.set_learning_rate``).
Because the clock counts samples, not updates or intervals, the learning rate at any point of the
data stream is the same whatever batch sizes were chosen before it: a controller that doubles
the batch size takes half as many updates through the decay, each at the rate of its position,
and the schedule stays exact under any batch-size schedule. (An update clock would decay faster
for small batches; an interval clock would hold the rate for a whole interval.)

The ``constant`` schedule (the default) is never evaluated: the trainer writes the learning rate
once per interval, exactly as it did before schedules existed.

| name       | factor ``m(p)`` after the warm-up                                    | parameters               |
|------------|----------------------------------------------------------------------|--------------------------|
| constant   | 1                                                                    | none                     |
| step       | ``gamma^k``, ``k`` = number of ``milestones`` ≤ p                    | milestones, gamma        |
| cosine     | ``f + (1 − f)·(1 + cos(π·q))/2``, ``q = (p − w)/(1 − w)``            | final_factor             |
| wsd        | 1 until ``1 − decay``, then linearly to ``f`` at ``p = 1``           | decay, final_factor      |

``step``, ``cosine`` and ``wsd`` take a linear ``warmup``: ``m(p) = p/w`` for ``p < w`` (then the
formula above), with ``w = warmup``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

from arbiter_env.checks import require

LrScheduleName = Literal["constant", "step", "cosine", "wsd"]
LR_SCHEDULES: tuple[str, ...] = ("constant", "step", "cosine", "wsd")

# Which parameters each schedule reads; a non-default value of any other is an error.
_PARAMETERS: dict[str, tuple[str, ...]] = {
    "constant": (),
    "step": ("warmup", "milestones", "gamma"),
    "cosine": ("warmup", "final_factor"),
    "wsd": ("warmup", "decay", "final_factor"),
}


@dataclass(frozen=True)
class LrSchedule:
    """A learning-rate schedule on the sample clock (see the module docstring for the formulas).

    Args:
        name: ``"constant"`` (default: the task's rate throughout), ``"step"``, ``"cosine"`` or
            ``"wsd"`` (warmup-stable-decay, Hu et al. 2024, MiniCPM, arXiv:2404.06395).
        warmup: Fraction of the budget over which the factor rises linearly from 0 to 1
            (``step``, ``cosine``, ``wsd``). Default 0.
        milestones: ``step``: increasing fractions of the budget in (0, 1) where the factor is
            multiplied by ``gamma``. Default (0.5, 0.75), the 50% / 75% rule of thumb of
            ImageNet and CIFAR step schedules.
        gamma: ``step``: the factor at each milestone, in (0, 1]. Default 0.1.
        decay: ``wsd``: fraction of the budget, at its end, over which the factor falls linearly
            to ``final_factor``. Default 0.2 (MiniCPM decays over about the last 10–20%).
        final_factor: ``cosine`` and ``wsd``: the factor at the end of the budget, in [0, 1].
            Default 0.
    """

    name: LrScheduleName = "constant"
    warmup: float = 0.0
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    decay: float = 0.2
    final_factor: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in LR_SCHEDULES:
            raise ValueError(
                f"Unknown lr_schedule {self.name!r}; choose one of {', '.join(LR_SCHEDULES)}."
            )
        if isinstance(self.milestones, list):  # YAML gives lists
            object.__setattr__(self, "milestones", tuple(self.milestones))
        for name in ("warmup", "gamma", "decay", "final_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"lr_schedule.{name} must be a number, got {value!r}.")
        defaults = LrSchedule.__dataclass_fields__
        ignored = [
            f.name
            for f in fields(self)
            if f.name != "name"
            and f.name not in _PARAMETERS[self.name]
            and getattr(self, f.name) != defaults[f.name].default
        ]
        if ignored:
            raise ValueError(
                f"lr_schedule {self.name!r} takes no {', '.join(ignored)}; its parameters are "
                f"{', '.join(_PARAMETERS[self.name]) or 'none'}."
            )
        require(0 <= self.warmup < 1, f"lr_schedule.warmup must be in [0, 1), got {self.warmup}.")
        require(
            all(isinstance(m, int | float) and 0 < m < 1 for m in self.milestones)
            and list(self.milestones) == sorted(set(self.milestones)),
            f"lr_schedule.milestones must be increasing fractions in (0, 1), got {self.milestones}.",
        )
        require(0 < self.gamma <= 1, f"lr_schedule.gamma must be in (0, 1], got {self.gamma}.")
        require(0 < self.decay <= 1, f"lr_schedule.decay must be in (0, 1], got {self.decay}.")
        require(
            0 <= self.final_factor <= 1,
            f"lr_schedule.final_factor must be in [0, 1], got {self.final_factor}.",
        )
        if self.name == "wsd":
            require(
                self.warmup <= 1 - self.decay,
                f"lr_schedule: warmup ({self.warmup}) and decay ({self.decay}) overlap; "
                "their sum must be at most 1.",
            )

    @classmethod
    def from_value(cls, value: Any) -> LrSchedule:
        """A schedule from a name (``"cosine"``), a mapping of fields, or a schedule."""
        if isinstance(value, LrSchedule):
            return value
        if isinstance(value, str):
            return cls(name=value)  # type: ignore[arg-type]
        if isinstance(value, dict):
            valid = [f.name for f in fields(cls)]
            unknown = sorted(set(value) - set(valid))
            if unknown:
                raise ValueError(
                    f"Unknown lr_schedule key(s) {unknown}; valid keys: {', '.join(valid)}."
                )
            return cls(**value)
        raise ValueError(
            f"lr_schedule must be a name ({', '.join(LR_SCHEDULES)}) or a mapping of its "
            f"fields, got {type(value).__name__}."
        )

    @property
    def is_constant(self) -> bool:
        """Whether the factor is 1 everywhere (the trainer then never evaluates it)."""
        return self.name == "constant"

    def factor(self, progress: float) -> float:
        """``m(p)``, the factor on the learning rate at ``progress`` (clamped to [0, 1])."""
        p = min(max(progress, 0.0), 1.0)
        if self.name == "constant":
            return 1.0
        if p < self.warmup:
            return p / self.warmup
        if self.name == "step":
            return self.gamma ** sum(p >= m for m in self.milestones)
        f = self.final_factor
        if self.name == "cosine":
            q = (p - self.warmup) / (1 - self.warmup)
            return f + (1 - f) * (1 + math.cos(math.pi * q)) / 2
        decay_start = 1 - self.decay  # wsd
        if p <= decay_start:
            return 1.0
        return 1 - (1 - f) * (p - decay_start) / self.decay
