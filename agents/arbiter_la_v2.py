"""``arbiter-la`` v2: a heavy-ball noisy-quadratic model of one interval, calibrated online.

**Our extension**, not the paper's algorithm (see :mod:`arbiter_env.agents.arbiter_la` for v1 and
``docs/hyper_learning.md`` for why). v1 is kept as ``arbiter-la-v1``; this is ``arbiter-la``.

The model (:func:`predicted_validation_change_v2`) predicts the change of the validation loss
over the next interval of S samples if it is trained at batch size B, K = S/B steps of SGD with
heavy-ball momentum μ at the learning rate η(B) the trainer would apply (its ``lr_scaling`` rule):

* **Dynamics of heavy ball, not of SGD at η/(1−μ).** On a quadratic of curvature h one step maps
  (x_t, x_{t−1}) by the characteristic polynomial λ² − (1 + μ − ηh)λ + μ. The slowest mode's loss
  contraction per step is q = max|λ|² (:func:`heavy_ball_contraction`); it is < 1 exactly for
  0 < ηh < 2(1 + μ). With gradient noise of variance σ² per step the stationary excess loss is
  ``η(1+μ)σ² / (2(1−μ)(2(1+μ) − ηh))`` (:func:`heavy_ball_stationary_loss`). At μ = 0 both are
  v1's: q = (1 − ηh)², ``ησ²/(2(2 − ηh))``.
* **Progress toward a loss floor, calibrated.** Only a fraction e of the training loss is
  reducible, E = e·L; the curvature is the one that explains E and |G|² together,
  h = |G|²/(2E), and K steps remove ``(1 − q^K)·E``. Few steps (large B) make progress at the
  first-order rate η|G|²/(1−μ) per step whatever e is; many steps (small B) saturate at E. v1 is
  e = 1 (the loss can fall to zero). e is fitted online (:class:`LossFloorCalibration`): after
  each interval, the e for which the model reproduces the measured change of the validation
  loss at the size actually played, averaged in log space over intervals with forgetting and
  shrunk toward e₀ = 1. No alignment ρ is measured: e also absorbs how much of the training
  progress reaches the validation loss.
* **Noise, relative to now.** The per-step gradient noise of a batch of B drawn without
  replacement from N examples is ``tr(Σ)/B · (N − B)/(N − 1)``. The noise part of the loss
  relaxes from its present level, the stationary level of the size just played, towards that of
  B, at the same contraction: ``(N∞(B) − N∞(B_now))·(1 − q^K)``. A larger batch therefore
  predicts an immediate gain (the annealing that a falling noise level gives) and a smaller one
  a cost, both of which were missing from v1.
* **Divergence.** Where ηh ≥ 2(1 + μ) the model predicts divergence and the size scores
  ``+L_val`` (the loss doubles): never chosen while a stable size exists.

Statistics: right before each decision the agent draws two training batches of n at the
current parameters, in evaluation mode, with its own generator. Their losses give L and their
mean gradients g_a, g_b give ``|G|² = g_a·g_b`` (unbiased) and ``tr(Σ) = n/2·‖g_a − g_b‖²`` at
the same point. n is capped so that the measurement costs at most ``measurement_fraction`` of the
interval's update passes (a pass: one example through forward and backward; the measurement
takes 2n). The counts are kept in :attr:`ArbiterLAv2.measurement_passes` and
:attr:`ArbiterLAv2.update_passes`.

Decisions (``decision``):

* ``"argmin"`` (default): the model's best ladder size within a trust region: from the current
  size B, the ladder rungs in [B/2, 2B] and B itself; a move needs the predicted change to beat
  keeping B by ``hysteresis`` × |predicted change at B|. No φ, no meta-steps, no warm-up.
* ``"alpha"``: the paper's machinery as in v1 (φ proposes candidates, α mixes them, the arg-max
  of α decides) with this model as the meta-objective.

A **divergence guard** overrides both: if the validation loss rose by more than
``guard_log_increase`` (log) over the last interval, the next size is double the last one
(capped at b_max), and no size below the one that blew up is chosen again in the episode.

Measured results, the calibration table and the dev log are in ``docs/hyper_learning.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from arbiter_env.agents.arbiter_la import ArbiterLA, ArbiterLAConfig, _tensor_sum
from arbiter_env.features import OBSERVATION_INDEX
from arbiter_env.training.hyper import StepInfo

__all__ = [
    "ArbiterLAv2",
    "ArbiterLAv2Config",
    "LossFloorCalibration",
    "heavy_ball_contraction",
    "heavy_ball_stationary_loss",
    "predicted_validation_change_v2",
]

DECISIONS = ("argmin", "alpha")


@dataclass
class ArbiterLAv2Config(ArbiterLAConfig):
    """:class:`ArbiterLAConfig` plus v2's calibration, decision and cost settings.

    Args:
        decision: ``"argmin"`` (the model's best size in a trust region) or ``"alpha"`` (the
            paper's φ/α arg-max on this model).
        hysteresis: A move must beat keeping the size by this fraction of the predicted change
            at the current size.
        calibration_prior: The prior reducible fraction e₀ (1: v1's progress).
        calibration_strength: Shrinkage toward e₀, in intervals' worth of evidence.
        calibration_decay: Forgetting of older intervals in the fit of e (per interval).
        calibration_min: Lower clip of e.
        measurement_fraction: Cap of the measurement's passes as a fraction of the interval's
            update passes.
        guard_log_increase: The divergence guard's trigger: log(L_val now / L_val before).
    """

    decision: str = "argmin"
    hysteresis: float = 0.05
    calibration_prior: float = 1.0
    calibration_strength: float = 0.5
    calibration_decay: float = 0.7
    calibration_min: float = 1e-3
    measurement_fraction: float = 0.25
    guard_log_increase: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decision not in DECISIONS:
            raise ValueError(
                f"ArbiterLAv2Config.decision must be one of {DECISIONS}, got {self.decision!r}."
            )
        if not 0 < self.calibration_min <= self.calibration_prior <= 1:
            raise ValueError(
                "ArbiterLAv2Config needs 0 < calibration_min ≤ calibration_prior ≤ 1, got "
                f"{self.calibration_min!r} and {self.calibration_prior!r}."
            )
        for name in ("hysteresis", "calibration_strength"):
            if not getattr(self, name) >= 0:
                raise ValueError(
                    f"ArbiterLAv2Config.{name} must be ≥ 0, got {getattr(self, name)!r}."
                )
        if not 0 <= self.calibration_decay < 1:
            raise ValueError(
                "ArbiterLAv2Config.calibration_decay must be in [0, 1), "
                f"got {self.calibration_decay!r}."
            )
        for name in ("measurement_fraction", "guard_log_increase"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"ArbiterLAv2Config.{name} must be > 0, got {getattr(self, name)!r}."
                )


def heavy_ball_contraction(lr_curvature: torch.Tensor, momentum: float) -> torch.Tensor:
    """Per-step loss contraction max|λ|² of heavy ball on a quadratic, at ηh = ``lr_curvature``.

    λ are the roots of λ² − (1 + μ − ηh)λ + μ. Complex roots (a² < 4μ) have |λ|² = μ; real ones
    give ``((|a| + √(a² − 4μ))/2)²`` with a = 1 + μ − ηh. < 1 exactly for 0 < ηh < 2(1 + μ).
    """
    a = 1.0 + momentum - torch.as_tensor(lr_curvature, dtype=torch.float64)
    discriminant = a * a - 4.0 * momentum
    real = ((a.abs() + discriminant.clamp_min(0.0).sqrt()) / 2.0) ** 2
    return torch.where(discriminant >= 0, real, torch.full_like(a, momentum))


def heavy_ball_stationary_loss(
    lr: torch.Tensor | float,
    curvature: torch.Tensor | float,
    momentum: float,
    noise_variance: torch.Tensor | float,
) -> torch.Tensor:
    """Stationary excess loss ½h·Var(x) of heavy ball with gradient noise of variance σ².

    ``η(1+μ)σ² / (2(1−μ)(2(1+μ) − ηh))``: the AR(2) variance of x_{t+1} = (1+μ−ηh)x_t − μx_{t−1}
    − ηξ_t times h/2. Infinite (``inf``) where ηh ≥ 2(1 + μ).
    """
    lr = torch.as_tensor(lr, dtype=torch.float64)
    margin = 2.0 * (1.0 + momentum) - lr * curvature
    value = lr * (1.0 + momentum) * noise_variance / (2.0 * (1.0 - momentum) * margin)
    return torch.where(margin > 0, value, torch.full_like(value, math.inf))


def predicted_validation_change_v2(
    batch_size: torch.Tensor,
    *,
    train_loss: float,
    val_loss: float,
    grad_sq_norm: float,
    trace_covariance: float,
    noise_curvature: float,
    train_size: int,
    current_batch_size: float,
    lr: torch.Tensor,
    current_lr: float,
    momentum: float,
    horizon_samples: float,
    reducible_fraction: float,
) -> dict[str, torch.Tensor]:
    """v2's ΔL_val over ``horizon_samples`` at each ``batch_size`` (see the module docstring).

    Returns:
        ``{"change", "progress", "noise"}``: the prediction and its two parts, with
        E = ``reducible_fraction``·L.
    """
    batch_size = torch.as_tensor(batch_size, dtype=torch.float64)
    loss = max(float(train_loss), 1e-8) * reducible_fraction
    curvature = max(float(grad_sq_norm), 0.0) / (2.0 * loss)
    steps = horizon_samples / batch_size
    contraction = heavy_ball_contraction(lr * curvature, momentum)
    noise_contraction = heavy_ball_contraction(lr * noise_curvature, momentum)
    stable = (contraction < 1.0) & (noise_contraction < 1.0)
    progress = _relaxed(contraction, steps) * -loss

    def stationary(size: torch.Tensor, step_lr: torch.Tensor) -> torch.Tensor:
        # Variance of a mean of `size` examples drawn without replacement from `train_size`.
        replacement = ((train_size - size) / max(train_size - 1, 1)).clamp_min(0.0)
        variance = max(float(trace_covariance), 0.0) / size * replacement
        return heavy_ball_stationary_loss(step_lr, noise_curvature, momentum, variance)

    now = stationary(
        torch.tensor(float(current_batch_size), dtype=torch.float64),
        torch.tensor(float(current_lr), dtype=torch.float64),
    )
    # The present noise level may itself be "divergent" in the model: then nothing is relative.
    now = torch.where(torch.isfinite(now), now, torch.zeros_like(now))
    noise = (stationary(batch_size, lr) - now) * _relaxed(noise_contraction, steps)
    change = progress + noise
    diverging = torch.full_like(change, float(val_loss))
    stable = stable & torch.isfinite(change)
    return {
        "change": torch.where(stable, change, diverging),
        "progress": torch.where(stable, progress, torch.zeros_like(progress)),
        "noise": torch.where(stable, noise, diverging),
    }


def _relaxed(contraction: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """1 − q^K: the part of a gap that K steps at contraction q close (exact near q = 1)."""
    return -torch.expm1(steps * torch.log(contraction.clamp(1e-300, 1.0 - 1e-15)))


class LossFloorCalibration:
    """Online estimate of the reducible fraction e of the loss, shrunk toward a prior.

    Each finished interval gives e_t, the fraction for which the model's change at the size that
    was played equals the measured change (found by bisection on log e in ``[e_min, 1]``; clipped
    there when no fraction fits). The estimate is a weighted mean in log space,

        log ê = (λ·log e₀ + Σ_t w_t·log e_t) / (λ + Σ_t w_t),   w_t = decay^(age of t),

    so ê = e₀ before any interval and follows the recent intervals as they accumulate.
    """

    def __init__(self, prior: float, strength: float, decay: float, minimum: float):
        self.prior, self.strength, self.decay, self.minimum = prior, strength, decay, minimum
        self._weighted_log = 0.0
        self._weight = 0.0

    def update(self, change_at: Callable[[float], float], measured: float) -> float:
        """Adds one interval: ``change_at(e)`` is the model's change for the played size."""
        low, high = math.log(self.minimum), 0.0
        if not math.isfinite(measured):
            return math.nan
        if change_at(1.0) >= measured:  # even e = 1 predicts too little progress
            fitted = high
        elif change_at(self.minimum) <= measured:  # even the floor predicts too much
            fitted = low
        else:
            for _ in range(30):  # the change falls as e grows: more loss is reducible
                middle = (low + high) / 2
                if change_at(math.exp(middle)) > measured:
                    low = middle
                else:
                    high = middle
            fitted = (low + high) / 2
        self._weighted_log = self.decay * self._weighted_log + fitted
        self._weight = self.decay * self._weight + 1.0
        return math.exp(fitted)

    @property
    def fraction(self) -> float:
        """The current estimate ê."""
        total = self.strength * math.log(self.prior) + self._weighted_log
        return math.exp(total / (self.strength + self._weight))


class ArbiterLAv2(ArbiterLA):
    """arbiter-la v2: heavy-ball model, calibrated progress, trust-region arg-min (our extension).

    See the module docstring. Same interface as :class:`ArbiterLA`; with ``decision="argmin"``
    φ and α exist but are never trained or consulted.

    Args:
        env: A ``BatchSizeEnv``, possibly wrapped; any action encoding.
        config: Hyperparameters; defaults to :class:`ArbiterLAv2Config` ().
        **kwargs: As for :class:`ArbiterLA`.
    """

    config_class = ArbiterLAv2Config
    config: ArbiterLAv2Config

    def __init__(self, env: Any, config: ArbiterLAv2Config | None = None, **kwargs: Any):
        super().__init__(env, config, **kwargs)
        self.measurement_passes: list[int] = []
        self.update_passes: list[int] = []
        self.calibration = self._new_calibration()
        self._pending: tuple[dict[str, float], int, float] | None = None
        self._floor = 0

    def _new_calibration(self) -> LossFloorCalibration:
        c = self.config
        return LossFloorCalibration(
            c.calibration_prior, c.calibration_strength, c.calibration_decay, c.calibration_min
        )

    def on_episode_start(self, observation: np.ndarray) -> None:
        """Forgets the episode's statistics, calibration, guard and pass counts."""
        super().on_episode_start(observation)
        self.measurement_passes, self.update_passes = [], []
        self.calibration = self._new_calibration()
        self._pending = None
        self._floor = self.b_min
        self._last_val_loss = float(observation[OBSERVATION_INDEX["val_loss"]])

    @property
    def ladder(self) -> list[int]:
        """The sizes the arg-min decision considers: b_min·2^k up to b_max, and b_max."""
        sizes, size = [], self.b_min
        while size < self.b_max:
            sizes.append(size)
            size *= 2
        return [*sizes, self.b_max]

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """Measures, calibrates on the interval just finished, then decides."""
        val_loss = float(observation[OBSERVATION_INDEX["val_loss"]])
        current = int(self.batch_env.batch_size)
        blew_up = math.log(max(val_loss, 1e-12) / max(self._last_val_loss, 1e-12))
        if self._pending is not None and math.isfinite(val_loss):
            # What the model said, at the last decision, about the size really played (an
            # observer's or a guard's choice may differ from the model's).
            played = torch.tensor([float(current)], dtype=torch.float64)
            pending = self._pending

            def change_at(fraction: float) -> float:
                with torch.no_grad():
                    return float(self._parts(played, *pending, fraction=fraction)["change"][0])

            self.calibration.update(change_at, val_loss - self._last_val_loss)
        with self._timed("measure"):
            measured = self.measure()
        self._update_model_inputs({"val_loss": val_loss}, measured)
        self._last_val_loss = val_loss
        milestone = next((m for m in self.schedule if m.interval == self._interval), None)
        if self.config.decision == "argmin" and milestone is not None:
            size = min(max(milestone.batch_size, self.b_min), self.b_max)
            self.batch_env.set_learning_rate(self.batch_env.task.optimizer.lr * milestone.lr_factor)
            self._decided(size, "milestone")
        elif self._interval > 0 and not blew_up <= self.config.guard_log_increase:
            self._floor = max(self._floor, min(2 * current, self.b_max))
            size = self._floor
            self._decided(size, "guard")
        elif self.config.decision == "argmin":
            size = self._trust_region_argmin(current)
            self._decided(size, "argmin")
        else:
            size = max(super(ArbiterLA, self).choose_batch_size(observation), self._floor)
        # The model's state at this decision, to score the interval once it has been played.
        self._pending = (
            dict(self._require_model_inputs()),
            current,
            float(self.trainer.current_lr),
        )
        return size

    def predicted_changes(self, sizes: list[int] | torch.Tensor) -> torch.Tensor:
        """The model's ΔL_val for one interval at each of ``sizes`` (after a decision)."""
        return self._parts(torch.as_tensor(sizes, dtype=torch.float64))["change"]

    def measure(self) -> dict[str, float]:
        """L, |G|², tr(Σ) and tr(HΣ) at the current parameters from two training batches (counted).

        Two batches of n give losses and mean gradients g_a, g_b: L is the mean loss,
        ``|G|² = g_a·g_b`` (unbiased), ``tr(Σ) = n/2·‖g_a − g_b‖²`` and, with one
        Hessian-vector product of batch a's loss along d = g_a − g_b,
        ``tr(HΣ) ≈ n/2·dᵀH_a d``. Counted as 4n passes (two gradients, and the product's
        double backward counted as two more).
        """
        trainer = self.trainer
        interval_samples = self._horizon_samples() / self.config.horizon_intervals
        cap = int(self.config.measurement_fraction * interval_samples // 4)
        n = max(2, min(self.config.measurement_batch_size, cap))
        x_train, y_train = trainer.data.x_train, trainer.data.y_train
        index = torch.randint(x_train.shape[0], (2 * n,), generator=self.generator).to(self.device)
        with trainer.evaluation_mode() as model:
            parameters = [p for p in model.parameters() if p.requires_grad]
            loss_a = F.cross_entropy(model(x_train[index[:n]]), y_train[index[:n]])
            g_a = torch.autograd.grad(loss_a, parameters, create_graph=True)
            loss_b = F.cross_entropy(model(x_train[index[n:]]), y_train[index[n:]])
            g_b = torch.autograd.grad(loss_b, parameters)
            d = [(a.detach() - b) for a, b in zip(g_a, g_b, strict=True)]
            directional = _tensor_sum((a * v).sum() for a, v in zip(g_a, d, strict=True))
            hessian_d = torch.autograd.grad(directional, parameters)
        values = torch.stack(
            [
                _tensor_sum((v * v).sum() for v in d),
                _tensor_sum((v * hv).sum() for v, hv in zip(d, hessian_d, strict=True)),
                _tensor_sum((a.detach() * b).sum() for a, b in zip(g_a, g_b, strict=True)),
                (loss_a.detach() + loss_b.detach()) / 2,
            ]
        ).tolist()
        self.measurement_passes.append(4 * n)
        self.update_passes.append(round(interval_samples))
        return {
            "trace_covariance": n / 2 * values[0],
            "trace_hessian_covariance": n / 2 * values[1],
            "grad_sq_norm": values[2],
            "train_loss": values[3],
        }

    def progress_objective(self, s: torch.Tensor) -> torch.Tensor:
        """F(s) = ΔL_val(B(s)) / L_val for the φ/α decision (``decision="alpha"``)."""
        inputs = self._require_model_inputs()
        batch_size = self.b_min + (self.b_max - self.b_min) * torch.sigmoid(s.double())
        change = self._parts(batch_size)["change"]
        return (change / max(inputs["val_loss"], 1e-8)).to(s.dtype)

    @torch.no_grad()
    def model_best_batch_size(self) -> int:
        """The ladder size the calibrated model ranks best now (no trust region)."""
        if self._model_inputs is None:
            return int(self.batch_env.batch_size)
        ladder = self.ladder
        return ladder[int(torch.argmin(self.predicted_changes(ladder)))]

    def interval_diagnostics(self) -> dict[str, Any]:
        """The model's state after the interval, for the env's ``info["arbiter"]``.

        ``model_best_batch_size`` (no trust region), ``reducible_fraction`` (ê),
        ``trace_covariance``, ``grad_sq_norm`` and ``measurement_passes`` of the last decision;
        with ``decision="alpha"`` also the search's diagnostics as :class:`Arbiter` reports them.
        Empty in episodes this agent did not start.
        """
        if self.trainer.model is not self._episode_model:
            return {}
        diagnostics = (
            super(ArbiterLA, self).interval_diagnostics()
            if self.config.decision == "alpha"
            else {"arbiter": {}}
        )
        if self._model_inputs is not None:
            diagnostics["arbiter"].update(
                model_best_batch_size=self.model_best_batch_size(),
                reducible_fraction=self.calibration.fraction,
                trace_covariance=self._model_inputs["trace_covariance"],
                grad_sq_norm=self._model_inputs["grad_sq_norm"],
                measurement_passes=self.measurement_passes[-1],
            )
        return diagnostics

    # --- internals ------------------------------------------------------------------------------

    def warmup(self, batch_size: int) -> int:
        """φ's warm-up, needed only by the φ/α decision."""
        return super().warmup(batch_size) if self.config.decision == "alpha" else 0

    def _on_inner_update(self, info: StepInfo) -> None:
        if self.config.decision == "alpha":
            super()._on_inner_update(info)

    def _update_model_inputs(self, losses: dict[str, float], measured: dict[str, float]) -> None:
        decay = self.config.statistics_decay
        for key, value in measured.items():
            self._averages[key] = decay * self._averages.get(key, 0.0) + value
        self._average_weight = decay * self._average_weight + 1.0
        inputs = {key: total / self._average_weight for key, total in self._averages.items()}
        # L and |G|² must describe the same point: both come from this measurement, not averages.
        inputs["train_loss"] = measured["train_loss"]
        inputs["grad_sq_norm"] = measured["grad_sq_norm"]
        inputs.update(losses)
        # Ratio of averages; negative curvature along the noise gets no weight.
        inputs["noise_curvature"] = max(
            inputs["trace_hessian_covariance"] / max(inputs["trace_covariance"], 1e-30), 0.0
        )
        self._model_inputs = inputs

    def _decided(self, size: int, kind: str) -> None:
        self.decisions.append((self._interval, size, kind))
        self._interval += 1

    def _trust_region_argmin(self, current: int) -> int:
        candidates = sorted({current, *(r for r in self.ladder if current / 2 <= r <= 2 * current)})
        candidates = [b for b in candidates if b >= self._floor] or [self._floor]
        with torch.no_grad():
            changes = self.predicted_changes(candidates).tolist()
        best = min(range(len(candidates)), key=changes.__getitem__)
        if current in candidates:
            keep = changes[candidates.index(current)]
            if changes[best] >= keep - self.config.hysteresis * abs(keep):
                return current
        return candidates[best]

    def _parts(
        self,
        batch_size: torch.Tensor,
        inputs: dict[str, float] | None = None,
        current: int | None = None,
        current_lr: float | None = None,
        fraction: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """The model's parts at ``batch_size``; by default in the present state."""
        trainer = self.trainer
        inputs = self._require_model_inputs() if inputs is None else inputs
        current = int(self.batch_env.batch_size) if current is None else current
        current_lr = float(trainer.current_lr) if current_lr is None else current_lr
        return predicted_validation_change_v2(
            batch_size,
            train_loss=inputs["train_loss"],
            val_loss=inputs["val_loss"],
            grad_sq_norm=inputs["grad_sq_norm"],
            trace_covariance=inputs["trace_covariance"],
            noise_curvature=inputs["noise_curvature"],
            train_size=int(trainer.data.x_train.shape[0]),
            current_batch_size=float(current),
            lr=self._lr_at(batch_size, current, current_lr),
            current_lr=current_lr,
            momentum=self._momentum,
            horizon_samples=self._horizon_samples(),
            reducible_fraction=self.calibration.fraction if fraction is None else fraction,
        )
