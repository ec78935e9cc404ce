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
* **Progress toward a loss floor.** Only a fraction e of the training loss is reducible,
  E = e·L. The gradient that drives it is the measured |G|² less the gradient of the noise
  displacement itself, which at the present noise level N_now is h_n²·Var = 2·h_n·N_now on a
  quadratic (:data:`SIGNAL_FLOOR` keeps a sliver); the curvature that explains E and that signal
  together is h = |G|²_signal/(2E), and K steps remove ``(1 − q^K)·E``. Few steps (large B) make
  progress at the first-order rate η|G|²_signal/(1−μ) per step whatever e is; many steps (small
  B) saturate at E. v1 is e = 1 with no signal correction.
* **Noise, relative to now.** The per-step gradient noise of a batch of B drawn without
  replacement from N examples is ``tr(Σ)/B · (N − B)/(N − 1)``; it lives in directions of
  curvature h_n = tr(HΣ)/tr(Σ). The noise part of the loss relaxes from its present level, the
  stationary level of the size just played, towards that of B, at the contraction q_n of h_n:
  ``κ·(N∞(B) − N∞(B_now))·(1 − q_n^K)``. A larger batch therefore predicts an immediate gain
  (the annealing a falling noise level gives) and a smaller one a cost, both missing from v1.
* **Calibrated online.** e and the noise scale κ are fitted to what the played sizes really did
  to the validation loss (:class:`ResponseCalibration`), with shrinkage toward e = 1, κ = 1.
  They absorb an irreducible loss, how much of the training progress reaches the validation
  loss (no alignment ρ is measured: e is its calibrated stand-in) and where the quadratic's
  noise floor is wrong in scale.
* **Divergence.** Where ηh or ηh_n ≥ 2(1 + μ) the model predicts divergence and the size scores
  ``+L_val`` (the loss doubles): never chosen while a stable size exists.

Statistics: right before each decision the agent draws two training batches of n at the
current parameters, in evaluation mode, with its own generator (inner training is untouched):
see :meth:`ArbiterLAv2.measure`. They are averaged over intervals (bias-corrected, decay
``statistics_decay``), L and |G|² alike, so both describe the same points. n is capped so that the
measurement costs at most ``measurement_fraction`` of the interval's update passes (a pass: one
example through forward and backward; the measurement counts 4n). The counts are kept in
:attr:`ArbiterLAv2.measurement_passes` and :attr:`ArbiterLAv2.update_passes`.

Decisions (``decision``):

* ``"alpha"`` (default): the paper's machinery as in v1 (φ proposes candidates, α mixes them,
  the arg-max of α decides) with this model as the meta-objective.
* ``"argmin"``: the model's best ladder size within a trust region: from the current size B,
  the ladder rungs in [B/2, 2B] and B itself; a move needs the predicted change to beat keeping
  B by ``hysteresis`` × |predicted change at B|. No φ, no meta-steps, no warm-up.

The default is the one that measured better on the dev tasks and seeds (``docs/hyper_learning.md``,
"arbiter-la v2").

A **divergence guard** overrides both: if the validation loss rose by more than
``guard_log_increase`` (log) over the last interval, the next size is double the last one
(capped at b_max), and no size below the one that blew up is chosen again in the episode.

Measured results, the calibration table and the dev log are in ``docs/hyper_learning.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from arbiter_env.agents.arbiter_la import ArbiterLA, ArbiterLAConfig, _dot
from arbiter_env.envs.observation import OBSERVATION_INDEX
from arbiter_env.training.hyper import StepInfo

__all__ = [
    "ArbiterLAv2",
    "ArbiterLAv2Config",
    "ResponseCalibration",
    "heavy_ball_contraction",
    "heavy_ball_stationary_loss",
    "predicted_validation_change_v2",
]

DECISIONS = ("argmin", "alpha")
# The least share of |G|² the model leaves to the signal after removing the noise's own gradient.
SIGNAL_FLOOR = 0.01
# Points of the log grid of reducible fractions the calibration searches.
CALIBRATION_GRID = 25


