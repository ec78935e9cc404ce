"""Hypergradient descent of the learning rate: SGD-HD and Adam-HD (Baydin et al., 2018).

Baydin, Cornish, Martínez Rubio, Schmidt and Wood, "Online Learning Rate Adaptation with
Hypergradient Descent", ICLR 2018 (arXiv:1703.04782).

Both optimizers take a step ``θ_t = θ_{t-1} − α_t·d_t`` along a direction ``d_t`` (the gradient for
SGD, the momentum buffer with momentum, ``m̂_t/(√v̂_t + ε)`` for Adam). Since
``∂θ_{t-1}/∂α = −d_{t-1}``, the derivative of the loss with respect to the learning rate is
``−g_t·d_{t-1}``, and one step of gradient descent on α with rate β gives::

    h_t = g_t · d_{t-1}            (the hypergradient; d_0 = 0, so h_1 = 0)
    α_t = α_{t-1} + β · h_t
    θ_t = θ_{t-1} − α_t · d_t

For plain SGD that is the paper's ``α_t = α_{t-1} + β ∇f(θ_{t-1})·∇f(θ_{t-2})``; with momentum it is
what the authors' reference implementation does (``d`` is the momentum buffer).

The learning rate lives in ``param_groups[i]["lr"]`` like every ``torch.optim`` optimizer, so code
that writes it there (the inner trainer's ``lr_scaling``, schedules calling
``BatchSizeEnv.set_learning_rate``) restarts the adaptation from the written value, and code that
reads it sees the adapted value. Each parameter group adapts its own α from the dot product over
its own parameters. ``last_hypergradient`` holds the latest ``h_t`` of the first group (and
``last_hypergradients`` those of all groups), so experiments can measure its variance.

Reading ``h_t`` into a Python float costs one device synchronisation per step; on the CPU that is
free, and on a GPU it is the price of keeping ``lr`` a plain number as the rest of PyTorch expects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

SGD_HD_HYPERGRADIENT_LR = 1e-3
"""β of the paper's SGD-HD and SGDN-HD experiments (Baydin et al., 2018, Sec. 5)."""
ADAM_HD_HYPERGRADIENT_LR = 1e-7
"""β of the paper's Adam-HD experiments (Baydin et al., 2018, Sec. 5)."""


class _HypergradientOptimizer(Optimizer):
    """Shared bookkeeping: the hypergradient step on each group's learning rate."""

    last_hypergradients: list[float]

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        hypergradient_lr: float,
        weight_decay: float,
        min_lr: float,
        **defaults: Any,
    ):
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"lr must be finite and >= 0, got {lr}.")
        if not (math.isfinite(hypergradient_lr) and hypergradient_lr >= 0):
            raise ValueError(
                f"hypergradient_lr (β) must be finite and >= 0, got {hypergradient_lr}; "
                "0 turns hypergradient descent off."
            )
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
        if not (math.isfinite(min_lr) and min_lr >= 0):
            raise ValueError(f"min_lr must be finite and >= 0, got {min_lr}.")
        defaults |= dict(
            lr=lr, hypergradient_lr=hypergradient_lr, weight_decay=weight_decay, min_lr=min_lr
        )
        super().__init__(params, defaults)
        self.last_hypergradients = [0.0] * len(self.param_groups)

    @property
    def last_hypergradient(self) -> float:
        """``h_t`` of the latest step in the first parameter group (0 before the second step)."""
        return self.last_hypergradients[0]

    def _adapt_lr(self, index: int, group: dict[str, Any], grads: list[torch.Tensor]) -> float:
        """Computes ``h_t = g_t·d_{t-1}`` over the group and updates its learning rate."""
        products = [
            torch.sum(grad * self.state[p]["hd_direction"])
            for p, grad in zip(_with_grad(group), grads, strict=True)
            if "hd_direction" in self.state[p]
        ]
        h = float(torch.stack(products).sum()) if products else 0.0
        if index >= len(self.last_hypergradients):  # groups added with add_param_group
            self.last_hypergradients.extend([0.0] * (index + 1 - len(self.last_hypergradients)))
        self.last_hypergradients[index] = h
        # No clamp in the paper; a negative rate would turn descent into ascent, hence min_lr.
        group["lr"] = max(group["lr"] + group["hypergradient_lr"] * h, group["min_lr"])
        return group["lr"]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            grads = _gradients(group)
            lr = self._adapt_lr(index, group, grads)
            for p, grad in zip(_with_grad(group), grads, strict=True):
                state = self.state[p]
                direction = self._direction(group, state, grad)
                state["hd_direction"] = direction
                p.add_(direction, alpha=-lr)
        return loss

    def _direction(
        self, group: dict[str, Any], state: dict[str, Any], grad: torch.Tensor
    ) -> torch.Tensor:
        """This step's direction ``d_t`` for one parameter, a tensor the caller may keep."""
        raise NotImplementedError


