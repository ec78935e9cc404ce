"""``arbiter-la``: Arbiter with a meta-objective that sees the batch size.

**Our extension.** This is not the algorithm of MacLellan & Dong (arXiv:2205.08231); the faithful
one is :class:`arbiter_env.agents.arbiter.Arbiter`, whose meta-objective sees the batch size B
only as the number of examples it is evaluated on (``docs/hyper_learning.md``, "What the
objective responds to").

``arbiter-la`` ("look-ahead") keeps the paper's machinery (φ proposes N candidate logits, α
mixes them into s, the arg-max of α decides at the end of each interval, φ is warmed up to the
starting size) and replaces the meta-objective with a differentiable **model of the validation
progress over the next interval as a function of B(s)**: SGD on a *noisy quadratic model*
fitted to what was measured at the end of the last interval.

The model (:func:`predicted_validation_change`). With training loss L, squared gradient norm
|G|², per-sample gradient-covariance trace tr(Σ) and its curvature-weighted trace tr(HΣ),
learning rate η(B) (after the env's ``lr_scaling`` rule), momentum μ, and the alignment
ρ = G_val·G_train / |G|² of the validation gradient with the training gradient:

* progress: the quadratic whose curvature explains L and |G|² together, ``h = |G|²/(2L)`` (a
  quadratic with minimum 0 has ``|G|² = 2hL``), keeps a fraction ``r^K`` of its excess loss after
  K = S/B steps of momentum SGD, ``r = (1 − η_e h)²``, with the long-run step
  ``η_e = η/(1 − μ)``;
* noise: each step adds ``½ η_e² tr(HΣ)/B``, which relaxes at the rate of the noise directions,
  ``r_n = (1 − η_e h_n)²`` with ``h_n = tr(HΣ)/tr(Σ)``, so after K steps
  ``N_K = ½ η_e² tr(HΣ)/B · (1 − r_n^K)/(1 − r_n)``: it approaches its stationary level
  ``η_e tr(Σ)/(2B(2 − η_e h_n))`` and grows without bound when ``η_e h_n > 2``;
* the validation loss gains ρ times the training progress and the same noise:
  ``ΔL_val(B) = −ρ (1 − r^K) L + N_K``. When the validation gradient no longer agrees with the
  training gradient (ρ ≤ 0, overfitting), only the noise term is left, and it falls with B.

L and L_val are read from the observation the env hands every controller at each decision.
|G|², tr(Σ), tr(HΣ) and G_val·G_train are measured by the agent once per interval (see
:meth:`ArbiterLA.measure`) and averaged over intervals; ρ and h_n are ratios of averages.

The meta-objective is ``F(s) = ΔL_val(B(s)) / L_val`` with the continuous relaxation
``B(s) = b_min + (b_max − b_min)·σ(s)`` of the stretched logit. Small B takes many noisy steps,
large B few clean ones: F has an interior minimum that moves with the learning rate, with the
noise and with how much training still helps validation. The horizon is the interval the
decision governs (``horizon_intervals`` = 1), not one step: a one-step look-ahead sees only a
step's noise and overshoot and is known to push B up (short-horizon bias); over K steps the
progress accumulates while the noise settles.

Meta-steps run on a **sample clock**, ``meta_steps_per_interval`` per interval evenly spaced in
training samples, so their number does not grow as B shrinks (as it does on the paper's
one-per-update clock). A meta-step is φ on ``phi_batch_size`` validation inputs, the closed-form
model and an Adam step on (φ, α): no pass through the inner network. The measurements cost three
gradients of ``measurement_batch_size`` examples and one Hessian-vector product per interval.

Measured results, and where the model fails, are in ``docs/hyper_learning.md`` (the science
table).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from arbiter_env.agents.arbiter import Arbiter, ArbiterConfig
from arbiter_env.checks import check_int
from arbiter_env.envs.observation import OBSERVATION_INDEX
from arbiter_env.training.hyper import StepInfo

__all__ = ["ArbiterLA", "ArbiterLAConfig", "predicted_validation_change"]


def _dot(xs: Iterable[torch.Tensor], ys: Iterable[torch.Tensor]) -> torch.Tensor:
    """Σ_i ⟨x_i, y_i⟩ over paired tensors, added left to right without a 0 start."""
    return functools.reduce(operator.add, ((x * y).sum() for x, y in zip(xs, ys, strict=True)))


@dataclass
class ArbiterLAConfig(ArbiterConfig):
    """:class:`ArbiterConfig` plus the progress model's settings (our extension).

    The response-map fields (``response``, ``temperature_init``, ``map_lr``,
    ``map_init_scale``, ``freeze_map``, ``response_batch_cap``) and ``meta_period`` have no
    effect: there is no response map, and a sample clock sets the meta-steps.

    Args:
        meta_steps_per_interval: Meta-steps per scheduling interval, evenly spaced in training
            samples (a sample clock: one per ``interval samples / meta_steps_per_interval``).
        horizon_intervals: The model's horizon S in scheduling intervals.
        statistics_decay: Decay of the bias-corrected moving averages of the measured statistics
            (training and validation loss, |G|², tr(Σ), G_val·G_train), one update per interval;
            0 uses the last interval's values alone. ρ is a ratio of averages.
        measurement_batch_size: Examples in each of the three batches (two training, one
            validation) of the once-per-interval measurements (:meth:`ArbiterLA.measure`).
    """

    meta_steps_per_interval: int = 4
    horizon_intervals: float = 1.0
    statistics_decay: float = 0.5
    measurement_batch_size: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("meta_steps_per_interval", "measurement_batch_size"):
            setattr(self, name, check_int(f"ArbiterLAConfig.{name}", getattr(self, name), 1))
        if not 0 <= self.statistics_decay < 1:
            raise ValueError(
                "ArbiterLAConfig.statistics_decay must be in [0, 1), "
                f"got {self.statistics_decay!r}."
            )
        if not (self.horizon_intervals > 0 and math.isfinite(self.horizon_intervals)):
            raise ValueError(
                "ArbiterLAConfig.horizon_intervals must be positive and finite, "
                f"got {self.horizon_intervals!r}."
            )


# ρ is clipped to this range: beyond it the estimate is noise, not alignment.
ALIGNMENT_RANGE = (-2.0, 2.0)


def predicted_validation_change(
    batch_size: torch.Tensor,
    *,
    train_loss: float,
    grad_sq_norm: float,
    trace_covariance: float,
    noise_curvature: float,
    alignment: float,
    lr: torch.Tensor | float,
    momentum: float,
    horizon_samples: float,
) -> torch.Tensor:
    """ΔL_val after ``horizon_samples`` samples of SGD at ``batch_size`` (noisy quadratic model).

    See the module docstring. Differentiable in ``batch_size`` (and ``lr``), exact near
    ``r = 1`` (the geometric sum is written with ``expm1``), and finite where the model predicts
    divergence (``η_e h > 2``: the exponent is capped, so fewer, larger steps still predict
    less damage).
    """
    loss = max(float(train_loss), 1e-8)
    effective_lr = torch.as_tensor(lr, dtype=torch.float64) / (1.0 - momentum)
    steps = horizon_samples / batch_size
    progress_curvature = max(float(grad_sq_norm), 0.0) / (2.0 * loss)
    progress = -torch.expm1(_log_decay(effective_lr * progress_curvature, steps)) * loss
    noise_decay = _log_decay(effective_lr * noise_curvature, 1.0)
    per_step_noise = 0.5 * effective_lr**2 * noise_curvature * max(trace_covariance, 0.0)
    noise = per_step_noise / batch_size * _geometric_sum(noise_decay, steps)
    return -alignment * progress + noise


def _log_decay(rate: torch.Tensor, steps: torch.Tensor | float) -> torch.Tensor:
    """Log r^K for r = (1 − rate)², capped so that a predicted divergence stays finite."""
    log_r = 2.0 * torch.log(torch.abs(1.0 - rate).clamp_min(1e-15))
    return (steps * log_r).clamp(max=50.0)


def _geometric_sum(log_r: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Σ_{j<K} r^j = (1 − r^K)/(1 − r), which tends to K as r → 1 (written with expm1)."""
    near_one = log_r.abs() < 1e-9
    safe = torch.where(near_one, torch.ones_like(log_r), log_r)
    return torch.where(
        near_one, steps, torch.expm1((steps * safe).clamp(max=50.0)) / torch.expm1(safe)
    )


