"""The one estimator (arbiter_env.training.stats.estimator)."""

import math

import pytest

from arbiter_env.training.stats import GradientStatistics, StepSums, statistics_from_sums


def _measured(statistics: GradientStatistics | None) -> GradientStatistics:
    assert statistics is not None
    return statistics


def test_steps_are_weighted_by_their_degrees_of_freedom():
    # Two steps with known per-step estimates: S_1 = 2·(10/2 − 1)... computed by hand.
    sums = StepSums([2, 4], [2, 4], [10.0, 40.0], [1.0, 2.0])
    s1 = 2 / 1 * (10.0 / 2 - 1.0)  # 8
    s2 = 4 / 3 * (40.0 / 4 - 2.0)  # 32/3
    g1, g2 = 1.0 - s1 / 2, 2.0 - s2 / 4
    got = _measured(statistics_from_sums(sums, reference_size=8))
    assert got.trace_covariance == pytest.approx((1 * s1 + 3 * s2) / 4)
    assert got.grad_sq_norm == pytest.approx(max((1 * g1 + 3 * g2) / 4, 1e-12))
    assert statistics_from_sums(StepSums([1], [1], [1.0], [1.0]), 8) is None


def test_training_steps_derive_the_cosine_and_mean_norm_from_the_noise_model():
    # One step of 4 single examples: S = 4/3·(20/4 − 2) = 4, G = 2 − 4/4 = 1, at P = 8.
    got = _measured(statistics_from_sums(StepSums([4], [4], [20.0], [2.0]), reference_size=8))
    assert got.trace_covariance == pytest.approx(4.0)
    assert got.grad_sq_norm == pytest.approx(1.0)
    assert got.noise_scale == pytest.approx(4.0)
    assert got.half_batch_cosine == pytest.approx(1.0 / (1.0 + 2 * 4.0 / 8))
    assert got.mean_grad_norm == pytest.approx(math.sqrt(1.0 + 4.0 / 8))


def test_a_probe_measures_the_cosine_and_mean_norm_from_its_halves():
    # Halves A = (1, 0), B = (1, 1) of a probe of 4: ‖ḡ‖² = ‖A + B‖²/16 = 5/16.
    step = StepSums([4], [4], [3.0], [5 / 16])
    got = _measured(statistics_from_sums(step, reference_size=4, halves=(1.0, 1.0, 2.0)))
    assert got.half_batch_cosine == pytest.approx(1 / math.sqrt(2))
    assert got.mean_grad_norm == pytest.approx(math.sqrt(5 / 16))
    assert got.trace_covariance == pytest.approx(4 / 3 * (3.0 / 4 - 5 / 16))


def test_the_estimates_are_clamped_and_the_noise_scale_uses_the_clamped_values():
    # ‖ḡ‖² far below the noise: S > 0, G < 0 is clamped to 1e-12.
    got = _measured(statistics_from_sums(StepSums([4], [4], [40.0], [0.01]), reference_size=8))
    assert got.grad_sq_norm == 1e-12
    assert got.noise_scale == got.trace_covariance / 1e-12
    assert got.half_batch_cosine == 0.0
