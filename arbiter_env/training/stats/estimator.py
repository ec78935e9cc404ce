"""The one estimator: gradient statistics from per-step sums (formulas in the package docstring).

A *step* is a batch of ``n`` examples split into ``U`` units of ``u = n/U`` examples (single
examples, or micro-batches) with unit gradient sums ``s_j`` and mean gradient ``ḡ``. Each step
gives unbiased ``S`` and ``G``; steps are averaged with fixed weights ``U − 1`` (inverse to the
variance of ``S``), which keeps them unbiased, and steps of a single unit are skipped.

The cosine and ``‖ḡ‖`` refer to a reference batch of ``P`` examples (``task.probe_size``), so that
their meaning does not change with the batch size. A probe measures them from the gradient sums
``A`` and ``B`` of its two halves (:data:`HalfSums`). Training steps derive them under the noise
model the baselines use (``arbiter_env.baselines.adaptive``): ``E[g_A·g_B] = |G|²`` and
``E‖g_A‖² = |G|² + tr(Σ)/(P/2)`` for independent halves, so ``cosine = G/(G + 2S/P)`` and
``‖ḡ_P‖ = sqrt(G + S/P)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_GRAD_SQ_NORM = 1e-12
"""Floor of the |G|² estimate, which can be negative when noise dominates."""


@dataclass(frozen=True)
class GradientStatistics:
    """Gradient statistics of one interval or one probe batch (see the module docstring)."""

    grad_sq_norm: float
    """Unbiased estimate |G|² of the squared true-gradient norm, clamped at ``MIN_GRAD_SQ_NORM``."""
    trace_covariance: float
    """Unbiased estimate S of tr(Σ), the trace of the per-sample gradient covariance."""
    noise_scale: float
    """Simple noise scale B_simple = tr(Σ)/|G|²."""
    half_batch_cosine: float
    """Cosine between the mean gradients of two halves of a reference batch."""
    mean_grad_norm: float
    """‖ḡ‖, the norm of a reference batch's mean gradient."""
    probe_size: int
    """``P``, the size of that reference batch."""

    def as_dict(self) -> dict[str, float]:
        """The fields as a plain dict."""
        # Not dataclasses.asdict, which deep-copies field by field on every environment step.
        return dict(self.__dict__)


@dataclass
class StepSums:
    """Per-step sums, as host floats, one list entry per step."""

    examples: list[int]
    """``n``, the examples in the step's estimator."""
    units: list[int]
    """``U``, the units (examples or micro-batches) of the step."""
    unit_sq_norm_sums: list[float]
    """``Σ_j ‖s_j‖²``, the squared norms of the unit gradient sums."""
    mean_grad_sq_norms: list[float]
    """``‖ḡ‖²``, the squared norm of the step's mean gradient."""

    @classmethod
    def concatenate(cls, parts: list[StepSums]) -> StepSums:
        """The steps of several :class:`StepSums`, in order."""
        return cls(
            [n for p in parts for n in p.examples],
            [u for p in parts for u in p.units],
            [q for p in parts for q in p.unit_sq_norm_sums],
            [m for p in parts for m in p.mean_grad_sq_norms],
        )


HalfSums = tuple[float, float, float]
"""``(A·B, A·A, B·B)`` for the gradient sums ``A`` and ``B`` of the two halves of a probe."""


def statistics_from_sums(
    sums: StepSums, reference_size: int, halves: HalfSums | None = None
) -> GradientStatistics | None:
    """:class:`GradientStatistics` from per-step sums (see the module docstring).

    Args:
        sums: The steps' sums.
        reference_size: ``P``, the reference batch of the cosine and the mean-gradient norm.
        halves: The probe's half-batch sums; then the cosine and the mean-gradient norm are
            measured (``sums`` must hold the one probe step), else derived from the estimates.

    Returns:
        ``None`` without any step of two units or more.
    """
    weight_total = trace_sum = grad_sum = 0.0
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
    if weight_total == 0:
        return None
    trace = trace_sum / weight_total
    grad_sq = grad_sum / weight_total
    clamped = max(grad_sq, MIN_GRAD_SQ_NORM)
    positive_trace = max(trace, 0.0)
    if halves is not None:
        first_dot_second, first_sq, second_sq = halves
        cosine = first_dot_second / max(math.sqrt(first_sq) * math.sqrt(second_sq), 1e-30)
        mean_grad_norm = math.sqrt(max(sums.mean_grad_sq_norms[0], 0.0))
    else:
        half = reference_size / 2
        cosine = grad_sq / max(grad_sq + positive_trace / half, 1e-30) if grad_sq > 0 else 0.0
        mean_grad_norm = math.sqrt(max(grad_sq + positive_trace / reference_size, 0.0))
    return GradientStatistics(
        grad_sq_norm=clamped,
        trace_covariance=positive_trace,
        noise_scale=positive_trace / clamped,
        half_batch_cosine=cosine,
        mean_grad_norm=mean_grad_norm,
        probe_size=reference_size,
    )


def linear_statistics(
    sizes: list[int], delta_sq_sums: list[float], mean_sq: list[float], reference_size: int
) -> GradientStatistics | None:
    """The statistics of steps of ``nn.Linear`` networks from their output-gradient sums.

    ``delta_sq_sums`` are ``Σ_i ‖δ_i‖²(‖a_i‖² + 1)`` summed over layers, with ``δ`` the gradient
    of the batch-*mean* loss: a per-sample gradient is ``B·δ_i a_iᵀ``, so each sum is scaled by
    ``B²`` (see :func:`~arbiter_env.training.stats.steps.linear_sq_norm_sum`).
    """
    unit_sums = [v * n * n for v, n in zip(delta_sq_sums, sizes, strict=True)]
    return statistics_from_sums(StepSums(sizes, sizes, unit_sums, mean_sq), reference_size)