class ArbiterLA(Arbiter):
    """Arbiter whose meta-objective models validation progress in B (our extension).

    Same interface, decisions, warm-up, diagnostics and checkpoints as :class:`Arbiter`; see the
    module docstring for the objective and what it reads and measures.

    Args:
        env: A ``BatchSizeEnv``, possibly wrapped; any action encoding.
        config: Hyperparameters; defaults to :class:`ArbiterLAConfig` ().
        **kwargs: As for :class:`Arbiter` (``schedule``, ``phi``, config field overrides).
    """

    config_class = ArbiterLAConfig
    config: ArbiterLAConfig

    def __init__(self, env: Any, config: ArbiterLAConfig | None = None, **kwargs: Any):
        super().__init__(env, config, **kwargs)
        lr_scaling = self.batch_env.config.lr_scaling
        if lr_scaling not in _LR_RULES:
            raise ValueError(
                f"arbiter-la predicts the learning rate at other batch sizes with lr_scaling "
                f"{sorted(_LR_RULES)}; {lr_scaling!r} depends on the measured gradient noise, "
                "which its model does not predict. Use one of those rules."
            )
        self._model_inputs: dict[str, float] | None = None
        self._averages: dict[str, float] = {}
        self._average_weight = 0.0
        self._meta_ticks = 0
        optimizer = self.batch_env.task.optimizer
        # The model is one of momentum SGD; Adam's normalised steps are not modelled (μ = 0).
        self._momentum = float(optimizer.momentum) if optimizer.name in ("sgd", "sgd-hd") else 0.0

    def on_episode_start(self, observation: np.ndarray) -> None:
        """Starts Arbiter's episode and forgets the moving averages of the gradient statistics."""
        super().on_episode_start(observation)
        self._meta_ticks = 0
        self._averages, self._average_weight = {}, 0.0

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """Measures the gradient statistics the model needs, then decides as Arbiter does."""
        with self._timed("measure"):
            measured = self.measure()
        self._update_model_inputs(_losses_from(observation), measured)
        return super().choose_batch_size(observation)

    def progress_objective(self, s: torch.Tensor) -> torch.Tensor:
        """F(s) = ΔL_val(B(s)) / L_val: the model's relative change of the validation loss."""
        inputs = self._require_model_inputs()
        batch_size = self.b_min + (self.b_max - self.b_min) * torch.sigmoid(s.double())
        change = self._predict(batch_size, inputs)
        return (change / max(inputs["val_loss"], 1e-8)).to(s.dtype)

    def meta_step(self) -> torch.Tensor:
        """One Adam step on (φ, α) against :meth:`progress_objective`; returns F (detached)."""
        with self._timed("phi_forward"):
            inputs, _ = self.trainer.sample_validation(
                self.config.phi_batch_size, generator=self.generator
            )
            candidates = self.candidates(inputs)
            s = self.mixed_logit(candidates)
            self._search.remember(s, candidates)
        with self._timed("response_forward"):
            loss = self.progress_objective(s)
        self._descend(loss, s, torch.tensor(math.nan, device=s.device))
        return self.last_meta_loss

    def measure(self) -> dict[str, float]:
        """Unbiased one-interval estimates of tr(Σ), tr(HΣ) and G_val·G_train.

        Two independent training batches of n give mean gradients g_a, g_b; their difference d
        has covariance 2Σ/n, so ``n/2·‖d‖²`` estimates tr(Σ) and ``n/2·dᵀHd`` estimates tr(HΣ),
        with H the Hessian of the validation loss on a third, validation batch (one
        Hessian-vector product), whose gradient g_val gives ``g_val·(g_a + g_b)/2`` for
        G_val·G_train. Evaluated in evaluation mode with the agent's generator, so inner
        training is untouched.
        """
        trainer, n = self.trainer, self.config.measurement_batch_size
        x_val, y_val = trainer.sample_validation(n, generator=self.generator)
        x_train, y_train = trainer.data.x_train, trainer.data.y_train
        index = torch.randint(x_train.shape[0], (2 * n,), generator=self.generator).to(self.device)
        with trainer.evaluation_mode() as model:
            parameters = [p for p in model.parameters() if p.requires_grad]

            def gradient(part: torch.Tensor) -> tuple[torch.Tensor, ...]:
                loss = F.cross_entropy(model(x_train[part]), y_train[part])
                return torch.autograd.grad(loss, parameters)

            g_a, g_b = gradient(index[:n]), gradient(index[n:])
            val_loss = F.cross_entropy(model(x_val), y_val)
            g_val = torch.autograd.grad(val_loss, parameters, create_graph=True)
            d = [a - b for a, b in zip(g_a, g_b, strict=True)]
            hessian_d = torch.autograd.grad(_dot(g_val, d), parameters)
        g_train_sum = [a + b for a, b in zip(g_a, g_b, strict=True)]
        values = torch.stack(
            [
                _dot(d, d),
                _dot(d, hessian_d),
                _dot([g.detach() for g in g_val], g_train_sum),
                _dot(g_a, g_b),
            ]
        ).tolist()
        d_sq, d_hessian_d, dot, grad_sq_norm = values
        return {
            "trace_covariance": n / 2 * d_sq,
            "trace_hessian_covariance": n / 2 * d_hessian_d,
            "grad_dot": dot / 2,
            "grad_sq_norm": grad_sq_norm,
        }

    @torch.no_grad()
    def predicted_changes(self, sizes: list[int] | torch.Tensor) -> torch.Tensor:
        """The model's ΔL_val for one horizon at each of ``sizes`` (after a decision)."""
        sizes = torch.as_tensor(sizes, dtype=torch.float64)
        return self._predict(sizes, self._require_model_inputs())

    @torch.no_grad()
    def model_best_batch_size(self) -> int:
        """The integer size in ``[b_min, b_max]`` that the progress model ranks best now."""
        if self._model_inputs is None:
            return int(self.batch_env.batch_size)
        sizes = torch.arange(self.b_min, self.b_max + 1, dtype=torch.float64)
        return int(sizes[int(torch.argmin(self._predict(sizes, self._model_inputs)))])

    def interval_diagnostics(self) -> dict[str, Any]:
        """As :meth:`Arbiter.interval_diagnostics`, plus the model's inputs and best size.

        Adds ``model_best_batch_size`` and ``alignment`` (ρ); ``map_norm`` and ``temperature``
        are NaN: there is no response map.
        """
        diagnostics = super().interval_diagnostics()
        if diagnostics and self._model_inputs is not None:
            diagnostics["arbiter"]["model_best_batch_size"] = self.model_best_batch_size()
            for key in ("alignment", "noise_curvature", "trace_covariance"):
                diagnostics["arbiter"][key] = self._model_inputs[key]
        return diagnostics

    # --- internals ------------------------------------------------------------------------------

    def _response_width(self) -> int | None:
        return None

    def _on_inner_update(self, info: StepInfo) -> None:
        if info.trainer.model is not self._episode_model:
            return
        # Every tick of the sample clock passed by this update gets its meta-step, so large
        # batches are not under-served either.
        while info.trainer.samples_seen >= self._meta_sample(self._meta_ticks + 1):
            self._meta_ticks += 1
            self.meta_step()

    def _update_model_inputs(self, losses: dict[str, float], measured: dict[str, float]) -> None:
        """Sets the model's inputs: :meth:`_averaged` and the alignment ρ (a ratio of averages)."""
        inputs = self._averaged(losses, measured)
        low, high = ALIGNMENT_RANGE
        ratio = inputs["grad_dot"] / max(inputs["grad_sq_norm"], 1e-30)
        inputs["alignment"] = min(max(ratio, low), high)
        self._model_inputs = inputs

    def _averaged(self, losses: dict[str, float], measured: dict[str, float]) -> dict[str, float]:
        """The latest losses, averaged gradient statistics and the noise curvature h_n.

        The statistics are bias-corrected moving averages (as Adam's moments), because one
        interval measures them with much more noise than the losses.
        """
        decay = self.config.statistics_decay
        for key, value in measured.items():
            self._averages[key] = decay * self._averages.get(key, 0.0) + value
        self._average_weight = decay * self._average_weight + 1.0
        inputs = {key: total / self._average_weight for key, total in self._averages.items()}
        inputs.update(losses)
        # Ratio of averages; negative curvature along the noise gets no weight.
        inputs["noise_curvature"] = max(
            inputs["trace_hessian_covariance"] / max(inputs["trace_covariance"], 1e-30), 0.0
        )
        return inputs

    def _meta_sample(self, tick: int) -> float:
        """The sample count at which the ``tick``-th meta-step of the episode is due."""
        env = self.batch_env
        # Computed afresh, not accumulated, so that the last tick falls exactly on the budget.
        return tick * env.budget / (env.task.num_intervals * self.config.meta_steps_per_interval)

    def _horizon_samples(self) -> float:
        env = self.batch_env
        return self.config.horizon_intervals * env.budget / env.task.num_intervals

    def _require_model_inputs(self) -> dict[str, float]:
        if self._model_inputs is None:
            raise RuntimeError("ArbiterLA needs an observation before its first meta-step.")
        return self._model_inputs

    def _predict(self, batch_size: torch.Tensor, inputs: dict[str, float]) -> torch.Tensor:
        return predicted_validation_change(
            batch_size,
            train_loss=inputs["train_loss"],
            grad_sq_norm=inputs["grad_sq_norm"],
            trace_covariance=inputs["trace_covariance"],
            noise_curvature=inputs["noise_curvature"],
            alignment=inputs["alignment"],
            lr=self._lr_at(batch_size),
            momentum=self._momentum,
            horizon_samples=self._horizon_samples(),
        )

    def _lr_at(
        self,
        batch_size: torch.Tensor,
        current: int | None = None,
        current_lr: float | None = None,
    ) -> torch.Tensor:
        """The learning rate the trainer would use at ``batch_size`` (its lr_scaling rule).

        Relative to ``current_lr`` at size ``current`` (default: the trainer's now).
        """
        trainer = self.trainer
        rule = _LR_RULES[trainer.lr_scaling]
        current = trainer.batch_size if current is None else current
        current_lr = trainer.current_lr if current_lr is None else current_lr
        now = torch.tensor(current / trainer.base_batch_size, dtype=torch.float64)
        return current_lr / rule(now) * rule(batch_size / trainer.base_batch_size)


# The trainer's lr_scaling rules, on tensors so that the learning rate stays differentiable in B.
_LR_RULES = {
    "none": lambda ratio: torch.ones_like(ratio),
    "linear": lambda ratio: ratio,
    "sqrt": torch.sqrt,
}


def _losses_from(observation: np.ndarray) -> dict[str, float]:
    """The training and validation loss of the last interval, read back from an observation."""
    observation = np.asarray(observation, dtype=np.float64).reshape(-1)
    return {
        "train_loss": float(observation[OBSERVATION_INDEX["train_loss"]]),
        "val_loss": float(observation[OBSERVATION_INDEX["val_loss"]]),
    }
