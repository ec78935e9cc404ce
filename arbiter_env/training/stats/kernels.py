"""Autograd's own backward kernels, batched over steps or population members.

Hand-written backward passes (the training-step recorder's recomputed output gradients, the
population's batched MLP) call these so that their numbers round as autograd's do on the CPU.
"""

from __future__ import annotations

import functools

import torch

SMALL_PRODUCT = 400
"""ATen's CPU ``bmm``/``baddbmm`` use a plain loop, not BLAS, when ``rows·cols·inner < 400``,
and so round differently from ``mm``; such small products are done matrix by matrix."""


def batched_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a[k] @ b[k]`` for each k, rounded as ``torch.mm`` rounds each product."""
    if a.shape[1] * a.shape[2] * b.shape[2] < SMALL_PRODUCT and not a.is_cuda:
        return torch.stack([torch.mm(a[k], b[k]) for k in range(a.shape[0])])
    return torch.bmm(a, b)


def mean_loss_output_gradient(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of the batch-mean cross-entropy at the logits.

    For ``(..., B, C)`` log-probabilities, computed with the kernels autograd runs (``nll_loss``
    then ``log_softmax`` backward).
    """
    index = targets.unsqueeze(-1)
    fill = _minus_one_over(log_probs.shape[-2], log_probs.dtype, log_probs.device)
    nll_grad = torch.zeros_like(log_probs).scatter_(-1, index, fill.expand(index.shape))
    return torch.ops.aten._log_softmax_backward_data(
        nll_grad, log_probs, log_probs.dim() - 1, log_probs.dtype
    )


@functools.lru_cache(maxsize=256)
def _minus_one_over(batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``-1/B`` as ``nll_loss``'s backward forms it (a division in ``dtype``), cached."""
    return -(torch.ones((), dtype=dtype, device=device) / batch)
