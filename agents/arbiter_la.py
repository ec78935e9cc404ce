"""``arbiter-la``: Arbiter with a meta-objective that sees the batch size. **Our extension.**

This is not the algorithm of MacLellan & Dong (arXiv:2205.08231); the faithful one is
:class:`arbiter_env.agents.arbiter.Arbiter`. Measured on our implementation, the paper's
meta-objective depends on the candidate logit s only through a per-feature gain in front of the
output layer, and on the batch size B only as the number of examples it is evaluated on; the
direction of its schedules is set by the sign of the response map's initial temperature
component (``docs/hyper_learning.md``, "What the objective responds to").

``arbiter-la`` keeps the paper's machinery (φ proposes N candidate logits, α mixes them into s,
the arg-max of α decides at the end of each interval, φ is warmed up to the starting size) and
replaces the meta-objective with a differentiable **model of the training progress as a function
of B(s)**: the expected loss after the next interval of SGD on a *noisy quadratic model* fitted
to what the environment measured at the end of the last interval.

The model, per :func:`predicted_loss`. With loss L, squared gradient norm |G|², per-sample
gradient-covariance trace tr(Σ), learning rate η(B) (after the env's ``lr_scaling`` rule) and
momentum μ:

* the quadratic's curvature is the one that explains L and |G|² together, ``h = |G|²/(2L)``
  (a quadratic with minimum 0 has ``|G|² = 2hL``); isotropic, so ``tr(HΣ) ≈ h·tr(Σ)``;
* momentum SGD is modelled by its long-run step ``η_e = η/(1 − μ)``; each step multiplies the
  expected excess loss by ``r = (1 − η_e h)²`` and adds the noise of a batch of B,
  ``½ η_e² h tr(Σ)/B``;
* over a horizon of S samples, K = S/B steps give
  ``L_K(B) = r^K L + ½ η_e² h tr(Σ)/B · (1 − r^K)/(1 − r)``.

Small B takes many noisy steps, large B few clean ones; L_K has an interior minimum that moves
with the learning rate (about ∝ η, the linear scaling rule) and with the noise. The horizon is
the interval the decision governs (``horizon_intervals`` = 1), not one step: a one-step
look-ahead sees only the cost of a step's noise and overshoot and is known to push B up
(short-horizon bias), while over K steps the bias term decays and the noise settles at its
stationary level ``η_e tr(Σ)/(2B(2 − η_e h))``. The meta-objective is ``F(s) = log L_K(B(s))/L``
with the continuous relaxation ``B(s) = b_min + (b_max − b_min)·σ(s)`` of the stretched logit.

Meta-steps run on a **sample clock**, one per ``meta_samples`` training samples, so their cost
does not grow as B shrinks (the paper's one-per-update clock gives 72 meta-steps per interval at
B = 8 and 4.5 at B = 128 on digits-mlp). A meta-step is φ on ``phi_batch_size`` validation inputs,
the closed-form model, and an Adam step on (φ, α): no pass through the inner network at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from arbiter_env.agents.arbiter import Arbiter, ArbiterConfig
from arbiter_env.features import OBSERVATION_INDEX
from arbiter_env.trainer import StepInfo

__all__ = ["ArbiterLA", "ArbiterLAConfig", "predicted_loss"]


@dataclass
class ArbiterLAConfig(ArbiterConfig):
    """:class:`ArbiterConfig` plus the progress model's settings (our extension).

    The response-map fields (``response``, ``temperature_init``, ``map_lr``,
    ``map_init_scale``, ``freeze_map``, ``response_batch_cap``) have no effect: there is no
    response map. ``meta_period`` is replaced by the sample clock ``meta_samples``.

    Args:
        meta_samples: One meta-step per this many training samples.
        horizon_intervals: The model's horizon S in scheduling intervals.
    """

    meta_samples: int = 64
    horizon_intervals: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.meta_samples, bool) or not (
            isinstance(self.meta_samples, int) and self.meta_samples >= 1
        ):
            raise ValueError(
                f"ArbiterLAConfig.meta_samples must be a positive integer, got {self.meta_samples!r}."
            )
        if not (self.horizon_intervals > 0 and math.isfinite(self.horizon_intervals)):
            raise ValueError(
                "ArbiterLAConfig.horizon_intervals must be positive and finite, "
                f"got {self.horizon_intervals!r}."
            )


def predicted_loss(
    batch_size: torch.Tensor,
    *,
    loss: float,
    grad_sq_norm: float,
    trace_covariance: float,
    lr: torch.Tensor | float,
    momentum: float,
    horizon_samples: float,
) -> torch.Tensor:
    """Expected loss after ``horizon_samples`` samples of SGD at ``batch_size`` (noisy quadratic).

    See the module docstring for the model. Differentiable in ``batch_size`` (and ``lr``), exact
    near ``r = 1`` (the geometric sum is written with ``expm1``), and finite when the model
    predicts divergence (``η_e h > 2``: the exponent is capped, so larger B, fewer steps, still
    predicts less damage).
    """
    loss = max(float(loss), 1e-8)
    curvature = max(float(grad_sq_norm), 0.0) / (2.0 * loss)
    effective_lr = torch.as_tensor(lr, dtype=torch.float64) / (1.0 - momentum)
    rate = effective_lr * curvature
    log_r = 2.0 * torch.log(torch.abs(1.0 - rate).clamp_min(1e-15))
    steps = horizon_samples / batch_size
    decay = (steps * log_r).clamp(max=50.0)
    # Σ_{j<K} r^j = (1 − r^K)/(1 − r); → K as r → 1.
    near_one = log_r.abs() < 1e-9
    safe_log_r = torch.where(near_one, torch.ones_like(log_r), log_r)
    geometric = torch.where(near_one, steps, torch.expm1(decay) / torch.expm1(safe_log_r))
    noise_per_step = 0.5 * effective_lr**2 * curvature * max(float(trace_covariance), 0.0)
    return loss * torch.exp(decay) + noise_per_step / batch_size * geometric


class ArbiterLA(Arbiter):
    """Arbiter whose meta-objective is a model of training progress in B (our extension).

    Same interface, decisions, warm-up, diagnostics and checkpoints as :class:`Arbiter`; see the
    module docstring for the objective. The statistics the model needs (training loss, |G|²,
    tr(Σ), learning rate) are read from the observation the env hands every controller at each
    decision, so it measures nothing itself.

    Args:
        env: A ``BatchSizeEnv``, possibly wrapped; any action encoding.
        config: Hyperparameters; defaults to :class:`ArbiterLAConfig` ().
        **kwargs: As for :class:`Arbiter` (``schedule``, ``phi``, config field overrides).
    """

    config_class = ArbiterLAConfig
    config: ArbiterLAConfig

    def __init__(self, env: Any, config: ArbiterLAConfig | None = None, **kwargs: Any):
        super().__init__(env, config, **kwargs)
        self._statistics: dict[str, float] | None = None
        self._next_meta_sample = 0
        optimizer = self.batch_env.task.optimizer
        # The model is one of momentum SGD; Adam's normalised steps are not modelled (μ = 0).
        self._momentum = float(optimizer.momentum) if optimizer.name in ("sgd", "sgd-hd") else 0.0

    def on_episode_start(self, observation: np.ndarray) -> None:
        super().on_episode_start(observation)
        self._next_meta_sample = self.meta_samples_after(self.trainer.samples_seen)

    def choose_batch_size(self, observation: np.ndarray) -> int:
        self._statistics = _statistics_from(observation)
        return super().choose_batch_size(observation)

    def meta_samples_after(self, samples: int) -> int:
        """The sample count of the next meta-step after ``samples`` on the sample clock."""
        period = self.config.meta_samples
        return (samples // period + 1) * period

    def progress_objective(self, s: torch.Tensor) -> torch.Tensor:
        """F(s) = log(L_K(B(s)) / L): the model's predicted relative loss after the horizon."""
        statistics = self._statistics
        if statistics is None:
            raise RuntimeError("ArbiterLA needs an observation before its first meta-step.")
        batch_size = self._relaxed_batch_size(s.double())
        predicted = predicted_loss(
            batch_size,
            loss=statistics["train_loss"],
            grad_sq_norm=statistics["grad_sq_norm"],
            trace_covariance=statistics["trace_covariance"],
            lr=self._lr_at(batch_size),
            momentum=self._momentum,
            horizon_samples=self._horizon_samples(),
        )
        return torch.log(predicted / max(statistics["train_loss"], 1e-8)).to(s.dtype)

    def meta_step(self) -> torch.Tensor:
        """One Adam step on (φ, α) against :meth:`progress_objective`; returns F (detached)."""
        with self._timed("phi_forward"):
            inputs, _ = self.trainer.sample_validation(
                self.config.phi_batch_size, generator=self.generator
            )
            candidates = self.candidates(inputs)
            s = self.mixed_logit(candidates)
            self._remember_logit(s, candidates)
        with self._timed("response_forward"):
            loss = self.progress_objective(s)
        self._descend(loss, s, torch.tensor(math.nan, device=s.device))
        return self.last_meta_loss

    @torch.no_grad()
    def model_best_batch_size(self) -> int:
        """The integer size in ``[b_min, b_max]`` that the progress model ranks best now."""
        sizes = torch.arange(self.b_min, self.b_max + 1, dtype=torch.float64)
        statistics = self._statistics
        if statistics is None:
            return int(self.batch_env.batch_size)
        predicted = predicted_loss(
            sizes,
            loss=statistics["train_loss"],
            grad_sq_norm=statistics["grad_sq_norm"],
            trace_covariance=statistics["trace_covariance"],
            lr=self._lr_at(sizes),
            momentum=self._momentum,
            horizon_samples=self._horizon_samples(),
        )
        return int(sizes[int(torch.argmin(predicted))])

    def interval_diagnostics(self) -> dict[str, Any]:
        """As :meth:`Arbiter.interval_diagnostics`, plus ``model_best_batch_size``.

        ``map_norm`` and ``temperature`` are NaN: there is no response map.
        """
        diagnostics = super().interval_diagnostics()
        if diagnostics:
            diagnostics["arbiter"]["model_best_batch_size"] = self.model_best_batch_size()
        return diagnostics

    # --- internals ------------------------------------------------------------------------------

    def _response_width(self) -> int | None:
        return None

    def _on_inner_update(self, info: StepInfo) -> None:
        if info.trainer.model is not self._episode_model:
            return
        # Every tick of the sample clock passed by this update gets its meta-step, so large
        # batches are not under-served either.
        while info.trainer.samples_seen >= self._next_meta_sample:
            self.meta_step()
            self._next_meta_sample += self.config.meta_samples

    def _relaxed_batch_size(self, s: torch.Tensor) -> torch.Tensor:
        """The stretched logit without its floor: differentiable in s."""
        return self.b_min + (self.b_max - self.b_min) * torch.sigmoid(s)

    def _lr_at(self, batch_size: torch.Tensor) -> torch.Tensor:
        """The learning rate the trainer would use at ``batch_size`` (its lr_scaling rule)."""
        trainer = self.trainer
        current = trainer.current_lr / _LR_RULES[trainer.lr_scaling](
            torch.tensor(trainer.batch_size / trainer.base_batch_size, dtype=torch.float64)
        )
        return current * _LR_RULES[trainer.lr_scaling](batch_size / trainer.base_batch_size)

    def _horizon_samples(self) -> float:
        return (
            self.config.horizon_intervals
            * self.batch_env.budget
            / self.batch_env.task.num_intervals
        )


# The trainer's lr_scaling rules, on tensors so that the learning rate stays differentiable in B.
_LR_RULES = {
    "none": lambda ratio: torch.ones_like(ratio),
    "linear": lambda ratio: ratio,
    "sqrt": torch.sqrt,
}


def _statistics_from(observation: np.ndarray) -> dict[str, float]:
    """Training loss, |G|² and tr(Σ) as the env measured them, read back from an observation."""
    observation = np.asarray(observation, dtype=np.float64).reshape(-1)
    return {
        "train_loss": float(observation[OBSERVATION_INDEX["train_loss"]]),
        "grad_sq_norm": 10.0 ** observation[OBSERVATION_INDEX["log10_grad_sq_norm"]],
        "trace_covariance": 10.0 ** observation[OBSERVATION_INDEX["log10_trace_cov"]],
    }
