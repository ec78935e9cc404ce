"""Gradient statistics of the inner network: one estimator, three sources of sums.

**Where does the observation's |G|² come from?** Always from
:func:`~arbiter_env.training.stats.estimator.statistics_from_sums`. For a step of ``n`` examples
in ``U`` units of ``u`` examples (single examples or micro-batches) with unit gradient sums
``s_j`` and mean gradient ``ḡ``, it forms DESIGN.md §4's unbiased estimates

* ``S = u·U/(U−1)·(mean_j ‖s_j/u‖² − ‖ḡ‖²)`` of tr(Σ) (with ``u = 1``: ``(B/(B−1))·(mean‖g_i‖² −
  ‖ḡ‖²)``) and ``|G|² = ‖ḡ‖² − S/n``, averaged over steps with weights ``U − 1``; ``|G|²`` is
  clamped at a small positive number and ``S`` at 0;
* ``B_simple = tr(Σ)/|G|²``, and the half-batch cosine and ``‖ḡ‖`` of a reference batch of
  ``task.probe_size`` examples.

Which source feeds it the sums:

* :mod:`~arbiter_env.training.stats.steps` (the default, ``gradient_statistics="training"``): the
  interval's last full training steps, at least ``task.probe_size`` examples. ``nn.Linear``
  networks give per-sample norms in closed form (:class:`~.steps.LinearStepRecorder`); other
  deterministic per-example networks back-propagate a recorded step as micro-batches
  (:func:`~.steps.microbatch_backward`).
* :mod:`~arbiter_env.training.stats.probe` (``gradient_statistics="probe"``, the first observation
  after ``reset``, and the fallback for batch norm, dropout outside ``nn.Linear`` networks, or intervals without a usable step): a fresh
  batch of ``task.probe_size`` examples, with ``torch.func`` per-sample gradients (``vmap``), the
  closed form for ``nn.Linear`` networks, or the micro-batch estimator
  (``task.probe_microbatches``). Only the probe measures the half-batch cosine directly; the
  other sources derive it from ``S`` and ``|G|²``.
* The population's batched MLP (:func:`arbiter_env.vector.batched.mlp_loss_and_grads`): the same
  per-sample norms as the ``nn.Linear`` recorder (:func:`~.steps.linear_sq_norm_sum`), for all
  members at once, read back through :func:`~.estimator.linear_statistics`.

:mod:`~arbiter_env.training.stats.kernels` holds the autograd kernels the hand-written backward
passes share. ``benchmarks/perf.py --breakdown`` measures what the statistics cost per interval,
``benchmarks/statistics_cost.py`` what each probe method costs.
"""

from arbiter_env.training.stats.estimator import (
    MIN_GRAD_SQ_NORM,
    GradientStatistics,
    StepSums,
    linear_statistics,
    statistics_from_sums,
)
from arbiter_env.training.stats.probe import gradient_statistics, per_sample_gradients
from arbiter_env.training.stats.steps import (
    DEFAULT_MICROBATCHES,
    LinearStepRecorder,
    linear_sq_norm_sum,
    microbatch_backward,
)

__all__ = [
    "DEFAULT_MICROBATCHES",
    "MIN_GRAD_SQ_NORM",
    "GradientStatistics",
    "LinearStepRecorder",
    "StepSums",
    "gradient_statistics",
    "linear_sq_norm_sum",
    "linear_statistics",
    "microbatch_backward",
    "per_sample_gradients",
    "statistics_from_sums",
]
