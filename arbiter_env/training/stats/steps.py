"""Training steps: gradient statistics from the interval's own batches, without a probe pass.

The probe (:mod:`~arbiter_env.training.stats.probe`) is one more forward and backward pass of
``task.probe_size`` examples per interval, a large share of a short interval at a large batch
size. The sources here take the sums of the estimator
(:mod:`~arbiter_env.training.stats.estimator`) from the training steps themselves.

Only the last full steps of the interval are recorded, enough for ``task.probe_size`` examples
(``⌈P/B⌉`` steps: 8 at B=8, 2 at B=32, 1 from B=64 on with the default P=64): the steps closest
to the decision the observation informs, never fewer examples than the probe has, and a cost
that stays a small part of the interval at every batch size.

**nn.Linear networks** (:class:`LinearStepRecorder`). The recorder keeps each ``nn.Linear``'s
input ``a_i`` and the gradient ``δ_i`` at its output from the step's own backward pass. The
training loss is the *mean* over the batch, so the per-sample gradient of a layer is
``B·δ_i a_iᵀ`` (and ``B·δ_i`` for its bias), and ``‖g_i‖² = B²‖δ_i‖²(‖a_i‖² + 1)`` without
forming ``g_i`` (Goodfellow, 2015; :func:`linear_sq_norm_sum`). The step's mean gradient ``ḡ``
is the ``.grad`` the backward pass wrote. Nothing is computed per update: references are kept,
and the reductions run a handful of batched kernels at the end of the interval (or whenever the
kept tensors pass ``MAX_PENDING_ELEMENTS``, to bound memory). For the built-in MLP, the ``δ`` are
recomputed at the end of the interval with autograd's own kernels
(:mod:`~arbiter_env.training.stats.kernels`) from the kept log-probabilities and weights.

**Other deterministic networks of known per-example layers** (:func:`microbatch_backward`, for
example the small CNN). Each recorded step is back-propagated as ``M`` equal micro-batches
(``DEFAULT_MICROBATCHES`` or ``task.probe_microbatches``), which is the same gradient up to float
rounding, and gives the micro-batch units of the estimator. Networks with batch norm keep the
probe (a micro-batch of a training-mode batch norm is a different computation), and so do
networks with dropout that are not made of ``nn.Linear`` layers only (micro-batches would draw
other dropout masks).

**Bias.** These estimate tr(Σ) and |G|² averaged over the recorded steps, while the probe
estimates them after the last update: the training estimates lag by ``⌈P/B⌉`` updates at most.
Batches are drawn without replacement within an epoch, so the per-step estimates carry the
finite-population factor ``(N−n)/(N−1)`` on the covariance of the batch mean, at most ``n/N``
(large at B=512 on a training part of about a thousand examples, where S is then biased low by
about that fraction of its ``‖ḡ‖²`` term); the probe has the same factor at its size.

**Variance.** The Linear recorder uses per-sample gradients of at least ``P`` examples, so ``S``
and ``|G|²`` have about the probe's variance. The micro-batch path has ``M − 1`` degrees of
freedom per recorded step, so its ``S`` is far noisier than the probe's ``P − 1``; ask for more
with ``task.probe_microbatches``, at a higher cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from arbiter_env.training.network import relu_mlp_layers
from arbiter_env.training.stats.estimator import GradientStatistics, StepSums, linear_statistics
from arbiter_env.training.stats.kernels import batched_matmul, mean_loss_output_gradient

MAX_PENDING_ELEMENTS = 1 << 22
"""Kept activations, output gradients and ``.grad`` references (in elements) above which the
Linear recorder reduces what it holds, so memory stays bounded on long intervals."""

DEFAULT_MICROBATCHES = 2
"""Micro-batches per recorded step for networks that are not made of ``nn.Linear`` only (unless
``task.probe_microbatches`` says otherwise). Two keep the cost low: each micro-batch runs the
convolutions on a smaller batch, where they run less efficiently."""


def linear_sq_norm_sum(
    terms: Sequence[tuple[torch.Tensor, torch.Tensor, bool, bool]],
) -> torch.Tensor:
    """``Σ_i ‖δ_i‖²(‖a_i‖² + 1)`` per step, summed over layers (first layer first).

    Each term is ``(δ, a, has_weight, has_bias)`` of one ``nn.Linear``, with ``(..., B, out)``
    output gradients and ``(..., B, in)`` inputs; ``‖δ_i‖²‖a_i‖²`` counts the weight's
    per-sample gradient and ``‖δ_i‖²`` the bias's.
    """
    total = None
    for delta, activation, has_weight, has_bias in terms:
        d_sq = torch.linalg.vecdot(delta, delta)
        if has_weight and has_bias:
            term = torch.linalg.vecdot(d_sq, torch.linalg.vecdot(activation, activation) + 1)
        elif has_weight:
            term = torch.linalg.vecdot(d_sq, torch.linalg.vecdot(activation, activation))
        elif has_bias:
            term = d_sq.sum(-1)
        else:
            continue
        total = term if total is None else total + term
    assert total is not None
    return total


class LinearStepRecorder:
    """Per-sample gradient norms of an ``nn.Linear`` network from its training steps.

    Use: :meth:`start` before the interval; :meth:`record_step` in place of the forward and
    backward pass of each step to be measured (it writes ``.grad`` as ``loss.backward()`` does);
    :meth:`stop` and :meth:`result` at the end. Forward hooks are attached at the first recorded
    step and removed by :meth:`stop`, so unrecorded steps and other code's forwards (Arbiter's
    meta-steps) run without them. The ``.grad`` tensors are only referenced, so the optimizer
    must not modify them in place (torch's built-in optimizers don't); a modified one is detected
    through its version counter and the interval's result is then ``None``.

    Args:
        model: The network.
        layers: Its ``nn.Linear`` layers
            (:func:`~arbiter_env.training.network.linear_layers_of`).
    """

    def __init__(self, model: nn.Module, layers: list[nn.Linear]):
        self.model = model
        self.layers = layers
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._recording = False
        children = list(model.children()) if type(model) is nn.Sequential else []
        self._chain: dict[nn.Module, int] | None = (
            {layer: index for index, layer in enumerate(layers)}
            if children
            and all(any(layer is c for c in children) for layer in layers)
            and type(model).forward is nn.Sequential.forward
            and not (model._forward_hooks or model._forward_pre_hooks)
            else None
        )
        # The built-in MLP: its output gradients δ are recomputed at the end of the interval
        # with the kernels autograd uses, from the log-probabilities and weights of each
        # recorded step, which costs less than having autograd hand them out.
        self._relu_mlp = self._chain is not None and relu_mlp_layers(model) == layers
        self._width = sum(layer.in_features + layer.out_features for layer in layers)
        self._numel = sum(p.numel() for p in self.params)
        self.start()

    def start(self) -> None:
        """Starts a new interval."""
        self._inputs: list[list[torch.Tensor]] = [[] for _ in self.layers]
        self._outputs: list[tuple[int, torch.Tensor]] = []
        self._deltas: list[list[torch.Tensor]] = [[] for _ in self.layers]
        self._log_probs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._weights: list[list[torch.Tensor]] = []  # of the layers after the first, per step
        self._grads: list[tuple[list[torch.Tensor], list[int]]] = []
        self._sizes: list[int] = []
        self._pending = 0
        self._reduced: list[torch.Tensor] = []  # per flush: (2, steps) unit sums and ‖ḡ‖²
        self._reduced_sizes: list[list[int]] = []
        self._valid = True

    def _capture(self, index: int):
        def capture(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor):
            if self._recording:  # not the forwards of step hooks between recorded steps
                self._inputs[index].append(args[0].detach())
                self._outputs.append((index, output))

        return capture

    def record_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Forward and backward pass of one training step, recorded; returns the mean loss."""
        if self._relu_mlp:
            z = inputs
            index = 0
            for module in cast(nn.Sequential, self.model):
                if type(module) is nn.Linear:
                    self._inputs[index].append(z.detach() if z.requires_grad else z)
                    index += 1
                z = module(z)
            log_probs = F.log_softmax(z, 1)  # F.cross_entropy's own two steps
            loss = F.nll_loss(log_probs, targets)
            loss.backward()
            self._log_probs.append(log_probs.detach())
            self._targets.append(targets)
            # Copies: the optimizer step that follows changes the weights in place.
            self._weights.append([layer.weight.detach().clone() for layer in self.layers[1:]])
            return self._finish_step(inputs.shape[0], loss)
        if self._chain is not None:
            # A plain nn.Sequential (the built-in MLP): walk it here instead of hooking it, which
            # spares the hooked modules' slow call path. The children's own hooks still run.
            outputs = []
            z = inputs
            for module in cast(nn.Sequential, self.model):
                position = self._chain.get(module)
                if position is not None:
                    self._inputs[position].append(z.detach())
                    z = module(z)
                    outputs.append((position, z))
                else:
                    z = module(z)
            loss = F.cross_entropy(z, targets)
        else:
            if not self._handles:
                self._handles = [
                    layer.register_forward_hook(self._capture(index))
                    for index, layer in enumerate(self.layers)
                ]
            self._outputs = []
            self._recording = True
            try:
                loss = F.cross_entropy(self.model(inputs), targets)
            finally:
                self._recording = False
            outputs = self._outputs
        if len(outputs) != len(self.layers) or len({i for i, _ in outputs}) != len(self.layers):
            # A layer was skipped or called twice: per-sample norms are not ‖δ‖²‖a‖² there.
            self._valid = False
            loss.backward()
            return loss
        # One backward pass writes the parameters' .grad, as loss.backward() does, and the
        # layers' output gradients δ into the outputs' .grad.
        torch.autograd.backward(loss, inputs=self.params + [output for _, output in outputs])
        for index, output in outputs:
            self._deltas[index].append(output.grad)
        return self._finish_step(inputs.shape[0], loss)

    def _finish_step(self, size: int, loss: torch.Tensor) -> torch.Tensor:
        # Every parameter has a gradient: all sit in the layers the step just called.
        grads = cast(list[torch.Tensor], [p.grad for p in self.params])
        self._grads.append((grads, [g._version for g in grads]))
        self._sizes.append(size)
        self._pending += size * self._width + self._numel
        if self._pending > MAX_PENDING_ELEMENTS:
            self._flush()
        return loss

    def stop(self) -> None:
        """Removes the hooks (the recorded tensors stay until :meth:`result`)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._outputs = []

    def _flush(self) -> None:
        """Reduces the kept tensors to per-step sums (a few batched kernels for all steps)."""
        steps = len(self._sizes)
        if not steps or not self._valid:
            return
        if any(len(x) != steps for x in self._inputs) or any(
            x.dim() != 2 for inputs in self._inputs for x in inputs
        ):
            self._valid = False  # a layer fed sequences, or called out of order
            return
        if any(
            g._version != v
            for grads, versions in self._grads
            for g, v in zip(grads, versions, strict=True)
        ):
            self._valid = False  # the optimizer changed .grad in place
            return
        with torch.no_grad():
            if len(set(self._sizes)) == 1:
                unit_sums = self._per_sample_sums(range(steps))
            else:  # steps of different sizes: one at a time
                unit_sums = torch.cat([self._per_sample_sums([t]) for t in range(steps)])
        flat = torch.cat([g.reshape(-1) for grads, _ in self._grads for g in grads])
        flat = flat.view(steps, -1)
        mean_sq = torch.linalg.vecdot(flat, flat)
        self._reduced.append(torch.cat([unit_sums, mean_sq.to(unit_sums.dtype)]))
        self._reduced_sizes.append(list(self._sizes))
        self._inputs = [[] for _ in self.layers]
        self._deltas = [[] for _ in self.layers]
        self._log_probs, self._targets, self._weights = [], [], []
        self._grads = []
        self._sizes = []
        self._pending = 0

    def _per_sample_sums(self, steps: range | list[int]) -> torch.Tensor:
        """``Σ_i ‖g_i‖²/B²`` of the given equal-size steps, as a ``(steps,)`` tensor."""

        def stacked(tensors: list[torch.Tensor]) -> torch.Tensor:
            if len(steps) == 1:
                return tensors[steps[0]].unsqueeze(0)
            return torch.stack([tensors[t] for t in steps])

        count = len(self.layers)
        inputs = [stacked(x) for x in self._inputs]
        if self._relu_mlp:
            delta = mean_loss_output_gradient(stacked(self._log_probs), stacked(self._targets))
            deltas: list[torch.Tensor] = [delta] * count
            for index in range(count - 1, 0, -1):  # back through the ReLUs, as autograd does
                weight = stacked([w[index - 1] for w in self._weights])
                delta = torch.ops.aten.threshold_backward(
                    batched_matmul(delta, weight), inputs[index], 0
                )
                deltas[index - 1] = delta
        else:
            deltas = [stacked(d) for d in self._deltas]
        return linear_sq_norm_sum(
            [
                (
                    d,
                    a,
                    layer.weight.requires_grad,
                    layer.bias is not None and layer.bias.requires_grad,
                )
                for layer, a, d in zip(self.layers, inputs, deltas, strict=True)
            ]
        )

    def sums(self) -> torch.Tensor | None:
        """The interval's per-step sums as one device tensor.

        To be read with the caller's own host transfer; ``None`` when this network or optimizer
        did not allow them.
        """
        self._flush()
        if not self._valid or not self._reduced:
            return None
        return self._reduced[0] if len(self._reduced) == 1 else torch.cat(self._reduced)

    def statistics(self, values: list[float], reference_size: int) -> GradientStatistics | None:
        """:class:`GradientStatistics` from the host copy of :meth:`sums`."""
        sizes, delta_sums, mean_sq = [], [], []
        offset = 0
        for part in self._reduced_sizes:
            k = len(part)
            delta_sums += values[offset : offset + k]
            mean_sq += values[offset + k : offset + 2 * k]
            sizes += part
            offset += 2 * k
        self._reduced = []
        self._reduced_sizes = []
        return linear_statistics(sizes, delta_sums, mean_sq, reference_size)

    def result(self, reference_size: int) -> GradientStatistics | None:
        """The interval's statistics.

        ``None`` when this network or optimizer did not allow them (the caller then falls back to
        the probe).
        """
        sums = self.sums()
        return None if sums is None else self.statistics(sums.tolist(), reference_size)


def microbatch_backward(
    model: nn.Module,
    params: Sequence[torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    num_microbatches: int,
) -> tuple[torch.Tensor, StepSums | None]:
    """Back-propagates the mean loss of a batch as ``num_microbatches`` micro-batches.

    Writes the batch's mean gradient to ``.grad`` (as ``loss.backward()`` would, up to rounding)
    and returns the detached mean loss with the step's :class:`StepSums` (``None`` when the batch
    is too small for two micro-batches). Rows beyond ``M·⌊B/M⌋`` are back-propagated as one more
    part that counts in ``.grad`` but not in the estimator.
    """
    batch = inputs.shape[0]
    units = min(num_microbatches, batch)
    size = batch // units
    if units < 2:
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        return loss.detach(), None
    bounds = [(j * size, (j + 1) * size) for j in range(units)]
    if units * size < batch:
        bounds.append((units * size, batch))
    total: list[torch.Tensor] | None = None
    losses = []
    unit_flats = []
    for j, (lo, hi) in enumerate(bounds):
        loss = F.cross_entropy(model(inputs[lo:hi]), targets[lo:hi], reduction="sum") / batch
        grads = torch.autograd.grad(loss, params)
        losses.append(loss.detach())
        if j < units:
            unit_flats.append(torch.cat([g.reshape(-1) for g in grads]))
        total = list(grads) if total is None else list(torch._foreach_add(total, grads))
    assert total is not None
    for p, g in zip(params, total, strict=True):
        p.grad = g
    # Unit sums are batch × the mean-loss gradients; ḡ is the mean over the estimator's rows.
    stacked = torch.stack(unit_flats) * batch
    mean = stacked.sum(0) / (units * size)
    unit_sq, mean_sq = torch.stack([stacked.square().sum(), mean.square().sum()]).tolist()
    sums = StepSums([units * size], [units], [unit_sq], [mean_sq])
    return torch.stack(losses).sum(), sums
