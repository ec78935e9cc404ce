"""Gradient statistics from the interval's own training batches, without a separate probe pass.

The probe of :mod:`arbiter_env.training.stats` is one more forward and backward pass of
``task.probe_size`` examples per interval, a large share of a short interval at a large batch size
(an interval of 575 samples at B=128 is only 4.5 updates). The two recorders here take the
statistics from the training steps themselves.

**nn.Linear networks** (:class:`LinearStepRecorder`). While training, a forward hook on each
``nn.Linear`` keeps its input ``a_i`` and a tensor hook on its output keeps the output gradient
``δ_i`` of the same backward pass. The training loss is the *mean* over the batch, so the hooked
gradient is ``δ_i/B`` and the per-sample gradient of layer ``l`` is ``g_i = B·δ_i a_iᵀ`` (and
``B·δ_i`` for its bias), so ``‖g_i‖² = B²‖δ_i‖²(‖a_i‖² + 1)`` without forming ``g_i``
(Goodfellow, 2015). The step's mean gradient ``ḡ_t`` is the ``.grad`` the backward pass wrote.
Nothing is computed per update: references are kept, and the reductions run a handful of
batched kernels at the end of the interval (or whenever the kept tensors pass
``MAX_PENDING_ELEMENTS``, to bound memory).

Only the last full steps of the interval are recorded, enough for ``task.probe_size`` examples
(``⌈P/B⌉`` steps: 8 at B=8, 2 at B=32, 1 from B=64 on with the default P=64): the steps closest
to the decision the observation informs, never fewer examples than the probe had, and a cost
that stays a small part of the interval at every batch size.

**A row subset (opt-in).** ``LinearStepRecorder(..., max_rows=R)`` (``trainer.statistics_rows``)
forms the per-sample norms on the first ``R`` rows of a step of ``B > R`` examples only, and
scales their sum by ``B/R``; ``‖ḡ_t‖²`` still comes from the whole batch. The batch is a slice
of the sampler's random epoch order, so its first rows are a uniform subset of it drawn without
replacement, and ``E[(B/R)·Σ_{i≤R}‖g_i‖² | batch] = Σ_{i≤B}‖g_i‖²``: ``S_t`` and ``G_t`` stay
unbiased. Their variance grows: the mean of ``‖g_i‖²`` comes from ``R`` rows instead of ``B``
(its variance by the factor ``(B/R)·(B−R)/(B−1)``, about 8 at B=512, R=64), which is what a
probe of ``R`` examples has, with ``‖ḡ‖²`` from ``B`` examples. The operations on the kept
tensors shrink ``B/R``-fold. Off by default: the population env reproduces the default
arithmetic bit for bit. At ``B ≤ R`` nothing changes, bit for bit.

**Other deterministic networks of known per-example layers** (:func:`microbatch_backward`, for
example the small CNN). Each recorded step is back-propagated as ``M`` equal micro-batches
(``DEFAULT_MICROBATCHES`` = 2, or ``task.probe_microbatches``; ``torch.autograd.grad`` each,
summed into ``.grad``), which is the same gradient up to float rounding and the same arithmetic
on smaller pieces, and gives the micro-batch estimator of :mod:`arbiter_env.training.stats`. Networks with
batch norm keep the probe (a micro-batch of a training-mode batch norm is a different
computation), and so do networks with dropout that are not made of ``nn.Linear`` layers only
(micro-batches would draw other dropout masks).

**Estimators.** Step ``t`` has ``n_t`` examples in ``U_t`` units of ``u_t`` examples (single
examples, or micro-batches), with unit gradient sums ``s_j`` and mean gradient ``ḡ_t``:

* ``S_t = u_t·U_t/(U_t−1) · (mean_j ‖s_j/u_t‖² − ‖ḡ_t‖²)`` is unbiased for tr(Σ) at the step's
  parameters, and ``G_t = ‖ḡ_t‖² − S_t/n_t`` is unbiased for |G|²;
* the interval's ``S`` and ``|G|²`` are their averages with fixed weights ``U_t − 1`` (inverse to
  the variance of ``S_t``); steps with a single unit are skipped. Averages of unbiased estimates
  stay unbiased.

**Bias.** These estimate tr(Σ) and |G|² averaged over the recorded steps, while the probe
estimates them after the last update: the training estimates lag by ``⌈P/B⌉`` updates at most
(about half an update at the large sizes), which matters only where they drift fast. Batches are drawn without replacement within
an epoch, so the per-step estimates carry the finite-population factor ``(N−n_t)/(N−1)`` on the
covariance of the batch mean, which is at most ``n_t/N`` (under 1% at B ≤ 8 on digits, about
40% at B=512 on the digits training part of 1,149 examples, where S_t is then biased low by
about that fraction of its ``‖ḡ_t‖²`` term); the probe has the same factor at its size.

**Variance.** The Linear recorder uses per-sample gradients of at least ``P`` examples, so
``S`` and ``|G|²`` have about the probe's variance (less when ``B`` does not divide ``P``: a whole
last batch is used). The micro-batch path has ``M − 1`` degrees of freedom per recorded step (``⌈P/B⌉``
in all with the default ``M = 2``: 2 at B=32, 1 at B=128), so its ``S`` is far noisier than the
probe's 63; ask for more with ``task.probe_microbatches``, at the cost above.

**Derived entries.** The cosine and the mean-gradient norm of the observation refer to a probe of
``P = task.probe_size`` examples, so that their meaning does not change with the batch size. They
are formed from the estimates above under the noise model the baselines use
(``arbiter_env.baselines.adaptive``): ``E[g_A·g_B] = |G|²`` and ``E‖g_A‖² = |G|² + tr(Σ)/(P/2)`` for
two independent halves, so ``half_batch_cosine = G/(G + 2S/P)`` (a ratio of unbiased estimates),
and ``mean_grad_norm = sqrt(G + S/P)`` (the root of an unbiased estimate of ``E‖ḡ_P‖²``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from arbiter_env.training.stats import MIN_GRAD_SQ_NORM, GradientStatistics

MAX_PENDING_ELEMENTS = 1 << 22
"""Kept activations, output gradients and ``.grad`` references (in elements) above which the
Linear recorder reduces what it holds, so memory stays bounded on long intervals."""

DEFAULT_MICROBATCHES = 2
"""Micro-batches per recorded step for networks that are not made of ``nn.Linear`` only (unless
``task.probe_microbatches`` says otherwise). Two keep the cost low: each micro-batch runs the
convolutions on a smaller batch, where they run less efficiently (what a split step costs is
measured in ``benchmarks/RESULTS.md``, "Timings that comments in the code point to")."""


@dataclass
class StepSums:
    """Per-step sums of one interval, as host floats (see the module docstring)."""

    examples: list[int]
    """``n_t``, the examples in the step's estimator."""
    units: list[int]
    """``U_t``, the units (examples or micro-batches) of the step."""
    unit_sq_norm_sums: list[float]
    """``Σ_j ‖s_j‖²``, the squared norms of the unit gradient sums."""
    mean_grad_sq_norms: list[float]
    """``‖ḡ_t‖²``, the squared norm of the step's mean gradient."""

    @classmethod
    def concatenate(cls, parts: list[StepSums]) -> StepSums:
        """The steps of several :class:`StepSums`, in order."""
        return cls(
            [n for p in parts for n in p.examples],
            [u for p in parts for u in p.units],
            [q for p in parts for q in p.unit_sq_norm_sums],
            [m for p in parts for m in p.mean_grad_sq_norms],
        )


