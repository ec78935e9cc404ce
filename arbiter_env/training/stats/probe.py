"""The probe: gradient statistics on a fresh batch of ``P`` training examples.

Per-sample gradients of the probe, formed three ways (:func:`gradient_statistics`), are reduced
to sums for :func:`~arbiter_env.training.stats.estimator.statistics_from_sums`: the units are
single examples (``u = 1``), or, for the cheaper **micro-batch estimator**, ``M`` equal
micro-batches of ``m = P/M`` examples (McCandlish et al., 2018, appendix A), which needs ``M``
backward passes and no per-sample gradients but has ``M − 1`` degrees of freedom instead of
``P − 1``, so ``S`` (and |G|², B_simple) are noisier. The gradient sums of the probe's two halves
give the half-batch cosine and ``‖ḡ‖`` directly.

Per-sample gradients are formed in chunks, and only running sums are kept, so memory stays at
``chunk_size × num_parameters`` whatever the probe size.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from arbiter_env.training.network import linear_layers_of
from arbiter_env.training.stats.estimator import (
    GradientStatistics,
    StepSums,
    statistics_from_sums,
)


def gradient_statistics(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_size: int = 256,
    method: Literal["auto", "linear", "vmap", "microbatch"] = "auto",
    num_microbatches: int | None = None,
) -> GradientStatistics:
    """Measures :class:`GradientStatistics` of the cross-entropy loss on ``(inputs, targets)``.

    Two exact ways to the same numbers:

    * ``"linear"``: for networks whose parameters all sit in ``nn.Linear`` layers fed 2-D inputs,
      the per-sample gradient of a layer is the outer product ``δ_i a_iᵀ`` of the gradient at its
      output and its input (Goodfellow, 2015), so ``‖g_i‖² = ‖δ_i‖²‖a_i‖²`` and sums over samples
      are one matrix product. One forward and one backward pass of the probe, no per-sample
      tensors, so it costs less than ``vmap``.
    * ``"vmap"``: per-sample gradients with ``torch.func`` (``vmap`` of ``grad``) in chunks of
      ``chunk_size``, for any network.

    ``"auto"`` takes ``"linear"`` when the network qualifies. ``"microbatch"`` is the cheaper,
    noisier estimator of the module docstring, with ``num_microbatches`` micro-batches (an even
    number that divides the probe size; plain autograd, so it works for any network).
    ``benchmarks/statistics_cost.py`` measures what each way costs.

    The model is evaluated as it is (call ``model.eval()`` first for models with batch norm, whose
    training-mode statistics would couple the examples). Its parameters are not changed and no
    ``.grad`` is written.
    """
    probe_size = inputs.shape[0]
    if probe_size < 4:
        raise ValueError(
            f"Gradient statistics need a probe of at least 4 examples, got {probe_size}."
        )
    if method not in ("auto", "linear", "vmap", "microbatch"):
        raise ValueError(
            f"Unknown method {method!r}; use 'auto', 'linear', 'vmap' or 'microbatch'."
        )
    half = probe_size // 2
    if method == "microbatch":
        _check_microbatches(num_microbatches, probe_size)
        assert num_microbatches is not None
        unit_sums = _microbatch_gradient_sums(model, inputs, targets, num_microbatches)
        return _statistics_from_sums(unit_sums, probe_size, probe_size // num_microbatches)
    if num_microbatches is not None:
        raise ValueError("num_microbatches is only used with method='microbatch'.")
    linear_layers = linear_layers_of(model)
    if method == "linear" and linear_layers is None:
        raise ValueError("method='linear' needs a network whose parameters are all in nn.Linear.")
    sums: GradientSums | None = None
    if method != "vmap" and linear_layers is not None:
        sums = _linear_gradient_sums(model, linear_layers, inputs, targets, half)
        if sums is None and method == "linear":
            raise ValueError("method='linear' needs 2-D inputs to every nn.Linear layer.")
    if sums is None:
        sums = _vmap_gradient_sums(model, inputs, targets, half, chunk_size)
    return _statistics_from_sums(sums, probe_size, 1)


def _statistics_from_sums(
    sums: GradientSums, probe_size: int, unit_size: int
) -> GradientStatistics:
    """The statistics from :data:`GradientSums` over units of ``unit_size`` examples."""
    # One transfer (a single host-device synchronisation); the rest is host arithmetic.
    first_dot_second, first_sq, second_sq, sq_norm_total = sums.tolist()
    mean_sq_norm = (first_sq + second_sq + 2 * first_dot_second) / probe_size**2
    step = StepSums([probe_size], [probe_size // unit_size], [sq_norm_total], [mean_sq_norm])
    statistics = statistics_from_sums(
        step, probe_size, halves=(first_dot_second, first_sq, second_sq)
    )
    assert statistics is not None  # a probe has at least two units
    return statistics


GradientSums = torch.Tensor
"""Four sums, as one tensor: with ``A`` and ``B`` the sums of the per-sample gradients over the
first and the second half of the probe, ``A·B``, ``A·A``, ``B·B``, and the sum over units (single
examples, or micro-batches) of the squared norm of the unit's gradient sum."""


def _sums_of_flat_gradients(
    first: list[torch.Tensor], second: list[torch.Tensor], unit_sq_norms: torch.Tensor
) -> GradientSums:
    # Three dot products over flat vectors: a handful of kernels instead of three per parameter.
    first_flat = torch.cat([a.reshape(-1) for a in first])
    second_flat = torch.cat([b.reshape(-1) for b in second])
    return torch.stack(
        [
            first_flat.dot(second_flat),
            first_flat.dot(first_flat),
            second_flat.dot(second_flat),
            unit_sq_norms,
        ]
    )