@dataclass
class ArbiterLAv2Config(ArbiterLAConfig):
    """:class:`ArbiterLAConfig` plus v2's calibration, decision and cost settings.

    Args:
        decision: ``"argmin"`` (the model's best size in a trust region) or ``"alpha"`` (the
            paper's φ/α arg-max on this model).
        hysteresis: A move must beat keeping the size by this fraction of the predicted change
            at the current size.
        calibration_strength: Weight λ of the priors e₀ = 1 and κ₀ = 1, in intervals' worth of
            evidence.
        calibration_decay: Forgetting of older intervals in the fit (per interval).
        calibration_min: The smallest reducible fraction e considered.
        noise_scale_range: The range of the noise scale κ.
        measurement_fraction: Cap of the measurement's passes as a fraction of the interval's
            update passes.
        guard_log_increase: The divergence guard's trigger: log(L_val now / L_val before).
    """

    decision: str = "alpha"
    hysteresis: float = 0.05
    calibration_strength: float = 1.0
    calibration_decay: float = 0.7
    calibration_min: float = 1e-3
    noise_scale_range: tuple[float, float] = (0.05, 2.0)
    measurement_fraction: float = 0.25
    guard_log_increase: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decision not in DECISIONS:
            raise ValueError(
                f"ArbiterLAv2Config.decision must be one of {DECISIONS}, got {self.decision!r}."
            )
        if not 0 < self.calibration_min < 1:
            raise ValueError(
                f"ArbiterLAv2Config.calibration_min must be in (0, 1), got {self.calibration_min!r}."
            )
        low, high = self.noise_scale_range
        if not 0 < low <= 1 <= high:
            raise ValueError(
                "ArbiterLAv2Config.noise_scale_range must satisfy 0 < low ≤ 1 ≤ high, "
                f"got {self.noise_scale_range!r}."
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
    value = _stationary_loss(lr, curvature, momentum, noise_variance)
    return torch.where(margin > 0, value, torch.full_like(value, math.inf))


def _stationary_loss(
    lr: torch.Tensor,
    curvature: torch.Tensor | float,
    momentum: float,
    noise_variance: torch.Tensor | float,
) -> torch.Tensor:
    """:func:`heavy_ball_stationary_loss` kept finite past the edge of stability.

    The model replaces unstable sizes by a constant afterwards; an ``inf`` here would still
    turn the gradient through ``torch.where`` into NaN (0·inf) in the φ/α decision.
    """
    margin = (2.0 * (1.0 + momentum) - lr * curvature).clamp_min(1e-12)
    return lr * (1.0 + momentum) * noise_variance / (2.0 * (1.0 - momentum) * margin)


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
    noise_scale: float = 1.0,
) -> dict[str, torch.Tensor]:
    """v2's ΔL_val over ``horizon_samples`` at each ``batch_size`` (see the module docstring).

    Returns:
        ``{"change", "progress", "noise"}``: the prediction and its two parts, with
        E = ``reducible_fraction``·L.
    """
    batch_size = torch.as_tensor(batch_size, dtype=torch.float64)

    def stationary(size: torch.Tensor, step_lr: torch.Tensor) -> torch.Tensor:
        # Variance of a mean of `size` examples drawn without replacement from `train_size`.
        replacement = ((train_size - size) / max(train_size - 1, 1)).clamp_min(0.0)
        variance = max(float(trace_covariance), 0.0) / size * replacement
        return _stationary_loss(step_lr, noise_curvature, momentum, variance)

    now = float(
        stationary(
            torch.tensor(float(current_batch_size), dtype=torch.float64),
            torch.tensor(float(current_lr), dtype=torch.float64),
        )
    )
    # The present size may itself be unstable in the model: then nothing is relative to it.
    if float(current_lr) * noise_curvature >= 2.0 * (1.0 + momentum) or not math.isfinite(now):
        now = 0.0
    # The noise displacement's own gradient, h_n²·Var = 2·h_n·N∞, is part of the measured |G|²
    # but no progress is available along it: only the rest drives the loss down.
    signal = max(float(grad_sq_norm) - 2.0 * noise_curvature * now, SIGNAL_FLOOR * grad_sq_norm)
    loss = max(float(train_loss), 1e-8) * reducible_fraction
    curvature = max(signal, 0.0) / (2.0 * loss)
    steps = horizon_samples / batch_size
    contraction = heavy_ball_contraction(lr * curvature, momentum)
    noise_contraction = heavy_ball_contraction(lr * noise_curvature, momentum)
    stable = (contraction < 1.0) & (noise_contraction < 1.0)
    progress = _relaxed(contraction, steps) * -loss
    noise = noise_scale * (stationary(batch_size, lr) - now) * _relaxed(noise_contraction, steps)
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