def statistics_from_steps(sums: StepSums, reference_size: int) -> GradientStatistics | None:
    """The interval's :class:`GradientStatistics` from per-step sums.

    ``None`` without any step of two units or more. ``reference_size`` is the ``P`` of the derived
    entries.
    """
    weight_total = trace_sum = grad_sum = 0.0
    examples = 0
    for n, units, unit_sq, mean_sq in zip(
        sums.examples, sums.units, sums.unit_sq_norm_sums, sums.mean_grad_sq_norms, strict=True
    ):
        if units < 2:
            continue
        unit = n // units
        trace = unit * units / (units - 1) * (unit_sq / (unit**2 * units) - mean_sq)
        weight = units - 1
        weight_total += weight
        trace_sum += weight * trace
        grad_sum += weight * (mean_sq - trace / n)
        examples += n
    if weight_total == 0:
        return None
    trace = trace_sum / weight_total
    grad_sq = grad_sum / weight_total
    clamped = max(grad_sq, MIN_GRAD_SQ_NORM)
    positive_trace = max(trace, 0.0)
    half = reference_size / 2
    return GradientStatistics(
        grad_sq_norm=clamped,
        trace_covariance=positive_trace,
        noise_scale=positive_trace / clamped,
        half_batch_cosine=grad_sq / max(grad_sq + positive_trace / half, 1e-30)
        if grad_sq > 0
        else 0.0,
        mean_grad_norm=math.sqrt(max(grad_sq + positive_trace / reference_size, 0.0)),
        probe_size=reference_size,
    )