def _check_microbatches(num_microbatches: int | None, probe_size: int) -> None:
    if (
        isinstance(num_microbatches, bool)
        or not isinstance(num_microbatches, int)
        or num_microbatches < 2
        or num_microbatches % 2
        or probe_size % num_microbatches
    ):
        raise ValueError(
            "method='microbatch' needs num_microbatches, an even number >= 2 that divides the "
            f"probe size {probe_size}; got {num_microbatches!r}."
        )


def _microbatch_gradient_sums(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, num_microbatches: int
) -> GradientSums:
    """Gradient sums of equal micro-batches, one backward pass each, as flat vectors."""
    params = [p for p in model.parameters() if p.requires_grad]
    size = inputs.shape[0] // num_microbatches
    first = second = None
    sq_norms = []
    for index in range(num_microbatches):
        rows = slice(index * size, (index + 1) * size)
        with torch.enable_grad():
            loss = F.cross_entropy(model(inputs[rows]), targets[rows], reduction="sum")
        grads = torch.autograd.grad(loss, params)
        flat = torch.cat([g.reshape(-1) for g in grads])
        sq_norms.append(flat.dot(flat))
        if index < num_microbatches // 2:
            first = flat if first is None else first + flat
        else:
            second = flat if second is None else second + flat
    assert first is not None and second is not None
    return _sums_of_flat_gradients([first], [second], torch.stack(sq_norms).sum())


def _linear_gradient_sums(
    model: nn.Module,
    layers: list[nn.Linear],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    half: int,
) -> GradientSums | None:
    """Closed-form per-sample gradient sums for networks made of ``nn.Linear`` layers."""
    layer_inputs: dict[nn.Module, torch.Tensor] = {}
    layer_outputs: dict[nn.Module, torch.Tensor] = {}

    def capture(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        layer_inputs[module] = args[0].detach()
        layer_outputs[module] = output

    handles = [layer.register_forward_hook(capture) for layer in layers]
    try:
        with torch.enable_grad():
            loss = F.cross_entropy(model(inputs), targets, reduction="sum")
    finally:
        for handle in handles:
            handle.remove()
    if len(layer_inputs) != len(layers) or any(a.dim() != 2 for a in layer_inputs.values()):
        return None  # a layer was skipped, reused or fed sequences: use the general path
    # With a summed loss, the gradient at a layer's output row i is δ_i = ∂ℓ_i/∂output_i, and the
    # per-sample gradients are g_i = δ_i a_iᵀ (weight) and δ_i (bias). Their inner products are
    # g_i·g_j = (δ_i·δ_j)(a_i·a_j) (+ δ_i·δ_j), so the P × P Gram matrix of all per-sample
    # gradients needs two small matrix products per layer, and every sum is a block of it.
    deltas = torch.autograd.grad(loss, [layer_outputs[layer] for layer in layers])
    gram = torch.zeros(inputs.shape[0], inputs.shape[0], device=inputs.device, dtype=loss.dtype)
    for layer, delta in zip(layers, deltas, strict=True):
        activation = layer_inputs[layer]
        weight = layer.weight.requires_grad
        bias = layer.bias is not None and layer.bias.requires_grad
        if weight and bias:
            gram += (delta @ delta.T) * (activation @ activation.T + 1)
        elif weight:
            gram += (delta @ delta.T) * (activation @ activation.T)
        elif bias:
            gram += delta @ delta.T
    return torch.stack(
        [
            gram[:half, half:].sum(),
            gram[:half, :half].sum(),
            gram[half:, half:].sum(),
            gram.diagonal().sum(),
        ]
    )


def _vmap_gradient_sums(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, half: int, chunk_size: int
) -> GradientSums:
    """The same sums from ``torch.func`` per-sample gradients, formed chunk by chunk."""
    params, buffers = _detached_state(model)
    first: list[torch.Tensor] | None = None
    second: list[torch.Tensor] | None = None
    sq_norm_sum = torch.zeros((), device=inputs.device, dtype=inputs.dtype)
    for start in range(0, inputs.shape[0], chunk_size):
        stop = min(start + chunk_size, inputs.shape[0])
        grads = _per_sample_grads(model, params, buffers, inputs[start:stop], targets[start:stop])
        split = max(0, min(half, stop) - start)  # rows of this chunk in the first half
        chunk_first = [g[:split].sum(0) for g in grads]
        chunk_second = [g[split:].sum(0) for g in grads]
        sq_norm_sum = sq_norm_sum + sum(g.square().sum() for g in grads)
        first = chunk_first if first is None else list(torch._foreach_add(first, chunk_first))
        second = chunk_second if second is None else list(torch._foreach_add(second, chunk_second))
    assert first is not None and second is not None
    return _sums_of_flat_gradients(first, second, sq_norm_sum)


def per_sample_gradients(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Per-sample gradients of the cross-entropy loss, flattened to ``(n, num_parameters)``."""
    params, buffers = _detached_state(model)
    grads = _per_sample_grads(model, params, buffers, inputs, targets)
    return torch.cat([g.reshape(inputs.shape[0], -1) for g in grads], dim=1)


def _detached_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    return params, buffers


def _per_sample_grads(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
) -> list[torch.Tensor]:
    def example_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    grads = vmap(grad(example_loss), in_dims=(None, 0, 0))(params, inputs, targets)
    return list(grads.values())