def _with_grad(group: dict[str, Any]) -> list[torch.Tensor]:
    return [p for p in group["params"] if p.grad is not None]


def _gradients(group: dict[str, Any]) -> list[torch.Tensor]:
    grads = []
    for p in group["params"]:
        grad = p.grad
        if grad is None:
            continue
        if grad.is_sparse:
            raise ValueError("Hypergradient optimizers do not support sparse gradients.")
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        grads.append(grad)
    return grads


class SGDHD(_HypergradientOptimizer):
    """SGD whose learning rate follows hypergradient descent (SGD-HD; SGDN-HD with momentum).

    Args:
        params: Parameters or parameter groups.
        lr: Initial learning rate α₀.
        hypergradient_lr: β, the learning rate of α. Default 1e-3, the paper's value for SGD-HD
            (Sec. 5); the authors' PyTorch code defaults to 1e-6. β scales with 1/‖g‖², so tune
            it per task.
        momentum: Heavy-ball momentum μ; the direction is ``v_t = μ v_{t-1} + g_t`` (PyTorch's
            convention), and the hypergradient uses it as ``d``.
        nesterov: Nesterov momentum, ``d_t = g_t + μ v_t``.
        weight_decay: L2 penalty added to the gradient.
        min_lr: Floor of the adapted learning rate (default 0: never ascend).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        hypergradient_lr: float = SGD_HD_HYPERGRADIENT_LR,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        min_lr: float = 0.0,
    ):
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}.")
        if nesterov and momentum == 0:
            raise ValueError(
                "Nesterov momentum needs momentum > 0; set momentum or nesterov=False."
            )
        super().__init__(
            params, lr, hypergradient_lr, weight_decay, min_lr, momentum=momentum, nesterov=nesterov
        )

    def _direction(
        self, group: dict[str, Any], state: dict[str, Any], grad: torch.Tensor
    ) -> torch.Tensor:
        momentum = group["momentum"]
        if momentum == 0:
            return grad.clone()  # kept as the next step's d_{t-1}; grad may be p.grad itself
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = grad.detach().clone()
        else:
            state["momentum_buffer"].mul_(momentum).add_(grad)
        buffer = state["momentum_buffer"]
        return grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer.clone()


class AdamHD(_HypergradientOptimizer):
    """Adam whose learning rate follows hypergradient descent (Adam-HD).

    The direction is Adam's ``d_t = m̂_t/(√v̂_t + ε)`` with bias-corrected moments, so
    ``h_t = g_t · m̂_{t-1}/(√v̂_{t-1} + ε)`` as in the paper's Algorithm (Adam-HD).

    Args:
        params: Parameters or parameter groups.
        lr: Initial learning rate α₀ (paper: 1e-3).
        hypergradient_lr: β. Default 1e-7, the paper's value for Adam-HD (Sec. 5); the authors'
            PyTorch README suggests 1e-8.
        betas: Adam's moment coefficients.
        eps: Adam's ε.
        weight_decay: L2 penalty added to the gradient (Adam, not AdamW).
        min_lr: Floor of the adapted learning rate (default 0: never ascend).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        hypergradient_lr: float = ADAM_HD_HYPERGRADIENT_LR,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        min_lr: float = 0.0,
    ):
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must both be in [0, 1), got {betas}.")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}.")
        super().__init__(
            params, lr, hypergradient_lr, weight_decay, min_lr, betas=tuple(betas), eps=eps
        )

    def _direction(
        self, group: dict[str, Any], state: dict[str, Any], grad: torch.Tensor
    ) -> torch.Tensor:
        beta1, beta2 = group["betas"]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(grad)
            state["exp_avg_sq"] = torch.zeros_like(grad)
        state["step"] += 1
        step = state["step"]
        state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = state["exp_avg"] / (1 - beta1**step)
        v_hat = state["exp_avg_sq"] / (1 - beta2**step)
        return m_hat / (v_hat.sqrt() + group["eps"])


__all__ = ["ADAM_HD_HYPERGRADIENT_LR", "SGDHD", "SGD_HD_HYPERGRADIENT_LR", "AdamHD"]