def linear_layers_of(model: nn.Module) -> list[nn.Linear] | None:
    """The ``nn.Linear`` layers when they hold every trainable parameter, else ``None``."""
    layers = []
    for module in model.modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            if not isinstance(module, nn.Linear):
                return None
            layers.append(module)
    return layers or None


def relu_mlp_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of the built-in MLP, else ``None``.

    That is an ``nn.Sequential`` of ``[Flatten,] (Linear, ReLU)*, Linear``.
    """
    if type(model) is not nn.Sequential or model._forward_hooks or model._forward_pre_hooks:
        return None
    modules = list(model)
    if modules and type(modules[0]) is nn.Flatten:
        if (modules[0].start_dim, modules[0].end_dim) != (1, -1):
            return None
        modules = modules[1:]
    if not modules or len(modules) % 2 != 1:
        return None
    layers = modules[0::2]
    if not all(type(m) is nn.Linear and m.bias is not None for m in layers):
        return None
    if not all(type(m) is nn.ReLU for m in modules[1::2]):
        return None
    return cast(list[nn.Linear], layers)


SMALL_PRODUCT = 400
"""ATen's CPU ``bmm``/``baddbmm`` use a plain loop, not BLAS, when ``rows·cols·inner < 400``,
and so round differently from ``mm``; such small products are done matrix by matrix."""


def batched_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a[k] @ b[k]`` for each k, rounded as ``torch.mm`` rounds each product."""
    if a.shape[1] * a.shape[2] * b.shape[2] < SMALL_PRODUCT and not a.is_cuda:
        return torch.stack([torch.mm(a[k], b[k]) for k in range(a.shape[0])])
    return torch.bmm(a, b)


def mean_loss_output_gradient(
    log_probs: torch.Tensor, targets: torch.Tensor, batch: int | None = None
) -> torch.Tensor:
    """Gradient of the batch-mean cross-entropy at the logits.

    For ``(..., R, C)`` log-probabilities, computed with the kernels autograd runs (``nll_loss``
    then ``log_softmax`` backward). ``batch`` is the size B of the batch whose mean the loss is
    (default ``R``): the rows may be the first ``R`` rows of a larger batch.
    """
    index = targets.unsqueeze(-1)
    size = log_probs.shape[-2] if batch is None else batch
    fill = _minus_one_over(size, log_probs.dtype, log_probs.device)
    nll_grad = torch.zeros_like(log_probs).scatter_(-1, index, fill.expand(index.shape))
    return torch.ops.aten._log_softmax_backward_data(
        nll_grad, log_probs, log_probs.dim() - 1, log_probs.dtype
    )


