"""Gradient statistics of the inner network, from per-sample gradients (``torch.func``).

With per-sample gradients ``g_i`` on a probe batch of size ``P`` and mean ``ḡ``:

* ``S = P/(P-1) · (mean‖g_i‖² − ‖ḡ‖²)`` is an unbiased estimate of ``tr(Σ)``, the trace of the
  per-sample gradient covariance;
* ``|G|² ≈ ‖ḡ‖² − S/P`` is an unbiased estimate of the squared norm of the true gradient,
  clamped at a small positive number;
* ``B_simple = tr(Σ)/|G|²`` is the simple gradient noise scale of McCandlish et al. (2018);
* the cosine between the mean gradients of the two halves of the probe batch (SimiGrad).

Per-sample gradients are formed in chunks, and only running sums are kept, so memory stays at
``chunk_size × num_parameters`` whatever the probe size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

MIN_GRAD_SQ_NORM = 1e-12
"""Floor of the |G|² estimate, which can be negative when noise dominates the probe."""


@dataclass(frozen=True)
class GradientStatistics:
    """Gradient statistics measured on one probe batch (see the module docstring)."""

    grad_sq_norm: float
    """Unbiased estimate |G|² of the squared true-gradient norm, clamped at ``MIN_GRAD_SQ_NORM``."""
    trace_covariance: float
    """Unbiased estimate S of tr(Σ), the trace of the per-sample gradient covariance."""
    noise_scale: float
    """Simple noise scale B_simple = tr(Σ)/|G|²."""
    half_batch_cosine: float
    """Cosine between the mean gradients of the two halves of the probe batch."""
    mean_grad_norm: float
    """‖ḡ‖, the norm of the probe batch's mean gradient."""
    probe_size: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def gradient_statistics(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_size: int = 256,
) -> GradientStatistics:
    """Measures :class:`GradientStatistics` of the cross-entropy loss on ``(inputs, targets)``.

    The model is evaluated as it is (call ``model.eval()`` first for models with batch norm, whose
    training-mode statistics would couple the examples). Its parameters are not changed and no
    ``.grad`` is written.
    """
    probe_size = inputs.shape[0]
    if probe_size < 4:
        raise ValueError(
            f"Gradient statistics need a probe of at least 4 examples, got {probe_size}."
        )
    half = probe_size // 2
    params, buffers = _detached_state(model)
    # Running sums per parameter tensor: no (P × num_parameters) matrix is ever concatenated.
    first = second = None
    sq_norm_sum = torch.zeros((), device=inputs.device, dtype=inputs.dtype)
    for start in range(0, probe_size, chunk_size):
        stop = min(start + chunk_size, probe_size)
        grads = _per_sample_grads(model, params, buffers, inputs[start:stop], targets[start:stop])
        split = max(0, min(half, stop) - start)  # rows of this chunk in the first half
        chunk_first = [g[:split].sum(0) for g in grads]
        chunk_second = [g[split:].sum(0) for g in grads]
        sq_norm_sum = sq_norm_sum + sum(g.square().sum() for g in grads)
        first = (
            chunk_first
            if first is None
            else [a + b for a, b in zip(first, chunk_first, strict=True)]
        )
        second = (
            chunk_second
            if second is None
            else [a + b for a, b in zip(second, chunk_second, strict=True)]
        )
    assert first is not None and second is not None
    first_dot_second = sum((a * b).sum() for a, b in zip(first, second, strict=True))
    first_sq = sum(a.square().sum() for a in first)
    second_sq = sum(b.square().sum() for b in second)

    mean_sq_norm = (first_sq + second_sq + 2 * first_dot_second) / probe_size**2
    mean_of_sq_norms = sq_norm_sum / probe_size
    trace_cov = probe_size / (probe_size - 1) * (mean_of_sq_norms - mean_sq_norm)
    grad_sq = (mean_sq_norm - trace_cov / probe_size).clamp_min(MIN_GRAD_SQ_NORM)
    cosine = first_dot_second / (first_sq.sqrt() * second_sq.sqrt()).clamp_min(1e-30)
    # One transfer for all numbers: a single host-device synchronisation.
    values = torch.stack([grad_sq, trace_cov, cosine, mean_sq_norm]).double().cpu().tolist()
    grad_sq_v, trace_v, cosine_v, mean_sq_v = values
    trace_v = max(trace_v, 0.0)
    return GradientStatistics(
        grad_sq_norm=grad_sq_v,
        trace_covariance=trace_v,
        noise_scale=trace_v / grad_sq_v,
        half_batch_cosine=cosine_v,
        mean_grad_norm=math.sqrt(max(mean_sq_v, 0.0)),
        probe_size=probe_size,
    )


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
