"""Arbiter: gradient-based hyper-learning of the batch size (MacLellan & Dong, arXiv:2205.08231).

Arbiter chooses the batch size of the next scheduling interval *by gradient descent*, without
reinforcement learning, without unrolling the inner optimisation and without a hypernetwork:

1. An **agent network** φ reads a minibatch of validation inputs and emits N numbers per example.
   Their mean over the minibatch, sorted, gives N ordered candidate batch sizes in *logit space*,
   ``l_1 <= ... <= l_N``.
2. **Mixing weights** α (N numbers, reset to zero) give ``w = softmax(α)`` and the representative
   logit ``s = Σ w_i l_i``. The *stretched logit* maps logits to batch sizes in
   ``[b_min, b_max]``: ``B = floor((b_max - b_min)·sigmoid(s) + b_min)``.
3. A bias-free **linear map** R → R^F turns ``s`` into a vector ``h`` of the inner network's
   feature width F. On B fresh validation examples, the inner network's penultimate features
   ``x`` are replaced by ``x + stopgrad(x) ⊙ h`` before its final ``Linear`` layer; the validation
   loss of that output is the **meta-objective**. Its gradient reaches φ, α and the map (never
   the inner weights), and one Adam step on them follows every inner update.
4. At the end of each scheduling interval the candidate with the largest α becomes the next batch
   size, and α is reset to start a new search.
5. Before the first interval (and at each milestone of a fixed schedule) φ is **warmed up** with a
   Huber loss on ``s`` until the decoded size is within ``warmup_tolerance`` of the size training
   starts with, so the search starts where training starts.

:class:`Arbiter` is a controller of :class:`arbiter_env.env.BatchSizeEnv` (SB3-style ``predict`` and
``learn``). It needs the trainer's white-box *hyper-learning interface* (``inject_before_head``,
``sample_validation``, ``add_step_hook``); it ignores the observation.

Choices where the paper is open are marked ``Choice:`` in the comments and listed in
``docs/hyper_learning.md``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from arbiter_env.config import from_dict, to_dict
from arbiter_env.controllers import BatchSizeController
from arbiter_env.trainer import InnerTrainer, StepInfo

__all__ = [
    "Arbiter",
    "ArbiterConfig",
    "Milestone",
    "WarmupError",
    "batch_size_to_logit",
    "build_phi",
    "logit_to_batch_size",
]

_CHECKPOINT_VERSION = 1


# --- configuration ------------------------------------------------------------------------------


@dataclass
class ArbiterConfig:
    """Arbiter's hyperparameters.

    The defaults are for *short* tasks (about a thousand inner updates per episode, such as
    ``digits-mlp``); :meth:`paper` returns the paper's reference values, which were set for CIFAR
    runs of 100+ epochs (tens of thousands of inner updates) and barely move φ and α on short
    tasks. How the short-task defaults were chosen: on ``digits-mlp`` (10 epochs, one meta-step
    per inner update) φ at 1e-3 and α at 1e-2 gave schedules that moved clearly while staying
    finite, and the warm-up converged in tens to a few hundred iterations (see
    ``docs/hyper_learning.md`` for the measurements).

    Args:
        num_candidates: N, the number of candidate batch sizes φ proposes (paper: 4).
        phi_lr: Adam learning rate of φ (paper: 1e-5 to 1e-6; short-task default 1e-3).
        alpha_lr: Adam learning rate of α (paper: 1e-4 to 1e-6; short-task default 1e-2).
        map_lr: Adam learning rate of the linear response map (the paper trains it with φ; we
            give it φ's rate by default).
        weight_decay: Adam weight decay (L2) on φ, α and the map (paper: 5e-4).
        meta_period: Take a meta-step after every ``meta_period``-th inner update (paper: 1).
            4 costs about half as much on small networks. Over 10 seeds it gives the same
            results on ``digits-mlp`` but much worse ones on ``mnist1d-cnn``, whose sizes then
            stay larger (``docs/hyper_learning.md``).
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

    def __post_init__(self) -> None:
        positive_ints = ("num_candidates", "meta_period", "phi_batch_size", "phi_hidden")
        for name in (*positive_ints, "warmup_max_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ArbiterConfig.{name} must be a positive integer, got {value!r}.")
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


class WarmupError(RuntimeError):
    """The warm-up did not bring φ's decoded batch size to the target within its iteration cap."""


# --- stretched logit ----------------------------------------------------------------------------


def logit_to_batch_size(s: float, b_min: int, b_max: int) -> int:
    """The paper's map from logit space to a batch size: ``floor((b_max - b_min)·σ(s) + b_min)``.

    Computed in float64 and clipped to ``[b_min, b_max]``. ``s = +inf`` gives ``b_max`` (in
    exact arithmetic that is the only logit that does) and ``-inf`` gives ``b_min``.
    """
    s = float(s)
    if math.isnan(s):
        raise ValueError(
            "Arbiter's logit s is NaN: the meta-optimisation diverged. Lower phi_lr / alpha_lr or "
            "raise weight_decay."
        )
    sigmoid = 1.0 / (1.0 + math.exp(-s)) if s >= 0 else math.exp(s) / (1.0 + math.exp(s))
    size = math.floor((b_max - b_min) * sigmoid + b_min)
    return int(min(max(size, b_min), b_max))


def batch_size_to_logit(batch_size: int, b_min: int, b_max: int) -> float:
    """The logit that :func:`logit_to_batch_size` maps back to ``batch_size``.

    Choice: the paper gives only the forward map. Because of the floor, each size B < b_max owns
    the interval of fractions ``[(B - b_min), (B - b_min + 1)) / (b_max - b_min)``; we return the
    logit of its centre, so that small numerical errors cannot move the round trip to a
    neighbour. ``b_max`` is reached only at σ(s) = 1 and maps to ``+inf``. When
    ``b_min == b_max`` every logit decodes to that size and 0 is returned.
    """
    if not b_min <= batch_size <= b_max:
        raise ValueError(f"batch_size {batch_size} is outside [b_min, b_max] = [{b_min}, {b_max}].")
    span = b_max - b_min
    if span == 0:
        return 0.0
    if batch_size == b_max:
        return math.inf
    fraction = (batch_size - b_min + 0.5) / span
    return math.log(fraction) - math.log1p(-fraction)


# --- the agent network φ ------------------------------------------------------------------------


def build_phi(input_shape: Sequence[int], num_candidates: int, hidden: int = 64) -> nn.Module:
    """φ: an encoder fitted to the input shape, mapping ``(n, *input_shape)`` to ``(n, N)``.

    * flat inputs ``(d,)``: an MLP ``d → hidden → hidden → N`` with ReLU;
    * 1-D signals ``(C, L)``: two strided ``Conv1d`` layers, global average pooling, a Linear;
    * images ``(C, H, W)``: the same with ``Conv2d``.

    Choice: the paper's φ is a 4-layer conv net for CIFAR images; ours is smaller because it runs
    after every inner update of much smaller inner networks, and picks its kind from the data.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 1:
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(shape[0], hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_candidates),
        )
    if len(shape) in (2, 3):
        conv = nn.Conv1d if len(shape) == 2 else nn.Conv2d
        pool = nn.AdaptiveAvgPool1d(1) if len(shape) == 2 else nn.AdaptiveAvgPool2d(1)
        width = max(hidden // 2, 1)
        return nn.Sequential(
            conv(shape[0], width, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            conv(width, hidden, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            pool,
            nn.Flatten(),
            nn.Linear(hidden, num_candidates),
        )
    raise ValueError(
        f"Arbiter's φ supports inputs of shape (d,), (C, L) or (C, H, W); got {shape}. Reshape the "
        "task's data or pass a custom φ with Arbiter(env, phi=...)."
    )


# --- the controller -----------------------------------------------------------------------------


class Arbiter(BatchSizeController):
    """The Arbiter batch-size agent as a controller of ``BatchSizeEnv``.

    Arbiter learns *online, within the episode*: after every ``meta_period``-th inner update it
    takes one Adam step on (φ, α, map) through a step hook on the env's trainer, and at the end of
    each interval (each ``predict`` call) it turns α into the next batch size. ``deterministic``
    is accepted for interface compatibility and ignored: the decision is always the arg-max of α.
    φ and the map are kept across episodes (each episode starts with a fresh warm-up and α = 0),
    so :meth:`learn` can also train them over several episodes.

    Args:
        env: A ``BatchSizeEnv``, possibly wrapped; any action encoding (decisions go through
            ``env.encode``).
        config: Hyperparameters; defaults to :class:`ArbiterConfig` ().
        schedule: Optional fixed step schedule to adjust around (the paper's second use). At each
            milestone the schedule's batch size (and learning-rate factor) is applied and φ is
            warmed up to it afresh; in between Arbiter decides as usual.
        phi: A custom agent network mapping validation inputs ``(n, *shape)`` to ``(n, N)``;
            built with :func:`build_phi` by default.
        **overrides: Individual :class:`ArbiterConfig` fields, e.g. ``Arbiter(env, phi_lr=1e-4)``.

    Attributes:
        decisions: ``(interval, batch_size, kind)`` of the current episode, ``kind`` being
            ``"start"``, ``"milestone"`` or ``"arbiter"``.
        warmup_iterations: Iterations each warm-up of the current episode took.
        profile: Set to ``True`` to accumulate wall time per part of the meta-step in
            :attr:`timings` (seconds; costs a little time itself).
    """

    def __init__(
        self,
        env: gym.Env,
        config: ArbiterConfig | None = None,
        *,
        schedule: Sequence[Milestone | dict[str, Any]] | None = None,
        phi: nn.Module | None = None,
        **overrides: Any,
    ):
        super().__init__(env)
        if self.batch_env.family is not None:
            # The response map is sized to one network's feature width and the step hook sits on
            # one trainer; a family swaps both between episodes.
            raise ValueError(
                f"Arbiter runs on single tasks, not on the task family "
                f"{self.batch_env.family.name!r}: its instances differ in feature width. Build "
                "one environment per instance (BatchSizeEnv(family.make_task(instance)))."
            )
        config = config or ArbiterConfig()
        if overrides:
            config = from_dict(ArbiterConfig, {**to_dict(config), **overrides})
        self.config = config
        self.schedule = _parse_schedule(schedule)
        task = self.batch_env.task
        self.b_min, self.b_max = int(task.batch_min), int(task.batch_max)
        trainer = self.trainer
        self.device = trainer.device
        self.generator = torch.Generator().manual_seed(config.seed)
        init_seed = int(torch.randint(2**62, (), generator=self.generator))
        # nn.Module initialisers only use the global generator: fork it, seed it from the agent's
        # seed, and leave the caller's global RNG state exactly as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.phi = phi or build_phi(
                trainer.data.input_shape, config.num_candidates, config.phi_hidden
            )
            self.response_map = nn.Linear(1, _feature_width(trainer), bias=False)
            nn.init.uniform_(
                self.response_map.weight, -config.map_init_scale, config.map_init_scale
            )
        self.phi.to(self.device)
        self.response_map.to(self.device)
        self.alpha = nn.Parameter(torch.zeros(config.num_candidates, device=self.device))
        self.optimizer = torch.optim.Adam(
            [
                {"params": list(self.phi.parameters()), "lr": config.phi_lr},
                {"params": [self.alpha], "lr": config.alpha_lr},
                {"params": list(self.response_map.parameters()), "lr": config.map_lr},
            ],
            weight_decay=config.weight_decay,
            # fused: one kernel per parameter group instead of a Python loop per tensor (or a
            # dozen foreach calls); on small networks the optimizer step is otherwise the largest
            # part of the meta-step (measured: fused 0.5 ms, for-loop 0.8-1.2 ms, foreach 2 ms).
            fused=_fused_adam_supported(self.device),
        )
        self.meta_params = [*self.phi.parameters(), self.alpha, *self.response_map.parameters()]
        self.profile = False
        self.timings: defaultdict[str, float] = defaultdict(float)
        self.meta_steps = 0
        self.decisions: list[tuple[int, int, str]] = []
        self.warmup_iterations: list[int] = []
        self.last_meta_loss = torch.tensor(math.nan)
        self._interval = 0
        self._episode_model: nn.Module | None = None
        # The last s on the host, for the next response batch's size (see meta_step).
        on_cuda = self.device.type == "cuda"
        self._last_logit = torch.zeros((), pin_memory=on_cuda)
        self._logit_ready = torch.cuda.Event() if on_cuda else None
        self._hook = trainer.add_step_hook(self._on_inner_update)

    # --- properties -----------------------------------------------------------------------------

    @property
    def trainer(self) -> InnerTrainer:
        return self.batch_env.trainer

    # --- controller interface -------------------------------------------------------------------

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[Any, Any]:
        # A reset that happened without episode_start (a caller that does not pass it) is still
        # detected: the trainer builds a new model object at every reset.
        if self.trainer.model is not self._episode_model:
            episode_start = True
        return super().predict(observation, state, episode_start, deterministic)

    def on_episode_start(self, observation: np.ndarray) -> None:
        """Starts a new search: α = 0 and φ warmed up to the size training starts with."""
        self._episode_model = self.trainer.model
        self._interval = 0
        self.decisions = []
        self.warmup_iterations = []
        self._reset_alpha()

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """The batch size of the next interval (called once per env step)."""
        interval = self._interval
        self._interval += 1
        milestone = next((m for m in self.schedule if m.interval == interval), None)
        if milestone is not None:
            size = min(max(milestone.batch_size, self.b_min), self.b_max)
            self.batch_env.set_learning_rate(self.batch_env.task.optimizer.lr * milestone.lr_factor)
            self.warmup(size)
            self._reset_alpha()
            self.decisions.append((interval, size, "milestone"))
            return size
        if interval == 0:
            size = int(self.batch_env.batch_size)
            self.warmup(size)
            self.decisions.append((interval, size, "start"))
            return size
        size = self.decide()
        self.decisions.append((interval, size, "arbiter"))
        return size

    def learn(self, total_timesteps: int = 0, **kwargs: Any) -> Arbiter:
        """Runs episodes in the env until ``total_timesteps`` env steps have been taken.

        Arbiter learns online within each episode anyway; this keeps φ and the map (and the
        optimizer state) across episodes, so later episodes start from a φ that has already been
        meta-trained (the warm-up re-centres it on the starting size). Episode seeds are drawn
        from the agent's generator.
        """
        from arbiter_env.controllers import run_episode  # local: avoid an import cycle

        steps = 0
        while steps < total_timesteps:
            seed = int(torch.randint(2**31 - 1, (), generator=self.generator))
            record = run_episode(self.env, self, seed)
            steps += len(record.batch_sizes)
        return self

    def close(self) -> None:
        """Detaches the step hook from the env's trainer (the agent stops meta-learning)."""
        self._hook.remove()

    # --- the hyper-learning pieces --------------------------------------------------------------

    def candidates(self, inputs: torch.Tensor) -> torch.Tensor:
        """Sorted candidate logits ``l_1 <= ... <= l_N``: φ's outputs averaged over ``inputs``."""
        return torch.sort(self.phi(inputs).mean(dim=0)).values

    def mixed_logit(self, candidates: torch.Tensor) -> torch.Tensor:
        """The representative logit ``s = Σ softmax(α)_i l_i`` (a 0-d tensor)."""
        return (torch.softmax(self.alpha, dim=0) * candidates).sum()

    def response_loss(
        self, s: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """The meta-objective F(s): validation loss with the response injected before the head.

        The head's input features ``x`` become ``x + stopgrad(x) ⊙ h`` with ``h = map(s)``. The
        inner network runs in evaluation mode, so the meta-step changes no batch-norm statistics
        and draws no dropout randomness: inner training is the same with or without Arbiter.
        """
        h = self.response_map(s.reshape(1, 1).to(self.response_map.weight.dtype))
        # The meta-step never differentiates with respect to the inner weights, so x + x ⊙ h
        # with x computed without autograd has the value and the (φ, α, map) gradient of
        # x + stopgrad(x) ⊙ h, and only the head's part of the forward records a graph.
        with self.trainer.evaluation_mode(), torch.no_grad():
            features = self.trainer.penultimate_features(inputs)
        return F.cross_entropy(self.trainer.head(features + features * h), targets)

    def meta_step(self) -> torch.Tensor:
        """One Adam step on (φ, α, map) against the meta-objective; returns F (detached).

        Uses :func:`torch.autograd.grad` with respect to the meta-parameters only, so no
        gradient is computed for, or left in ``.grad`` of, the inner network's weights.
        """
        trainer, config = self.trainer, self.config
        with self._timed("phi_forward"):
            # Choice: the response batch's size B is decoded from the previous meta-step's s
            # (read without waiting for the device), so that a GPU never idles while the host
            # reads s back after each inner update. s moves by a small fraction of a logit
            # per meta-step, so B differs from the current one by a few examples at most.
            size = self._response_size()
            inputs, targets = trainer.sample_validation(
                config.phi_batch_size + size, generator=self.generator
            )
            s = self.mixed_logit(self.candidates(inputs[: config.phi_batch_size]))
            self._remember_logit(s)
        with self._timed("response_forward"):
            loss = self.response_loss(
                s, inputs[config.phi_batch_size :], targets[config.phi_batch_size :]
            )
        with self._timed("meta_backward"):
            grads = torch.autograd.grad(loss, self.meta_params)
        with self._timed("adam_step"):
            for parameter, grad in zip(self.meta_params, grads, strict=True):
                parameter.grad = grad
            self.optimizer.step()
            for parameter in self.meta_params:
                parameter.grad = None
        self.meta_steps += 1
        self.last_meta_loss = loss.detach()
        return self.last_meta_loss

    @torch.no_grad()
    def decide(self) -> int:
        """The candidate with the largest α as a batch size; resets α for the next search."""
        with self._timed("decision"):
            inputs, _ = self.trainer.sample_validation(
                self.config.phi_batch_size, generator=self.generator
            )
            candidates = self.candidates(inputs)
            best = int(torch.argmax(self.alpha))
            size = logit_to_batch_size(candidates[best].item(), self.b_min, self.b_max)
            self._reset_alpha()
            self._remember_logit(self.mixed_logit(candidates))
        return size

    def warmup(self, batch_size: int) -> int:
        """Fits φ (Huber loss on s) until the decoded size is within tolerance of ``batch_size``.

        Returns the number of iterations. A fresh Adam optimizer on φ with ``warmup_lr`` is used,
        so the meta-optimizer's moments are not disturbed. Choice: the target is the centre of the
        logit interval that decodes to ``batch_size`` (``b_max - 1`` stands in for ``b_max``,
        whose logit is infinite; that is within any tolerance >= 1).

        Raises:
            WarmupError: if it has not converged after ``warmup_max_iters`` iterations.
        """
        config = self.config
        target_size = min(batch_size, self.b_max - 1) if self.b_max > self.b_min else batch_size
        target = torch.tensor(
            batch_size_to_logit(target_size, self.b_min, self.b_max), device=self.device
        )
        optimizer = torch.optim.Adam(
            self.phi.parameters(), lr=config.warmup_lr, fused=_fused_adam_supported(self.device)
        )
        decoded = -1
        with self._timed("warmup"):
            for iteration in range(config.warmup_max_iters + 1):
                inputs, _ = self.trainer.sample_validation(
                    config.phi_batch_size, generator=self.generator
                )
                s = self.mixed_logit(self.candidates(inputs))
                decoded = logit_to_batch_size(s.item(), self.b_min, self.b_max)
                if abs(decoded - batch_size) <= config.warmup_tolerance:
                    self._remember_logit(s)
                    self.warmup_iterations.append(iteration)
                    return iteration
                if iteration == config.warmup_max_iters:
                    break
                loss = F.huber_loss(s, target.to(s.dtype), delta=config.huber_delta)
                grads = torch.autograd.grad(loss, list(self.phi.parameters()))
                for parameter, grad in zip(self.phi.parameters(), grads, strict=True):
                    parameter.grad = grad
                optimizer.step()
                for parameter in self.phi.parameters():
                    parameter.grad = None
        raise WarmupError(
            f"Arbiter's warm-up did not reach batch size {batch_size} (±{config.warmup_tolerance}) "
            f"in {config.warmup_max_iters} iterations; the last decoded size was {decoded}. Raise "
            "warmup_max_iters or warmup_lr, or widen warmup_tolerance."
        )

    # --- persistence ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """φ, α, map, optimizer and generator state, with the config and schedule."""
        return {
            "version": _CHECKPOINT_VERSION,
            "config": to_dict(self.config),
            "schedule": [dataclasses.asdict(m) for m in self.schedule],
            "phi": self.phi.state_dict(),
            "response_map": self.response_map.state_dict(),
            "alpha": self.alpha.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "meta_steps": self.meta_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`state_dict` saved (φ must have the same architecture)."""
        if state.get("version") != _CHECKPOINT_VERSION:
            raise ValueError(
                f"Unsupported Arbiter checkpoint version {state.get('version')!r}; this code "
                f"reads version {_CHECKPOINT_VERSION}."
            )
        self.phi.load_state_dict(state["phi"])
        self.response_map.load_state_dict(state["response_map"])
        with torch.no_grad():
            self.alpha.copy_(state["alpha"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.meta_steps = int(state["meta_steps"])

    def save(self, path: str | Path) -> None:
        """Writes :meth:`state_dict` to ``path`` (a ``torch.save`` file).

        Save between episodes: the next episode of the loaded agent then makes exactly the
        decisions the saved agent would have made.
        """
        torch.save(self.state_dict(), Path(path))

    @classmethod
    def load(cls, path: str | Path, env: gym.Env, **kwargs: Any) -> Arbiter:
        """Builds an Arbiter for ``env`` from a file written by :meth:`save`."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        config = from_dict(ArbiterConfig, state["config"])
        agent = cls(env, config, schedule=kwargs.pop("schedule", state["schedule"]), **kwargs)
        agent.load_state_dict(state)
        return agent

    # --- internals ------------------------------------------------------------------------------

    def _on_inner_update(self, info: StepInfo) -> None:
        # Only meta-learn in episodes this agent has started (the env may be shared with
        # another controller after this one).
        if info.trainer.model is not self._episode_model:
            return
        if info.update % self.config.meta_period == 0:
            self.meta_step()

    def _remember_logit(self, s: torch.Tensor) -> None:
        self._last_logit.copy_(s.detach(), non_blocking=True)
        if self._logit_ready is not None:
            self._logit_ready.record()

    def _response_size(self) -> int:
        """B for the meta-objective, from the s of the previous meta-step (or of the warm-up)."""
        if self._logit_ready is not None:
            self._logit_ready.synchronize()  # the copy is long done unless the host ran ahead
        size = logit_to_batch_size(float(self._last_logit), self.b_min, self.b_max)
        if self.config.response_batch_cap is not None:
            size = min(size, self.config.response_batch_cap)
        return size

    def _reset_alpha(self) -> None:
        # Choice: a new search also forgets α's Adam moments, so the previous interval's
        # momentum cannot decide the next one.
        with torch.no_grad():
            self.alpha.zero_()
        self.optimizer.state.pop(self.alpha, None)

    @contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        if not self.profile:
            yield
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.timings[name] += time.perf_counter() - started


def _fused_adam_supported(device: torch.device) -> bool | None:
    # Fused Adam exists for CPU and CUDA in the torch versions we support; other devices fall
    # back to torch's default implementation.
    return True if device.type in ("cpu", "cuda") else None


def _feature_width(trainer: InnerTrainer) -> int:
    """Width F of the inner network's penultimate features, also before the first reset."""
    if trainer.model is not None:
        return trainer.feature_width
    # Before the first reset the trainer has no network yet: build a throwaway one (under the
    # caller's forked global RNG, see __init__) just to read its output layer's input width.
    model = trainer.task.model(trainer.data.input_shape, trainer.data.num_classes)
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(
            f"Task {trainer.task.name!r}: the model has no nn.Linear output layer, which Arbiter's "
            "response injection needs."
        )
    return int(linears[-1].in_features)


def _parse_schedule(schedule: Sequence[Milestone | dict[str, Any]] | None) -> list[Milestone]:
    milestones = [m if isinstance(m, Milestone) else Milestone(**m) for m in schedule or []]
    intervals = [m.interval for m in milestones]
    if len(set(intervals)) != len(intervals):
        raise ValueError(f"The schedule has two milestones at the same interval: {intervals}.")
    return sorted(milestones, key=lambda m: m.interval)