_FILLS: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def _minus_one_over(batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``-1/B`` as ``nll_loss``'s backward forms it (a division in ``dtype``), cached."""
    key = (batch, dtype, device)
    value = _FILLS.get(key)
    if value is None:
        if len(_FILLS) > 1024:
            _FILLS.clear()
        value = _FILLS[key] = -(torch.ones((), dtype=dtype, device=device) / batch)
    return value


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
        layers: Its ``nn.Linear`` layers (:func:`linear_layers_of`).
        max_rows: ``None`` (default): per-sample norms of every example of a step. An integer
            ``R >= 2``: of the first ``R`` rows of larger steps, scaled to the batch (unbiased,
            noisier; see the module docstring).
    """

    def __init__(self, model: nn.Module, layers: list[nn.Linear], max_rows: int | None = None):
        if max_rows is not None and max_rows < 2:
            raise ValueError(f"max_rows must be None or >= 2, got {max_rows}.")
        self.model = model
        self.layers = layers
        self.max_rows = max_rows
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
        self._reset()

    def _reset(self) -> None:
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
        self._reduced_rows: list[list[int]] = []
        self._valid = True

    def start(self) -> None:
        """Starts a new interval."""
        self._reset()

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
        self._reduced_rows.append([self._rows(n) for n in self._sizes])
        self._inputs = [[] for _ in self.layers]
        self._deltas = [[] for _ in self.layers]
        self._log_probs, self._targets, self._weights = [], [], []
        self._grads = []
        self._sizes = []
        self._pending = 0

    def _rows(self, size: int) -> int:
        """Rows of a step of ``size`` examples whose per-sample norms are formed."""
        return size if self.max_rows is None else min(size, self.max_rows)

    def _per_sample_sums(self, steps: range | list[int]) -> torch.Tensor:
        """``Σ_i ‖g_i‖²/B²`` of the given equal-size steps, as a ``(steps,)`` tensor.

        The sum runs over the first ``_rows(B)`` rows of each step.
        """
        size = self._sizes[steps[0]]
        rows = self._rows(size)

        def whole(tensors: list[torch.Tensor]) -> torch.Tensor:
            if len(steps) == 1:
                return tensors[steps[0]].unsqueeze(0)
            return torch.stack([tensors[t] for t in steps])

        def stacked(tensors: list[torch.Tensor]) -> torch.Tensor:  # per-example tensors
            return whole(tensors) if rows == size else whole(tensors)[:, :rows]

        count = len(self.layers)
        inputs = [stacked(x) for x in self._inputs]
        if self._relu_mlp:
            delta = mean_loss_output_gradient(
                stacked(self._log_probs), stacked(self._targets), size
            )
            deltas: list[torch.Tensor] = [delta] * count
            for index in range(count - 1, 0, -1):  # back through the ReLUs, as autograd does
                weight = whole([w[index - 1] for w in self._weights])
                delta = torch.ops.aten.threshold_backward(
                    batched_matmul(delta, weight), inputs[index], 0
                )
                deltas[index - 1] = delta
        else:
            deltas = [stacked(d) for d in self._deltas]
        total = None
        for layer, a, d in zip(self.layers, inputs, deltas, strict=True):
            d_sq = torch.linalg.vecdot(d, d)  # (steps, B): ‖δ_i‖²
            has_weight = layer.weight.requires_grad
            has_bias = layer.bias is not None and layer.bias.requires_grad
            # Σ_i ‖δ_i‖²‖a_i‖² for the weight, Σ_i ‖δ_i‖² for the bias.
            if has_weight and has_bias:
                term = torch.linalg.vecdot(d_sq, torch.linalg.vecdot(a, a) + 1)
            elif has_weight:
                term = torch.linalg.vecdot(d_sq, torch.linalg.vecdot(a, a))
            else:
                term = d_sq.sum(-1) if has_bias else None
            if term is not None:
                total = term if total is None else total + term
        assert total is not None
        return total

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
        examples, unit_sums, mean_sq = [], [], []
        offset = 0
        for sizes, rows in zip(self._reduced_sizes, self._reduced_rows, strict=True):
            k = len(sizes)
            # The δ are gradients of the batch *mean*: per-sample gradients are B times them.
            # A sum over R < B rows stands for the batch's by B/R (unbiased; see max_rows).
            unit_sums += [
                v * n * n if r == n else v * n * n * (n / r)
                for v, n, r in zip(values[offset : offset + k], sizes, rows, strict=True)
            ]
            mean_sq += values[offset + k : offset + 2 * k]
            examples += sizes
            offset += 2 * k
        self._reduced = []
        self._reduced_sizes = []
        self._reduced_rows = []
        return statistics_from_steps(
            StepSums(examples, examples, unit_sums, mean_sq), reference_size
        )

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
