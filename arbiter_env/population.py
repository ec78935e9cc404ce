"""A population of inner networks trained in lockstep: one batched step for N environments.

On the small networks of the built-in tasks every tensor operation costs 10–30 µs of fixed
overhead whatever its size, so training N networks with batched operations costs little more than
training one. :class:`Population` holds N copies of :class:`~arbiter_env.env.BatchSizeEnv` (one
task; each member its own seed, batch size, optimizer state, observation, reward and termination)
whose inner training runs batched; as an SB3 ``VecEnv`` it is
:class:`arbiter_env.agents.population_vec_env.PopulationEnv` (there, as stable-baselines3 is
needed only by the RL agents)::

    from stable_baselines3 import PPO
    from arbiter_env.agents.population_vec_env import make_population_env

    PPO("MlpPolicy", make_population_env("digits-mlp", n_envs=16)).learn(10_000)

``gymnasium.make_vec("arbiter_env/BatchSize-v0", num_envs=16, vectorization_mode=
"vector_entry_point")`` gives the same population as a ``gymnasium.vector.VectorEnv``
(:class:`PopulationVectorEnv`).

**How.** Each member is a real ``BatchSizeEnv`` with its own :class:`~arbiter_env.training.trainer.
InnerTrainer` (model, ``torch.optim.SGD``, sampler, generators), reset exactly as a single env is.
For an interval, members are grouped by batch size (and learning rate); a group's parameters and
momentum buffers are stacked (as ``torch.func.stack_module_state`` does), trained for the
interval's steps with one batched forward, backward and SGD update per step, and written back
into the members' own modules and optimizer states. Each member's ``BatchSizeEnv.step`` then runs
as usual with the interval's training already done, so validation, statistics, observation,
reward, termination and ``info`` come from the same code as a single env. Grouping was chosen
over padding: padding to the largest size in the population multiplies the arithmetic, which
the feasibility measurements of issue 16 found to cost 2× (largest member's size) to 6× (512).

Two batched paths compute the step's loss and gradients:

* ``"mlp"`` (the built-in MLP: ``nn.Sequential`` of ``[Flatten,] (Linear, ReLU)*, Linear``):
  batched matrix products (``baddbmm``/``bmm``) with a hand-written backward pass; per-sample
  gradient norms for the statistics come from its activations and output gradients;
* ``"func"`` (any other deterministic per-example network): ``torch.func.vmap`` of
  ``grad_and_value`` over ``functional_call``; per-sample (``nn.Linear`` networks) or micro-batch
  gradients for the statistics through a nested ``vmap``.

``path="auto"`` takes ``"mlp"`` where it applies. Networks with batch norm, dropout or modules
of unknown behaviour, optimizers other than SGD (with momentum, Nesterov, weight decay) and task
families are not supported yet and raise an error that says so.

**Equivalence with the single env.** Everything but the training arithmetic is the single env's
own code, on the same seeds: the same examples in the same order, the same initialisation, the
same statistics estimator on the same steps. Batched matrix products add their terms in another
order than ``torch.mm`` does, so parameters differ from a single env's by float32 rounding
(relative 1e-7 per step), which training amplifies slowly; the equivalence test holds every
observation of the first intervals to 1e-5 relative (``tests/test_population.py``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector.utils import batch_space
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vmap

from arbiter_env.env import BatchSizeEnv
from arbiter_env.training.network import mode_independent
from arbiter_env.training.stats import GradientStatistics
from arbiter_env.training.step_stats import (
    DEFAULT_MICROBATCHES,
    SMALL_PRODUCT,
    StepSums,
    batched_matmul,
    linear_layers_of,
    relu_mlp_layers,
    statistics_from_steps,
)
from arbiter_env.training.trainer import InnerTrainer, IntervalResult

PopulationPath = Literal["auto", "mlp", "func"]


class Population:
    """N ``BatchSizeEnv`` members of one task whose inner training runs batched.

    Args:
        task: A task name or :class:`~arbiter_env.tasks.Task` (families are not supported yet).
        n_envs: Number of members N.
        path: ``"auto"``, ``"mlp"`` or ``"func"`` (see the module docstring).
        **env_kwargs: Passed to every member's ``BatchSizeEnv`` (``task_kwargs``,
            ``action_encoding``, ``num_intervals``, ``reward``, ``lr_scaling``, ...).
    """

    def __init__(
        self,
        task: Any = "digits-mlp",
        n_envs: int = 16,
        *,
        path: PopulationPath = "auto",
        **env_kwargs: Any,
    ):
        if not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}.")
        if path not in ("auto", "mlp", "func"):
            raise ValueError(f"Unknown path {path!r}; use 'auto', 'mlp' or 'func'.")
        first = BatchSizeEnv(task, **env_kwargs)
        if first.family is not None:
            raise ValueError(
                "The population env does not support task families yet; give one task "
                "(for example one instance: family.make_task(instance))."
            )
        self.envs = [first] + [
            BatchSizeEnv(first.task, **_without(env_kwargs, "task_kwargs"))
            for _ in range(n_envs - 1)
        ]
        for env in self.envs[1:]:
            env.trainer.data = first.trainer.data  # one copy of the data for all members
        self.n_envs = n_envs
        self.task = first.task
        self._check_supported(first.trainer)
        model = _build_reference_model(first.trainer)
        self.path: Literal["mlp", "func"] = (
            "mlp" if path in ("auto", "mlp") and relu_mlp_layers(model) is not None else "func"
        )
        if path == "mlp" and self.path != "mlp":
            raise ValueError(
                "path='mlp' needs an nn.Sequential of [Flatten,] (Linear, ReLU)*, Linear; "
                "use path='func' for other networks."
            )
        self._per_sample = linear_layers_of(model) is not None
        self._base = copy.deepcopy(model).to("meta")  # the structure for functional_call
        self._names = [name for name, _ in model.named_parameters()]

    # --- members --------------------------------------------------------------------------------

    def _check_supported(self, trainer: InnerTrainer) -> None:
        optimizer = self.task.optimizer
        if optimizer.name != "sgd" or optimizer.factory is not None:
            raise ValueError(
                f"The population env trains with batched SGD; task {self.task.name!r} uses "
                f"{optimizer.name!r}. Use single envs (DummyVecEnv) for other optimizers."
            )

    def reset_member(self, index: int, seed: int | None, options: dict | None = None):
        env = self.envs[index]
        observation, info = env.reset(seed=seed, options=options)
        if not mode_independent(env.trainer.model):
            raise ValueError(
                f"Task {self.task.name!r}: the population env supports networks of known "
                "deterministic, per-example layers only (no batch norm, dropout or custom "
                "modules); use single envs for this one."
            )
        return observation, info

    # --- one interval for every member ----------------------------------------------------------

    def step(self, actions: Sequence[Any]) -> list[tuple[np.ndarray, float, bool, bool, dict]]:
        """Steps every member with its action; returns each member's ``env.step`` result."""
        if len(actions) != self.n_envs:
            raise ValueError(f"Expected {self.n_envs} actions, got {len(actions)}.")
        plans = []
        for index, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            if env._done:
                raise RuntimeError(f"Member {index}'s episode has ended; reset it first.")
            batch_size = env.decode(action)
            start, stop = env.interval_boundaries[env._interval : env._interval + 2]
            trainer = env.trainer
            trainer.batch_size = batch_size
            trainer._apply_learning_rate()
            plans.append((batch_size, stop - start, trainer.current_lr))
        groups: dict[tuple[int, int, float], list[int]] = {}
        for index, plan in enumerate(plans):
            groups.setdefault(plan, []).append(index)
        results: dict[int, tuple[IntervalResult, GradientStatistics | None]] = {}
        for (batch_size, samples, lr), members in groups.items():
            results |= self._train_group(members, batch_size, samples, lr)
        validation = self._validation() if self.path == "mlp" else None
        outcomes = []
        for index, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            result, statistics = results[index]
            trainer = env.trainer
            trainer._last_statistics = statistics
            trainer.train = _replay(trainer, result)  # the step's training is done
            if validation is not None:
                trainer.evaluate = _evaluated(trainer, validation[index])
            try:
                outcomes.append(env.step(action))
            finally:
                del trainer.train
                if validation is not None:
                    del trainer.evaluate
        return outcomes

    def _validation(self) -> list[tuple[float, float]]:
        """Validation loss and accuracy of every member, in one batched pass."""
        with torch.no_grad():
            params = [
                torch.stack(column)
                for column in zip(*(env.trainer._trainable for env in self.envs), strict=True)
            ]
            data = self.envs[0].trainer.data
            return mlp_evaluate(params, data.x_val, data.y_val, self.task.eval_batch_size)

    def _train_group(
        self, members: list[int], batch_size: int, samples: int, lr: float
    ) -> dict[int, tuple[IntervalResult, GradientStatistics | None]]:
        trainers = [self.envs[i].trainer for i in members]
        params = [list(t._trainable) for t in trainers]
        stacked = [torch.stack([p[k].detach() for p in params]) for k in range(len(params[0]))]
        group = trainers[0].optimizer.param_groups[0]
        momentum, dampening = group["momentum"], group["dampening"]
        weight_decay, nesterov = group["weight_decay"], group["nesterov"]
        buffers = _stack_buffers(trainers, params) if momentum else None
        fresh = buffers is not None and buffers[1]
        # The same record window as InnerTrainer.train: the last full steps, ⌈P/B⌉ of them.
        statistics_on = trainers[0].statistics == "training"
        record_to = max(samples // batch_size - 1, 0) * batch_size
        record_from = max(record_to - (-(-self.task.probe_size // batch_size) - 1) * batch_size, 0)
        losses, step_sums = [], []
        remaining = samples
        for trainer in trainers:  # keep each member's dropout stream where a single env has it
            torch.randint(2**62, (), generator=trainer._dropout_generator)
        # The sampler is a stream: one draw of the whole interval holds the same examples, in
        # the same order, as one draw per batch, and each step takes a slice of it.
        drawn = [t.sampler.next_batch(samples) for t in trainers]
        all_inputs = torch.stack([x for x, _ in drawn])
        all_targets = torch.stack([y for _, y in drawn])
        while remaining > 0:
            size = min(batch_size, remaining)
            offset = samples - remaining
            inputs = all_inputs[:, offset : offset + size]
            targets = all_targets[:, offset : offset + size]
            record = statistics_on and record_from <= offset <= record_to
            picked, grads, sums = self._loss_and_grads(stacked, inputs, targets, record)
            if sums is not None:
                step_sums.append((size, *sums))
            with torch.no_grad():
                _sgd(
                    stacked,
                    grads,
                    buffers[0] if buffers else None,
                    fresh,
                    lr=lr,
                    momentum=momentum,
                    dampening=dampening,
                    weight_decay=weight_decay,
                    nesterov=nesterov,
                )
            fresh = False
            losses.append(picked)
            remaining -= size
        # Write back into each member's own module and optimizer state.
        with torch.no_grad():
            for j, (trainer, own) in enumerate(zip(trainers, params, strict=True)):
                for p, s in zip(own, stacked, strict=True):
                    p.copy_(s[j])
                if buffers is not None:
                    for p, b in zip(own, buffers[0], strict=True):
                        trainer.optimizer.state[p]["momentum_buffer"] = b[j].clone()
        updates = len(losses)
        loss_table = _batch_mean_losses(losses)  # (members, updates)
        last_size = samples - batch_size * (updates - 1)
        # As InnerTrainer.train reduces its (updates,) vector, row by row.
        mean_loss = (
            loss_table.sum(1) * batch_size - loss_table[:, -1] * (batch_size - last_size)
        ) / samples
        norms = torch.sqrt(
            sum(s.reshape(len(members), -1).double().square().sum(1) for s in stacked)
        )
        rows = [mean_loss.double(), norms]
        for _, unit_sq, mean_sq in step_sums:
            rows += [unit_sq.double(), mean_sq.double()]
        table = torch.stack(rows).T.tolist()  # one host transfer for the whole group
        out = {}
        for j, (index, trainer) in enumerate(zip(members, trainers, strict=True)):
            loss_value, norm_value, *stats_values = table[j]
            trainer.updates += updates
            trainer.samples_seen += samples
            statistics = None
            if step_sums:
                examples = [n for n, _, _ in step_sums]
                units = [n if self._per_sample else min(self._units, n) for n in examples]
                used = [
                    n if self._per_sample else (n // u) * u
                    for n, u in zip(examples, units, strict=True)
                ]
                unit_sums = stats_values[0::2]
                if self.path == "mlp":  # δ of the batch mean: per-sample gradients are B·δ aᵀ
                    unit_sums = [v * n * n for v, n in zip(unit_sums, examples, strict=True)]
                statistics = statistics_from_steps(
                    StepSums(used, units, unit_sums, stats_values[1::2]), self.task.probe_size
                )
            diverged = not (math.isfinite(loss_value) and math.isfinite(norm_value))
            out[index] = (
                IntervalResult(
                    train_loss=loss_value, updates=updates, samples=samples, diverged=diverged
                ),
                statistics,
            )
        return out

    @property
    def _units(self) -> int:
        return self.task.probe_microbatches or DEFAULT_MICROBATCHES

    # --- batched loss and gradients -------------------------------------------------------------

    def _loss_and_grads(
        self, params: list[torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, record: bool
    ):
        if self.path == "mlp":
            return _mlp_loss_and_grads(params, inputs, targets, record)
        return self._func_loss_and_grads(params, inputs, targets, record)

    def _func_loss_and_grads(self, params, inputs, targets, record):
        names, base = self._names, self._base

        def loss_fn(p, x, y, scale):
            logits = functional_call(base, dict(zip(names, p, strict=True)), (x,))
            return F.cross_entropy(logits, y, reduction="sum") / scale

        def mean_loss_fn(p, x, y):  # the single env's loss, op for op
            logits = functional_call(base, dict(zip(names, p, strict=True)), (x,))
            return F.cross_entropy(logits, y)

        batch = inputs.shape[1]
        grads, loss = vmap(grad_and_value(mean_loss_fn))(tuple(params), inputs, targets)
        sums = None
        if record:
            if self._per_sample:
                # Per-sample gradients of each member: a vmap over samples inside the members'.
                per_sample = vmap(
                    vmap(grad(loss_fn), in_dims=(None, 0, 0, None)), in_dims=(0, 0, 0, None)
                )(tuple(params), inputs.unsqueeze(2), targets.unsqueeze(2), 1)
                unit_sq = sum(
                    g.reshape(g.shape[0], batch, -1).square().sum((1, 2)) for g in per_sample
                )
                mean_sq = sum(g.reshape(g.shape[0], -1).square().sum(1) for g in grads)
            else:
                units = min(self._units, batch)
                size = batch // units
                used = units * size
                x = inputs[:, :used].reshape(inputs.shape[0], units, size, *inputs.shape[2:])
                y = targets[:, :used].reshape(targets.shape[0], units, size)
                unit_grads = vmap(
                    vmap(grad(loss_fn), in_dims=(None, 0, 0, None)), in_dims=(0, 0, 0, None)
                )(tuple(params), x, y, 1)
                members = inputs.shape[0]
                flat = torch.cat([g.reshape(members, units, -1) for g in unit_grads], dim=2)
                unit_sq = flat.square().sum((1, 2))
                mean = flat.sum(1) / used
                mean_sq = mean.square().sum(1)
            sums = (unit_sq, mean_sq)
        picked = -loss.detach().unsqueeze(1)  # one "example" per member holding the mean loss
        return picked, list(grads), sums


# --- the batched MLP --------------------------------------------------------------------------


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``F.linear`` of each member: ``(N, B, in)``, ``(N, out, in)``, ``(N, out)``."""
    if h.shape[1] * h.shape[2] * w.shape[1] < SMALL_PRODUCT and not h.is_cuda:
        return torch.stack([torch.addmm(b[k], h[k], w[k].T) for k in range(h.shape[0])])
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


def _mlp_loss_and_grads(
    params: list[torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, record: bool
):
    """Mean cross-entropy of each member and its gradients, with a hand-written backward pass.

    ``params`` alternate stacked weights ``(N, out, in)`` and biases ``(N, out)``. Each operation
    is the one autograd runs for ``nn.Linear``, ``ReLU`` and ``cross_entropy`` (``addmm``,
    ``mm``, ``sum(0)``, ``threshold_backward``, ``_log_softmax_backward_data``), batched over
    the members; on the CPU they give the single network's results bit for bit."""
    members, batch = inputs.shape[:2]
    x = inputs.reshape(members, batch, -1)
    weights, biases = params[0::2], params[1::2]
    activations = [x]  # inputs of each layer
    h = x
    for index, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = _linear(h, w, b)
        if index < len(weights) - 1:
            h = torch.relu(h)
            activations.append(h)
    log_probs = torch.log_softmax(h, dim=2)
    picked = log_probs.gather(2, targets.unsqueeze(2)).squeeze(2)
    # nll_loss's backward for the batch mean: -1/B at each example's target, 0 elsewhere
    # (1/B divided in the network's dtype, as nll_loss divides by its total weight).
    fill = _fill_value(members, batch, h.dtype, h.device)
    nll_grad = torch.zeros_like(log_probs).scatter_(2, targets.unsqueeze(2), fill)
    delta = torch.ops.aten._log_softmax_backward_data(nll_grad, log_probs, 2, h.dtype)
    grads: list[torch.Tensor] = [None] * len(params)  # type: ignore[list-item]
    terms = []
    for index in range(len(weights) - 1, -1, -1):
        a = activations[index]
        grads[2 * index] = batched_matmul(delta.transpose(1, 2), a)
        grads[2 * index + 1] = delta.sum(1)
        if record:  # the same reductions as step_stats.LinearStepRecorder
            d_sq = torch.linalg.vecdot(delta, delta)
            terms.append(torch.linalg.vecdot(d_sq, torch.linalg.vecdot(a, a) + 1))
        if index:
            delta = torch.ops.aten.threshold_backward(batched_matmul(delta, weights[index]), a, 0)
    sums = None
    if record:
        unit_sq = terms[-1]
        for term in reversed(terms[:-1]):  # first layer first, as the recorder adds them
            unit_sq = unit_sq + term
        flat = torch.cat([g.reshape(members, -1) for g in grads], dim=1)
        sums = (unit_sq, torch.linalg.vecdot(flat, flat))
    return picked, grads, sums


_FILLS: dict[tuple, torch.Tensor] = {}


def _fill_value(members: int, batch: int, dtype: torch.dtype, device: torch.device):
    key = (members, batch, dtype, device)
    if key not in _FILLS:
        if len(_FILLS) > 256:
            _FILLS.clear()
        value = -(torch.ones((), dtype=dtype, device=device) / batch)
        _FILLS[key] = value.expand(members, batch, 1)
    return _FILLS[key]


def mlp_evaluate(
    params: list[torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, chunk_size: int
) -> list[tuple[float, float]]:
    """``InnerTrainer.evaluate`` for N stacked MLPs at once, with the same arithmetic: the mean
    loss (``nll_loss``'s summation order, in float64 after the sum) and the accuracy."""
    members = params[0].shape[0]
    n = inputs.shape[0]
    weights, biases = params[0::2], params[1::2]
    loss_sum = torch.zeros(members, dtype=torch.float64, device=inputs.device)
    correct = torch.zeros(members, dtype=torch.float64, device=inputs.device)
    for start in range(0, n, chunk_size):  # InnerTrainer.evaluate's chunks
        x = inputs[start : start + chunk_size]
        y = targets[start : start + chunk_size]
        h = x.reshape(x.shape[0], -1).expand(members, x.shape[0], -1)
        for index, (w, b) in enumerate(zip(weights, biases, strict=True)):
            h = _linear(h, w, b)
            if index < len(weights) - 1:
                h = torch.relu(h)
        log_probs = torch.log_softmax(h, dim=2)
        picked = log_probs.gather(2, y.expand(members, -1).unsqueeze(2)).squeeze(2)
        loss_sum += _cascade_sum(-picked).double()
        correct += (h.argmax(2) == y).sum(1).double()
    return [tuple(pair) for pair in (torch.stack([loss_sum, correct]) / n).T.tolist()]


def _batch_mean_losses(picked: list[torch.Tensor]) -> torch.Tensor:
    """``(members, updates)`` mean losses from each step's picked log-probabilities.

    ``F.nll_loss`` sums a batch with a cascade of partial sums (blocks of 16, flushed into
    coarser levels; ``aten/src/ATen/native/LossNLL.cpp``); it is emulated here, batched over
    members and steps, so that the mean losses equal a single env's bit for bit."""
    # Every step but the last has the same size: one cascade for all of them.
    full = [step for step in picked if step.shape[1] == picked[0].shape[1]]
    parts = []
    if full:
        stacked = torch.stack(full, dim=1)  # (members, steps, B)
        members, steps, size = stacked.shape
        sums = _cascade_sum(-stacked.reshape(members * steps, size))
        parts.append((sums / size).view(members, steps))
    for step in picked[len(full) :]:
        parts.append((_cascade_sum(-step) / step.shape[1]).unsqueeze(1))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _cascade_sum(values: torch.Tensor) -> torch.Tensor:
    """Sums the rows of ``(rows, n)`` ``values`` in the order of ``nll_loss``'s CPU kernel:
    element 0 alone in the top level; then blocks of 16 summed left to right, each full block
    flushed into level 1, which flushes into level 2 at every 256th element, and so on; at the
    end the levels added from the bottom up."""
    rows, n = values.shape
    zero = values.new_zeros(rows)
    levels = [zero] * 8
    levels[7] = values[:, 0]
    rest = n - 1
    if rest > 0:
        blocks = -(-rest // 16)
        padded = F.pad(values[:, 1:], (0, blocks * 16 - rest)).view(rows, blocks, 16)
        sums = padded[:, :, 0]
        for position in range(1, 16):
            sums = sums + padded[:, :, position]  # adding the padding's 0.0 changes nothing
        for k in range(1, blocks + 1):
            last = 16 * k  # index of the block's last element
            if last > rest:  # a partial last block stays in level 0
                levels[0] = sums[:, k - 1]
                break
            levels[1] = levels[1] + sums[:, k - 1]
            j = 1
            while j < 7 and not (last >> (4 * j)) & 15:
                levels[j + 1] = levels[j + 1] + levels[j]
                levels[j] = zero
                j += 1
    total = zero
    for level in levels:
        total = total + level
    return total


# --- batched SGD ------------------------------------------------------------------------------


def _stack_buffers(trainers: list[InnerTrainer], params: list[list[torch.Tensor]]):
    states = [
        [t.optimizer.state.get(p, {}).get("momentum_buffer") for p in own]
        for t, own in zip(trainers, params, strict=True)
    ]
    # Members whose episode just started have no buffer yet: they start from zeros, which their
    # first update replaces by the gradient itself, as torch.optim.SGD creates its buffers.
    have = [all(b is not None for b in s) for s in states]
    stacked = [
        torch.stack(
            [
                s[k] if s[k] is not None else torch.zeros_like(params[j][k])
                for j, s in enumerate(states)
            ]
        )
        for k in range(len(params[0]))
    ]
    if all(have):
        return stacked, False
    return stacked, torch.tensor([not h for h in have], device=params[0][0].device)


def _sgd(params, grads, buffers, fresh, *, lr, momentum, dampening, weight_decay, nesterov):
    """``torch.optim.SGD``'s single-tensor update on stacked tensors, op for op (the ``_foreach``
    forms run the same element-wise kernels tensor by tensor on the CPU, with less Python)."""
    if weight_decay != 0:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if momentum != 0:
        torch._foreach_mul_(buffers, momentum)
        torch._foreach_add_(buffers, grads, alpha=1 - dampening)
        if fresh is not False:  # members whose first update this is: buf = clone(d_p)
            for buf, d_p in zip(buffers, grads, strict=True):
                shape = (-1,) + (1,) * (d_p.dim() - 1)
                buf.copy_(torch.where(fresh.view(shape), d_p, buf))
        grads = torch._foreach_add(grads, buffers, alpha=momentum) if nesterov else buffers
    torch._foreach_add_(params, grads, alpha=-lr)


# --- helpers ----------------------------------------------------------------------------------


def _replay(trainer: InnerTrainer, result: IntervalResult) -> Callable[[int, int], IntervalResult]:
    def train(batch_size: int, num_samples: int) -> IntervalResult:
        assert batch_size == trainer.batch_size and num_samples == result.samples
        return result

    return train


def _evaluated(trainer: InnerTrainer, validation: tuple[float, float]):
    evaluate = trainer.evaluate

    def replay(split: str = "validation") -> tuple[float, float]:
        return validation if split == "validation" else evaluate(split)

    return replay


def _build_reference_model(trainer: InnerTrainer) -> nn.Module:
    with torch.random.fork_rng():
        return trainer.task.model(trainer.data.input_shape, trainer.data.num_classes)


def _without(kwargs: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k != key}


# --- gymnasium.vector ---------------------------------------------------------------------------


class PopulationVectorEnv(gym.vector.VectorEnv):
    """The population as a ``gymnasium.vector.VectorEnv`` (autoreset on the next step).

    ``gymnasium.make_vec("arbiter_env/BatchSize-v0", num_envs=N,
    vectorization_mode="vector_entry_point", task=...)`` builds one. ``reset(seed=s)`` seeds
    member i with ``s + i``. ``infos`` is a dict of arrays with ``_key`` masks, as Gymnasium's
    own vector envs return it.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 16, task: Any = "digits-mlp", **kwargs: Any):
        self.population = Population(task, num_envs, **kwargs)
        first = self.population.envs[0]
        self.num_envs = num_envs
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(first.observation_space, num_envs)
        self.action_space = batch_space(first.action_space, num_envs)
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self._observations = np.zeros((num_envs,) + first.observation_space.shape, np.float32)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        seeds = (
            [None if seed is None else seed + i for i in range(self.num_envs)]
            if seed is None or isinstance(seed, int)
            else list(seed)
        )
        infos: dict[str, Any] = {}
        for index, member_seed in enumerate(seeds):
            observation, info = self.population.reset_member(index, member_seed, options)
            self._observations[index] = observation
            infos = self._add_info(infos, info, index)
        self._needs_reset[:] = False
        return self._observations.copy(), infos

    def step(self, actions: Any):
        actions = list(actions)
        rewards = np.zeros(self.num_envs)
        terminations = np.zeros(self.num_envs, dtype=bool)
        truncations = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        stepping = [i for i in range(self.num_envs) if not self._needs_reset[i]]
        for index in np.flatnonzero(self._needs_reset):
            observation, info = self.population.reset_member(int(index), None)
            self._observations[index] = observation
            infos = self._add_info(infos, info, int(index))
        if stepping:
            # Members being reset this step are stepped nowhere: run the rest as a population.
            outcomes = _step_subset(self.population, stepping, actions)
            for index, (observation, reward, terminated, truncated, info) in outcomes:
                self._observations[index] = observation
                rewards[index], terminations[index], truncations[index] = (
                    reward,
                    terminated,
                    truncated,
                )
                infos = self._add_info(infos, info, index)
        self._needs_reset = terminations | truncations
        return self._observations.copy(), rewards, terminations, truncations, infos


def _step_subset(population: Population, indices: list[int], actions: list[Any]):
    if len(indices) == population.n_envs:
        return list(enumerate(population.step(actions)))
    full = population.n_envs
    envs = population.envs
    try:
        population.envs = [envs[i] for i in indices]
        population.n_envs = len(indices)
        outcomes = population.step([actions[i] for i in indices])
    finally:
        population.envs, population.n_envs = envs, full
    return list(zip(indices, outcomes, strict=True))


def __getattr__(name: str) -> Any:
    # The SB3 VecEnv adapter moved to the agents (stable-baselines3 is needed only there); old
    # imports from this module still find it, importing stable-baselines3 only then.
    if name in ("PopulationEnv", "make_population_env"):
        from arbiter_env.agents import population_vec_env

        return getattr(population_vec_env, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
