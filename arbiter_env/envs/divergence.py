"""When an inner run counts as diverged, and what diverging costs.

A run **diverges** in an interval when

1. its training loss or a parameter is non-finite (NaN or infinite), or its validation loss is, or
2. its validation loss is *finite* but above the **blow-up threshold**
   ``min(loss_ratio × L_0, max_loss)``, where ``L_0`` is the validation loss at ``reset`` (either
   bound may be switched off with ``None``).

The default, ``loss_ratio=10`` and no absolute cap, flags a network whose validation loss has grown
tenfold over its random initialisation: runs that blow up without a NaN rise far above that,
and the others stay near ``L_0`` (``benchmarks/divergence_ratios.py``; the table is in
``docs/benchmarks.md``). A diverged episode terminates with ``info["diverged"] = True``.

**The penalty.** The interval in which the run diverges is rewarded so that the episode's return
is exactly::

    log(L_0 / threshold) − worst_case_cost − divergence_penalty

whatever happened before (the log-loss rewards telescope, so the reward of that interval is
``log L_prev − log threshold`` minus the cost still to come in the worst case minus the penalty).
An episode that *finishes* ends with ``L_T ≤ threshold`` (otherwise it would have diverged), so
its return is at least ``log(L_0 / threshold) − worst_case_cost``: with any positive penalty a
diverged episode scores strictly below every finished one, and a NaN and a finite blow-up score
the same. ``worst_case_cost`` is the ``"updates"`` cost of running every interval at
``batch_min``; the guarantee holds for the ``"none"`` and ``"updates"`` costs. A wall-time cost
has no upper bound, so with ``cost="wall_time"`` (or with both bounds switched off, where there
is no threshold) the diverging interval is simply rewarded ``−divergence_penalty``, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["DivergenceRule"]


@dataclass(frozen=True)
class DivergenceRule:
    """The finite blow-up rule (non-finite values always count as divergence).

    Args:
        loss_ratio: Diverged when the validation loss exceeds ``loss_ratio`` × its value at
            ``reset``; ``None`` switches this bound off. Must be > 1.
        max_loss: Diverged when the validation loss exceeds this absolute value; ``None``
            (default) switches it off. Must be > 0.
    """

    loss_ratio: float | None = 10.0
    max_loss: float | None = None

    def __post_init__(self) -> None:
        for name, minimum in (("loss_ratio", 1.0), ("max_loss", 0.0)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(
                    f"DivergenceRule.{name} must be a number or None, got {value!r} "
                    f"({type(value).__name__})."
                )
            if not (math.isfinite(value) and value > minimum):
                raise ValueError(
                    f"DivergenceRule.{name} must be finite and > {minimum:g} (or None to switch "
                    f"it off), got {value!r}."
                )

    @classmethod
    def from_value(cls, value: DivergenceRule | dict[str, Any] | None) -> DivergenceRule:
        """Accepts a rule, a dict of its fields (unknown keys are errors), or ``None`` (default)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"loss_ratio", "max_loss"})
            if unknown:
                raise ValueError(
                    f"divergence: unknown key(s) {unknown}; the rule has loss_ratio and max_loss."
                )
            return cls(**value)
        raise TypeError(
            f"divergence must be a DivergenceRule, a dict or None, got {type(value).__name__}."
        )

    def threshold(self, initial_loss: float) -> float:
        """The validation loss above which a run counts as diverged (``inf`` when disabled)."""
        bounds = [math.inf]
        if self.loss_ratio is not None and math.isfinite(initial_loss):
            bounds.append(self.loss_ratio * initial_loss)
        if self.max_loss is not None:
            bounds.append(self.max_loss)
        return min(bounds)

    def exceeded(self, val_loss: float, initial_loss: float) -> bool:
        """Whether ``val_loss`` counts as diverged (non-finite, or above the threshold)."""
        return not math.isfinite(val_loss) or val_loss > self.threshold(initial_loss)
