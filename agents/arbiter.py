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

:class:`Arbiter` is a controller of :class:`arbiter_env.envs.batch_size.BatchSizeEnv` (SB3-style ``predict`` and
``learn``). It needs the trainer's white-box *hyper-learning interface* (``penultimate_features``,
``head``, ``sample_validation``, ``add_step_hook``) and reports each interval's search through
the env's ``add_info_source``; it ignores the observation.

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
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from arbiter_env.agents.arbiter_config import ArbiterConfig, Milestone, parse_schedule
from arbiter_env.agents.arbiter_diagnostics import SearchDiagnostics, mode_notes
from arbiter_env.agents.arbiter_network import (
    batch_size_to_logit,
    build_phi,
    logit_to_batch_size,
)
from arbiter_env.agents.tensor_files import first_line, read_tensor_file
from arbiter_env.config import from_dict, to_dict
from arbiter_env.controllers import BatchSizeController, run_episode
from arbiter_env.training.hyper import StepInfo
from arbiter_env.training.trainer import InnerTrainer

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
_STATE_KEYS = ("version", "config", "schedule", "phi", "alpha", "optimizer", "generator")


class WarmupError(RuntimeError):
    """The warm-up did not bring φ's decoded batch size to the target within its iteration cap."""


def _fused_adam(device: torch.device) -> bool | None:
    """``fused=True`` where torch has a fused Adam (CPU, CUDA), else torch's default."""
    return True if device.type in ("cpu", "cuda") else None


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

    config_class: type[ArbiterConfig] = ArbiterConfig
    loaded_from: str | None = None  # the checkpoint it was loaded from (load)
    learned_timesteps = 0  # env steps learned over before the episodes it plays (learn)

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
        config = config or self.config_class()
        if overrides:
            config = from_dict(self.config_class, {**to_dict(config), **overrides})
        self.config = config
        self.schedule = parse_schedule(schedule)
        task = self.batch_env.task
        self.b_min, self.b_max = int(task.batch_min), int(task.batch_max)
        trainer = self.trainer
        self.device = trainer.device
        self.generator = torch.Generator().manual_seed(config.seed)
        init_seed = int(torch.randint(2**62, (), generator=self.generator))
        # Read outside the seeded block below: before the first reset it builds a throwaway
        # network, whose initialisation must not use up the random numbers φ and the map start
        # from (else one seed gives different agents on a fresh and on an already reset env).
        response_width = self._response_width()
        # nn.Module initialisers only use the global generator: fork it, seed it from the agent's
        # seed, and leave the caller's global RNG state exactly as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.phi = phi or build_phi(
                trainer.data.input_shape, config.num_candidates, config.phi_hidden
            )
            self.response_map = self._build_response_map(response_width)
        self.phi.to(self.device)
        self.alpha = nn.Parameter(torch.zeros(config.num_candidates, device=self.device))
        self.optimizer, self.meta_params = self._meta_optimizer()
        self.profile = False
        self.timings: defaultdict[str, float] = defaultdict(float)
        self.meta_steps = 0
        self.decisions: list[tuple[int, int, str]] = []
        self.warmup_iterations: list[int] = []
        self.last_meta_loss = torch.tensor(math.nan)
        self._interval = 0
        self._episode_model: nn.Module | None = None
        # The interval's search; its last s also sizes the next response batch (see meta_step).
        self._search = SearchDiagnostics(
            self.device, config.num_candidates, (self.b_min, self.b_max)
        )
        self._hook = trainer.add_step_hook(self._on_inner_update)
        self._info_handle = self.batch_env.add_info_source(self.interval_diagnostics)

    @property
    def trainer(self) -> InnerTrainer:
        """The env's inner trainer (its hyper-learning interface)."""
        return self.batch_env.trainer

    # --- controller interface -------------------------------------------------------------------

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[Any, Any]:
        """The size of :meth:`choose_batch_size` as an action; a new episode starts a search."""
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
        size, kind = self.decide()
        self.decisions.append((interval, size, kind))
        return size

    def learn(
        self, total_timesteps: int = 0, *, work_dir: str | Path | None = None, **kwargs: Any
    ) -> Arbiter:
        """Runs episodes in the env until ``total_timesteps`` env steps have been taken.

        Arbiter learns online within each episode anyway; this keeps φ and the map (and the
        optimizer state) across episodes, so later episodes start from a φ that has already been
        meta-trained (the warm-up re-centres it on the starting size). Episode seeds are drawn
        from the agent's generator.
        """
        steps = 0
        while steps < total_timesteps:
            seed = int(torch.randint(2**31 - 1, (), generator=self.generator))
            record = run_episode(self.env, self, seed)
            steps += len(record.batch_sizes)
        self.learned_timesteps += steps
        return self

    def close(self) -> None:
        """Detaches the step hook and the info source from the env (the agent stops learning)."""
        self._hook.remove()
        self._info_handle.remove()

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
        return self._response_terms(s, inputs, targets)[0]

    def _response_terms(
        self, s: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """F(s) and the temperature component τ of the response (see :meth:`temperature`)."""
        assert self.response_map is not None
        h = self.response_map(s.reshape(1, 1).to(self.response_map.weight.dtype))
        # The meta-step never differentiates with respect to the inner weights, so x + x ⊙ h
        # with x computed without autograd has the value and the (φ, α, map) gradient of
        # x + stopgrad(x) ⊙ h, and only the head's part of the forward records a graph.
        with self.trainer.evaluation_mode(), torch.no_grad():
            features = self.trainer.penultimate_features(inputs)
            temperature = self.temperature(features)
        loss = F.cross_entropy(self.trainer.head(features + features * h), targets)
        return loss, temperature

    @torch.no_grad()
    def temperature(self, features: torch.Tensor) -> torch.Tensor:
        """τ: the part of the response that acts as a logit temperature, per unit of s.

        With head weights W and map weights w, the response changes the logits by
        ``s · W(x ⊙ w)``; a pure temperature change would change them by ``c · Wx``. τ is the
        least-squares c per unit s over the examples, ``Σ⟨W(x ⊙ w), Wx⟩ / Σ‖Wx‖²``, so the
        response scales the logits (less the bias) by about ``1 + τ·s``. With
        ``response="temperature"`` τ is the shared gain c exactly. Measured on at most 64 of
        the response examples.
        """
        assert self.response_map is not None
        features = features[:64]
        weight = self.trainer.head.weight
        assert isinstance(weight, torch.Tensor)
        direction = self.response_map.weight.reshape(1, -1).to(features.dtype)
        base = features @ weight.T
        change = (features * direction) @ weight.T
        return (change * base).sum() / base.square().sum().clamp_min(1e-30)

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
            candidates = self.candidates(inputs[: config.phi_batch_size])
            s = self.mixed_logit(candidates)
            self._search.remember(s, candidates)
        with self._timed("response_forward"):
            loss, temperature = self._response_terms(
                s, inputs[config.phi_batch_size :], targets[config.phi_batch_size :]
            )
        self._descend(loss, s, temperature)
        return self.last_meta_loss

    def _descend(self, loss: torch.Tensor, s: torch.Tensor, temperature: torch.Tensor) -> None:
        """The Adam step on the meta-parameters against ``loss``; records the search diagnostics.

        The gradient is taken of F itself, so dF/ds is logged unscaled; ``meta_loss_scale``
        then scales the parameters' gradients (the null control at 0 leaves only weight decay).
        """
        with self._timed("meta_backward"):
            *grads, dloss_ds = torch.autograd.grad(loss, [*self.meta_params, s])
        with self._timed("adam_step"):
            scale = self.config.meta_loss_scale
            for parameter, grad in zip(self.meta_params, grads, strict=True):
                parameter.grad = grad if scale == 1.0 else grad * scale
            self.optimizer.step()
            for parameter in self.meta_params:
                parameter.grad = None
        self.meta_steps += 1
        self._search.add(dloss_ds, temperature)
        self.last_meta_loss = loss.detach()

    @torch.no_grad()
    def decide(self) -> tuple[int, str]:
        """The candidate with the largest α as a batch size, and the decision's kind.

        Resets α for the next search. When α is tied (every entry equal: no meta-step ran in
        the interval, or the meta-gradient was zero) there is no evidence to move on, and the
        current batch size is kept (kind ``"kept"``); a tie among some of the largest entries
        goes to the tied candidate closest to the current size. Plain ``argmax`` would pick
        candidate 0, the smallest.
        """
        with self._timed("decision"):
            inputs, _ = self.trainer.sample_validation(
                self.config.phi_batch_size, generator=self.generator
            )
            candidates = self.candidates(inputs)
            current = int(self.batch_env.batch_size)
            alpha = self.alpha.detach().cpu()
            if bool((alpha == alpha[0]).all()):
                size, kind = current, "kept"
            else:
                tied = torch.nonzero(alpha == alpha.max()).flatten().tolist()
                logits = candidates.tolist()
                sizes = [logit_to_batch_size(logits[i], self.b_min, self.b_max) for i in tied]
                size, kind = min(sizes, key=lambda b: abs(b - current)), "arbiter"
            self._reset_alpha()
            self._search.remember(self.mixed_logit(candidates), candidates)
        return size, kind

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
            self.phi.parameters(), lr=config.warmup_lr, fused=_fused_adam(self.device)
        )
        decoded = -1
        with self._timed("warmup"):
            for iteration in range(config.warmup_max_iters + 1):
                inputs, _ = self.trainer.sample_validation(
                    config.phi_batch_size, generator=self.generator
                )
                candidates = self.candidates(inputs)
                s = self.mixed_logit(candidates)
                decoded = logit_to_batch_size(s.item(), self.b_min, self.b_max)
                if abs(decoded - batch_size) <= config.warmup_tolerance:
                    self._search.remember(s, candidates)
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
            "response_map": None if self.response_map is None else self.response_map.state_dict(),
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
        if self.response_map is not None:
            self.response_map.load_state_dict(state["response_map"])
        with torch.no_grad():
            self.alpha.copy_(state["alpha"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.meta_steps = int(state["meta_steps"])

    def save(self, path: str | Path) -> None:
        """Writes :meth:`state_dict`; loaded between episodes, it decides as this agent would."""
        torch.save(self.state_dict(), Path(path))

    @classmethod
    def load(cls, path: str | Path, env: gym.Env, **kwargs: Any) -> Arbiter:
        """An Arbiter for ``env`` from :meth:`save`'s file; a bad file is a one-line ValueError."""
        path = Path(path)
        state = read_tensor_file(path, _STATE_KEYS, "an Arbiter checkpoint (Arbiter.save)")
        config = from_dict(cls.config_class, state["config"])
        agent = cls(env, config, schedule=kwargs.pop("schedule", state["schedule"]), **kwargs)
        try:
            agent.load_state_dict(state)
        except (RuntimeError, KeyError, TypeError) as error:  # saved for another network
            message = f"{path} does not fit an Arbiter in this env ({first_line(error)})"
            raise ValueError(f"{message}; was it saved for another task or encoder?") from None
        agent.loaded_from = str(path)
        return agent

    def run_notes(self) -> list[str]:
        """Which of Arbiter's two modes ran, and which number to report (``arbiter evaluate``)."""
        return mode_notes(self.loaded_from, self.learned_timesteps)

    # --- diagnostics ----------------------------------------------------------------------------

    def interval_diagnostics(self) -> dict[str, Any]:
        """What the search did in the interval that just ended, for the env's ``info``.

        The env calls this at the end of each step and puts the result under ``info["arbiter"]``
        (loggers flatten it to ``arbiter.<name>``): ``s`` (the last mixed logit) and ``B_s`` (its
        batch size), the candidates as sizes (``candidate_i``), ``alpha_i`` before the decision
        resets it, ``meta_steps`` in the interval, the mean ``dF_ds`` over them, the map's norm
        ``map_norm`` and the response's mean temperature component ``temperature`` (τ, see
        :meth:`temperature`) with its gain ``temperature_gain = τ·s``. Empty in episodes this
        agent did not start. One device synchronisation per interval.
        """
        if self.trainer.model is not self._episode_model:
            return {}
        return {"arbiter": self._search.report(self.alpha, self.response_map)}

    # --- internals ------------------------------------------------------------------------------

    def _meta_optimizer(self) -> tuple[torch.optim.Adam, list[nn.Parameter]]:
        """One Adam over φ, α and (unless frozen or absent) the map, and the parameters it steps."""
        config = self.config
        groups: list[dict[str, Any]] = [
            {"params": list(self.phi.parameters()), "lr": config.phi_lr},
            {"params": [self.alpha], "lr": config.alpha_lr},
        ]
        if self.response_map is not None:
            self.response_map.to(self.device)
            if config.freeze_map:
                self.response_map.requires_grad_(False)
            else:
                groups.append({"params": list(self.response_map.parameters()), "lr": config.map_lr})
        optimizer = torch.optim.Adam(
            groups,
            weight_decay=config.weight_decay,
            # fused: one kernel per parameter group instead of a Python loop per tensor (or a
            # dozen foreach calls); on small networks the optimizer step is otherwise the largest
            # part of the meta-step.
            fused=_fused_adam(self.device),
        )
        return optimizer, [p for group in groups for p in group["params"]]

    def _response_width(self) -> int | None:
        """Output width of the response map (None: the meta-objective uses none).

        The features' width F, read before the first reset too: then from a throwaway network,
        built in a fork of the global RNG so that nothing else sees it.
        """
        trainer = self.trainer
        if self.config.response == "temperature":
            return 1
        if trainer.model is not None:
            return trainer.feature_width
        with torch.random.fork_rng(devices=[]):
            model = trainer.task.model(trainer.data.input_shape, trainer.data.num_classes)
        # The trainer has checked that the output layer is an nn.Linear.
        return int([m for m in model.modules() if isinstance(m, nn.Linear)][-1].in_features)

    def _build_response_map(self, width: int | None) -> nn.Linear | None:
        """The bias-free map s → h, initialised from the (forked, seeded) global generator."""
        if width is None:
            return None
        response_map = nn.Linear(1, width, bias=False)
        if self.config.response == "temperature":
            nn.init.constant_(response_map.weight, self.config.temperature_init)
        else:
            scale = self.config.map_init_scale
            nn.init.uniform_(response_map.weight, -scale, scale)
        return response_map

    def _on_inner_update(self, info: StepInfo) -> None:
        # Only meta-learn in episodes this agent has started (the env may be shared with
        # another controller after this one).
        if info.trainer.model is not self._episode_model:
            return
        if info.update % self.config.meta_period == 0:
            self.meta_step()

    def _response_size(self) -> int:
        """B for the meta-objective, from the s of the previous meta-step (or of the warm-up)."""
        size = logit_to_batch_size(self._search.last_s(), self.b_min, self.b_max)
        if self.config.response_batch_cap is not None:
            size = min(size, self.config.response_batch_cap)
        return size

    def _reset_alpha(self) -> None:
        # Choice: a new search also forgets α's Adam moments, so the previous interval's
        # momentum cannot decide the next one.
        with torch.no_grad():
            self.alpha.zero_()
        self.optimizer.state.pop(self.alpha, None)
        self._search.reset()

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
