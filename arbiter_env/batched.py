"""Batched training arithmetic of N stacked networks of one architecture (the population env).

:class:`arbiter_env.population.Population` stacks the parameters and momentum buffers of the
members that share an interval's settings and trains them here, one batched operation per step
for all of them. Two paths compute a step's losses and gradients (:class:`Architecture`):

* ``"mlp"`` (the built-in MLP: ``nn.Sequential`` of ``[Flatten,] (Linear, ReLU)*, Linear``):
  batched matrix products with a hand-written backward pass built of autograd's own kernels, so
  that on the CPU every member's numbers equal a single network's bit for bit;
* ``"func"`` (any other deterministic per-example network): ``torch.func.vmap`` of
  ``grad_and_value`` over ``functional_call``.

:func:`sgd` is ``torch.optim.SGD``'s update on the stacked tensors, op for op.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vmap

from arbiter_env.training.network import linear_layers_of, relu_mlp_layers
from arbiter_env.training.stats import linear_sq_norm_sum
from arbiter_env.training.stats.kernels import (
    SMALL_PRODUCT,
    batched_matmul,
    mean_loss_output_gradient,
)

BatchedPath = Literal["mlp", "func"]
StepSumsPair = tuple[torch.Tensor, torch.Tensor]
"""Per member: the sum of squared per-unit gradient norms and the squared mean gradient norm."""
LossAndGrads = tuple[torch.Tensor, list[torch.Tensor], StepSumsPair | None]


@dataclass(frozen=True)
class Architecture:
    """What the members of one batched group share: the path and the network's structure.

    Attributes:
        path: ``"mlp"`` or ``"func"`` (see the module docstring).
        key: Equal for networks that can be stacked and trained together exactly.
        padded_key: Equal for networks that can be trained together once padded with zeros:
            for the ``"mlp"`` path, MLPs of the same depth, input and output size (hidden
            widths may differ; see :func:`stack_padded`); ``key`` otherwise.
        per_sample: Whether per-sample gradients hold for the statistics (``nn.Linear``
            networks); otherwise micro-batches of ``units`` give them.
        units: Number of micro-batches (networks that are not made of ``nn.Linear`` alone).
        base: The structure on the meta device, for ``functional_call``.
        names: Names of the parameters, in ``named_parameters`` order.
        shapes: The parameters' shapes.
    """

    path: BatchedPath
    key: tuple
    per_sample: bool
    units: int
    base: nn.Module = field(compare=False, repr=False)
    names: tuple[str, ...] = ()
    padded_key: tuple = ()
    shapes: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def of(cls, model: nn.Module, path: Literal["auto", "mlp", "func"], units: int):
        """The architecture of ``model``; ``path="auto"`` takes ``"mlp"`` where it applies."""
        is_mlp = relu_mlp_layers(model) is not None
        if path == "mlp" and not is_mlp:
            raise ValueError(
                "path='mlp' needs an nn.Sequential of [Flatten,] (Linear, ReLU)*, Linear; "
                "use path='func' for other networks."
            )
        chosen: BatchedPath = "mlp" if path in ("auto", "mlp") and is_mlp else "func"
        shapes = tuple(tuple(p.shape) for p in model.parameters())
        # Two networks of the same printed structure and parameter shapes compute the same
        # function of their parameters (for the known per-example layers the population takes).
        key = (chosen, shapes) if chosen == "mlp" else (chosen, repr(model), shapes, units)
        # Zero hidden units of a ReLU MLP stay zero and change no other number (see
        # stack_padded): only the depth and the outer sizes must agree.
        padded_key = ("mlp", len(shapes), shapes[0][1:], shapes[-1]) if chosen == "mlp" else key
        return cls(
            path=chosen,
            key=key,
            per_sample=linear_layers_of(model) is not None,
            units=units,
            base=copy.deepcopy(model).to("meta"),
            names=tuple(name for name, _ in model.named_parameters()),
            padded_key=padded_key,
            shapes=shapes,
        )

    def loss_and_grads(
        self, params: list[torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, record: bool
    ) -> LossAndGrads:
        """Each member's picked log-probabilities (or mean loss), gradients and statistics sums.

        Args:
            params: Stacked parameters, ``(N, ...)`` each.
            inputs: ``(N, B, ...)``, one batch per member.
            targets: ``(N, B)``.
            record: Whether to also return the statistics sums of this step.
        """
        if self.path == "mlp":
            return mlp_loss_and_grads(params, inputs, targets, record)
        return self._func_loss_and_grads(params, inputs, targets, record)

    def _func_loss_and_grads(
        self, params: list[torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, record: bool
    ) -> LossAndGrads:
        names, base = self.names, self.base

        def mean_loss_fn(p, x, y):  # the single env's loss, op for op
            logits = functional_call(base, dict(zip(names, p, strict=True)), (x,))
            return F.cross_entropy(logits, y)

        grads, loss = vmap(grad_and_value(mean_loss_fn))(tuple(params), inputs, targets)
        sums = self._func_sums(params, grads, inputs, targets) if record else None
        picked = -loss.detach().unsqueeze(1)  # one "example" per member holding the mean loss
        return picked, list(grads), sums

    def _func_sums(self, params, grads, inputs, targets) -> StepSumsPair:
        names, base = self.names, self.base

        def loss_fn(p, x, y, scale):
            logits = functional_call(base, dict(zip(names, p, strict=True)), (x,))
            return F.cross_entropy(logits, y, reduction="sum") / scale

        members, batch = inputs.shape[:2]
        # A vmap over samples (or micro-batches) inside the members'.
        unit_grad = vmap(vmap(grad(loss_fn), in_dims=(None, 0, 0, None)), in_dims=(0, 0, 0, None))
        if self.per_sample:
            per_sample = unit_grad(tuple(params), inputs.unsqueeze(2), targets.unsqueeze(2), 1)
            unit_sq = sum(g.reshape(members, batch, -1).square().sum((1, 2)) for g in per_sample)
            mean_sq = sum(g.reshape(members, -1).square().sum(1) for g in grads)
            return unit_sq, mean_sq  # type: ignore[return-value]
        units = min(self.units, batch)
        size = batch // units
        used = units * size
        x = inputs[:, :used].reshape(members, units, size, *inputs.shape[2:])
        y = targets[:, :used].reshape(members, units, size)
        unit_grads = unit_grad(tuple(params), x, y, 1)
        flat = torch.cat([g.reshape(members, units, -1) for g in unit_grads], dim=2)
        mean = flat.sum(1) / used
        return flat.square().sum((1, 2)), mean.square().sum(1)


# --- the batched MLP --------------------------------------------------------------------------


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``F.linear`` of each member: ``(N, B, in)``, ``(N, out, in)``, ``(N, out)``."""
    if h.shape[1] * h.shape[2] * w.shape[1] < SMALL_PRODUCT and not h.is_cuda:
        return torch.stack([torch.addmm(b[k], h[k], w[k].T) for k in range(h.shape[0])])
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