class ResponseCalibration:
    """Online fit of the reducible fraction e and the noise scale κ to the measured responses.

    Every finished interval t gives the measured change m_t of the validation loss (from level
    L_t) at the size that was played, and the model's parts for that size at the last decision:
    the progress P_t(e) for each e of a log grid on ``[e_min, 1]`` and the noise part N_t.
    Normalised by L_t (r_t(e) = (m_t − P_t(e))/L_t, n_t = N_t/L_t), with weights
    w_t = decay^(age of t), the fit is

        κ(e) = (λ_κ·Q + Σ w n r(e)) / (λ_κ·Q + Σ w n²)            clipped to [κ_min, κ_max]
        ê = argmin_e Σ w (r(e) − κ(e)·n)² + λ_κ·Q·(κ(e) − 1)² + λ_e·R·log10(e)²

    where Q and R are the weighted means of n² and r(1)² (so that each prior counts as λ
    intervals' worth of evidence), e₀ = 1 and κ₀ = 1 (the quadratic model as it stands). Before
    any interval ê = 1 and κ̂ = 1. κ is identified only where the played size changed (the noise
    part is relative to the present level); otherwise it stays near its prior.
    """

    def __init__(
        self, grid: np.ndarray, *, strength: float, decay: float, noise_range: tuple[float, float]
    ):
        self.grid = grid
        self.strength, self.decay, self.noise_range = strength, decay, noise_range
        self._rows: list[tuple[np.ndarray, float, float]] = []  # (r over the grid, n, weight)
        self.fraction, self.noise_scale = 1.0, 1.0

    def update(self, progress: np.ndarray, noise: float, measured: float, val_loss: float) -> None:
        """Adds one interval: progress on the grid, noise part, measured change, level before."""
        scale = max(val_loss, 1e-8)
        residual = (measured - progress) / scale
        if not (np.all(np.isfinite(residual)) and math.isfinite(noise)):
            return
        self._rows = [(r, n, w * self.decay) for r, n, w in self._rows]
        self._rows.append((residual, noise / scale, 1.0))
        r = np.stack([row[0] for row in self._rows])  # (intervals, grid)
        n = np.array([row[1] for row in self._rows])
        w = np.array([row[2] for row in self._rows])
        q = max(float(np.average(n * n, weights=w)), 1e-12)
        big_r = max(float(np.average(r[:, -1] ** 2, weights=w)), 1e-12)
        lam = self.strength
        nu = (lam * q + (w * n) @ r) / (lam * q + float(w @ (n * n)))
        nu = np.clip(nu, *self.noise_range)
        fit = w @ (r - np.outer(n, nu)) ** 2
        objective = fit + lam * q * (nu - 1.0) ** 2 + lam * big_r * np.log10(self.grid) ** 2
        best = int(np.argmin(objective))
        self.fraction, self.noise_scale = float(self.grid[best]), float(nu[best])


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

    def _new_calibration(self) -> ResponseCalibration:
        c = self.config
        return ResponseCalibration(
            np.geomspace(c.calibration_min, 1.0, CALIBRATION_GRID),
            strength=c.calibration_strength,
            decay=c.calibration_decay,
            noise_range=c.noise_scale_range,
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
            with torch.no_grad():
                parts = [
                    self._parts(played, *self._pending, fraction=float(e), noise_scale=1.0)
                    for e in self.calibration.grid
                ]
            self.calibration.update(
                np.array([float(part["progress"][0]) for part in parts]),
                float(parts[0]["noise"][0]),
                val_loss - self._last_val_loss,
                self._last_val_loss,
            )
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
            hessian_d = torch.autograd.grad(_dot(g_a, d), parameters)
        values = torch.stack(
            [
                _dot(d, d),
                _dot(d, hessian_d),
                _dot([a.detach() for a in g_a], g_b),
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
                noise_scale=self.calibration.noise_scale,
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
        self._model_inputs = self._averaged(losses, measured)  # v2 measures no alignment ρ

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

    def _predict(self, batch_size: torch.Tensor, inputs: dict[str, float]) -> torch.Tensor:
        return self._parts(batch_size, inputs)["change"]

    def _parts(
        self,
        batch_size: torch.Tensor,
        inputs: dict[str, float] | None = None,
        current: int | None = None,
        current_lr: float | None = None,
        fraction: float | None = None,
        noise_scale: float | None = None,
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
            noise_scale=self.calibration.noise_scale if noise_scale is None else noise_scale,
        )
