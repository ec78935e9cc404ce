"""Batched training arithmetic of N stacked MLPs of one architecture (the population env).

:class:`arbiter_env.vector.population.Population` stacks the parameters and momentum buffers of the
members that share an interval's settings and trains them here, one batched operation per step
for all of them. The network is the built-in MLP (``nn.Sequential`` of
``[Flatten,] (Linear, ReLU)*, Linear``): :func:`mlp_loss_and_grads` runs batched matrix
products with a hand-written backward pass built of autograd's own kernels, so that on the CPU
every member's numbers equal a single network's bit for bit. :func:`sgd` is
``torch.optim.SGD``'s update on the stacked tensors, op for op.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from arbiter_env.training.stats import linear_sq_norm_sum
from arbiter_env.training.stats.kernels import (
    SMALL_PRODUCT,
    batched_matmul,
    mean_loss_output_gradient,
)

StepSumsPair = tuple[torch.Tensor, torch.Tensor]
"""Per member: the sum of squared per-sample gradient norms and the squared mean gradient norm."""
LossAndGrads = tuple[torch.Tensor, list[torch.Tensor], StepSumsPair | None]


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
    members and steps, so that the mean losses equal a single env's bit for bit. A plain
    ``torch.sum`` rounds the losses differently in their last bits, which the rewards (differences
    of log losses) magnify well past 1e-6 relative (``benchmarks/population_equivalence.py``
    measures it); ``tests/vector/test_population.py`` checks the emulation against ``F.nll_loss``.
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
        torch.stack(
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
    in ``tests/vector/test_population.py``), and a member without momentum keeps no buffer: its
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