def mlp_loss_and_grads(
    params: list[torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, record: bool
) -> LossAndGrads:
    """Mean cross-entropy of each member and its gradients, with a hand-written backward pass.

    ``params`` alternate stacked weights ``(N, out, in)`` and biases ``(N, out)``. Each operation
    is the one autograd runs for ``nn.Linear``, ``ReLU`` and ``cross_entropy`` (``addmm``,
    ``mm``, ``sum(0)``, ``threshold_backward``, ``_log_softmax_backward_data``), batched over
    the members; on the CPU they give the single network's results bit for bit.
    """
    members, batch = inputs.shape[:2]
    x = inputs if inputs.dim() == 3 else inputs.reshape(members, batch, -1)
    weights, biases = params[0::2], params[1::2]
    activations = [x]  # inputs of each layer
    h = x
    for index, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = _linear(h, w, b)
        if index < len(weights) - 1:
            h = h.relu_()  # in place: the backward pass needs only the output, as autograd's
            activations.append(h)
    log_probs = torch.log_softmax(h, dim=2)
    target_index = targets.unsqueeze(2)
    picked = log_probs.gather(2, target_index).squeeze(2)
    delta = mean_loss_output_gradient(log_probs, targets)
    grads: list[torch.Tensor] = [torch.empty(0)] * len(params)
    deltas: list[torch.Tensor] = [delta] * len(weights)
    for index in range(len(weights) - 1, -1, -1):
        a = activations[index]
        grads[2 * index] = batched_matmul(delta.transpose(1, 2), a)
        grads[2 * index + 1] = delta.sum(1)
        deltas[index] = delta
        if index:
            delta = torch.ops.aten.threshold_backward(batched_matmul(delta, weights[index]), a, 0)
    sums = None
    if record:  # the statistics' sums, as the training-step recorder forms them
        unit_sq = linear_sq_norm_sum(
            [(d, a, True, True) for d, a in zip(deltas, activations, strict=True)]
        )
        flat = torch.cat([g.reshape(members, -1) for g in grads], dim=1)
        sums = (unit_sq, torch.linalg.vecdot(flat, flat))
    return picked, grads, sums


def mlp_evaluate(
    params: list[torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, chunk_size: int
) -> list[tuple[float, float]]:
    """``InnerTrainer.evaluate`` for N stacked MLPs at once, with the same arithmetic.

    Returns each member's mean loss (``nll_loss``'s summation order, in float64 after the sum)
    and accuracy.
    """
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
                h = h.relu_()
        log_probs = torch.log_softmax(h, dim=2)
        picked = log_probs.gather(2, y.expand(members, -1).unsqueeze(2)).squeeze(2)
        loss_sum += cascade_sum(-picked).double()
        correct += (h.argmax(2) == y).sum(1).double()
    table = (torch.stack([loss_sum, correct]) / n).T.tolist()
    return [(loss, accuracy) for loss, accuracy in table]


def batch_mean_losses(picked: list[torch.Tensor]) -> torch.Tensor:
    """``(members, updates)`` mean losses from each step's picked log-probabilities.

    ``F.nll_loss`` sums a batch with a cascade of partial sums (blocks of 16, flushed into
    coarser levels; ``aten/src/ATen/native/LossNLL.cpp``); it is emulated here, batched over
    members and steps, so that the mean losses equal a single env's bit for bit.
    """
    # Every step but the last has the same size: one cascade for all of them.
    full = [step for step in picked if step.shape[1] == picked[0].shape[1]]
    parts = []
    if full:
        stacked = torch.stack(full, dim=1)  # (members, steps, B)
        members, steps, size = stacked.shape
        sums = cascade_sum(-stacked.reshape(members * steps, size))
        parts.append((sums / size).view(members, steps))
    for step in picked[len(full) :]:
        parts.append((cascade_sum(-step) / step.shape[1]).unsqueeze(1))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def cascade_sum(values: torch.Tensor) -> torch.Tensor:
    """Sums the rows of ``(rows, n)`` ``values`` in the order of ``nll_loss``'s CPU kernel.

    Element 0 alone in the top level; then blocks of 16 summed left to right, each full block
    flushed into level 1, which flushes into level 2 at every 256th element, and so on; at the
    end the levels added from the bottom up.
    """
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


# --- stacking, with zero padding ---------------------------------------------------------------


def stack_padded(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(tensors)``, padding each with zeros (at the end of each dim) to the largest.

    Tensors of one shape are stacked as they are. For the ``"mlp"`` path, padding hidden widths
    is exact in real arithmetic: a zero hidden unit (zero weight row and bias) has a zero
    pre-activation, so ``relu`` gives 0 and ``threshold_backward`` passes no gradient; its
    weight row, bias and the next layer's zero column get zero gradients, so SGD (momentum,
    weight decay, Nesterov) keeps them exactly zero, and they add exact zeros to every sum
    (activations, per-sample norms, |G|²). Only the float rounding of the products may differ:
    a product over a longer inner dimension is blocked differently.
    """
    shape = tensors[0].shape
    if all(t.shape == shape for t in tensors):
        return torch.stack(tensors)
    largest = [max(t.shape[d] for t in tensors) for d in range(len(shape))]
    out = tensors[0].new_zeros((len(tensors), *largest))
    for k, t in enumerate(tensors):
        unpadded(out[k], t.shape).copy_(t)
    return out


def unpadded(row: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The leading ``shape`` block of one member's padded ``row`` (a view)."""
    return row[tuple(slice(0, n) for n in shape)]


# --- batched SGD ------------------------------------------------------------------------------


def stack_buffers(
    states: list[list[torch.Tensor | None]], params: list[list[torch.Tensor]]
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Stacks the members' momentum buffers; also returns which members have none yet.

    Members whose episode just started have no buffer: they start from zeros, which their first
    update replaces by the gradient itself, as ``torch.optim.SGD`` creates its buffers. The mask
    is ``None`` when every member has its buffers.
    """
    have = [all(b is not None for b in s) for s in states]
    stacked = [
        stack_padded(
            [
                buffer if (buffer := s[k]) is not None else torch.zeros_like(params[j][k])
                for j, s in enumerate(states)
            ]
        )
        for k in range(len(params[0]))
    ]
    if all(have):
        return stacked, None
    return stacked, torch.tensor([not h for h in have], device=params[0][0].device)


@dataclass(frozen=True)
class SgdSettings:
    """The settings of ``torch.optim.SGD``'s parameter group that the update uses."""

    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    def order(self) -> tuple[float, float, float, float, bool]:
        """A sort key: equal settings sort next to each other."""
        return (self.lr, self.momentum, self.dampening, self.weight_decay, self.nesterov)


def sgd(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    buffers: list[torch.Tensor] | None,
    fresh: torch.Tensor | None,
    settings: SgdSettings,
) -> None:
    """``torch.optim.SGD``'s single-tensor update on stacked tensors, op for op.

    The ``_foreach`` forms run the same element-wise kernels tensor by tensor on the CPU, with
    less Python. ``fresh`` marks the members whose first update this is (``buf = clone(d_p)``).
    """
    if settings.weight_decay != 0:
        grads = list(torch._foreach_add(grads, params, alpha=settings.weight_decay))
    if settings.momentum != 0:
        assert buffers is not None
        # A 0-dim tensor takes the fast path of _foreach_mul_ (a Python float goes tensor by
        # tensor on the CPU) and rounds the same: the float is cast to the tensors' dtype.
        torch._foreach_mul_(
            buffers, _scalar_tensor(settings.momentum, buffers[0].dtype, buffers[0].device)
        )
        torch._foreach_add_(buffers, grads, alpha=1 - settings.dampening)
        if fresh is not None:
            for buf, d_p in zip(buffers, grads, strict=True):
                shape = (-1,) + (1,) * (d_p.dim() - 1)
                buf.copy_(torch.where(fresh.view(shape), d_p, buf))
        grads = (
            list(torch._foreach_add(grads, buffers, alpha=settings.momentum))
            if settings.nesterov
            else buffers
        )
    torch._foreach_add_(params, grads, alpha=-settings.lr)


@functools.lru_cache(maxsize=256)
def _scalar_tensor(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``value`` as a 0-dim tensor of ``dtype`` on ``device`` (cached: made once per setting)."""
    return torch.tensor(value, dtype=dtype, device=device)


@dataclass(frozen=True)
class MemberSgd:
    """SGD settings of consecutive members that differ only in learning rate and momentum.

    One update then serves all of them: ``addcmul`` with each member's ``-lr`` rounds as
    ``add(alpha=-lr)`` does (one fused multiply-add per element on the CPU; tested bit for bit
    in ``tests/test_population.py``), and a member without momentum keeps no buffer: its
    ``buf`` is its gradient at every step, which is the ``d_p`` ``torch.optim.SGD`` uses.
    """

    shared: SgdSettings
    neg_lr: torch.Tensor
    momenta: torch.Tensor | None
    no_momentum: torch.Tensor | None

    @classmethod
    def of(cls, settings: list[SgdSettings], device: torch.device) -> MemberSgd | None:
        """The members' update, or ``None`` when they differ in more than lr and momentum."""
        first = settings[0]
        if any(
            (s.dampening, s.weight_decay, s.nesterov)
            != (first.dampening, first.weight_decay, first.nesterov)
            for s in settings
        ):
            return None
        neg_lr = torch.tensor([-s.lr for s in settings], device=device)
        momenta = torch.tensor([s.momentum for s in settings], device=device)
        if not bool(momenta.any()):
            return cls(first, neg_lr, None, None)
        return cls(first, neg_lr, momenta, momenta == 0)

    def step(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        buffers: list[torch.Tensor] | None,
        fresh: torch.Tensor | None,
    ) -> None:
        """``torch.optim.SGD``'s update of every member, each with its own lr and momentum."""
        shared = self.shared
        if shared.weight_decay != 0:
            grads = list(torch._foreach_add(grads, params, alpha=shared.weight_decay))
        if self.momenta is not None:
            assert buffers is not None and self.no_momentum is not None
            replace = self.no_momentum if fresh is None else self.no_momentum | fresh
            for buf, d_p in zip(buffers, grads, strict=True):
                shape = (-1,) + (1,) * (d_p.dim() - 1)
                buf.mul_(self.momenta.view(shape)).add_(d_p, alpha=1 - shared.dampening)
                buf.copy_(torch.where(replace.view(shape), d_p, buf))
            if shared.nesterov:
                grads = [
                    torch.addcmul(g, b, self.momenta.view((-1,) + (1,) * (g.dim() - 1)))
                    for g, b in zip(grads, buffers, strict=True)
                ]
            else:
                grads = buffers
        for p, d_p in zip(params, grads, strict=True):
            p.addcmul_(d_p, self.neg_lr.view((-1,) + (1,) * (d_p.dim() - 1)))
