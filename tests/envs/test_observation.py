import math

import numpy as np
import pytest

from arbiter_env.envs.observation import (
    OBSERVATION_HIGH,
    OBSERVATION_INDEX,
    OBSERVATION_LOW,
    build_observation,
    observation_value,
)
from arbiter_env.training.stats import GradientStatistics

STATS = GradientStatistics(
    grad_sq_norm=1e-3,
    trace_covariance=2e-1,
    noise_scale=200.0,
    half_batch_cosine=0.25,
    mean_grad_norm=0.05,
    probe_size=64,
)
MEASUREMENTS = {
    "progress": 0.5,
    "batch_size": 32,
    "lr": 0.05,
    "train_loss": 0.4,
    "val_loss": 0.3,
    "val_accuracy": 0.9,
    "val_log_loss_change": -0.1,
}


def test_in_range_values_are_kept_and_decoded_without_raising_the_flag():
    observation = build_observation(**MEASUREMENTS, stats=STATS)
    assert observation.dtype == np.float32 and observation.shape == OBSERVATION_LOW.shape
    assert observation[OBSERVATION_INDEX["clipped"]] == 0.0
    assert observation_value(observation, "log2_batch_size") == pytest.approx(32)
    assert observation_value(observation, "log10_noise_scale") == pytest.approx(200, rel=1e-5)
    assert observation_value(observation, "val_loss") == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("val_loss", math.nan, "high"),
        ("val_loss", math.inf, "high"),
        ("val_log_loss_change", -math.inf, "low"),
        ("train_loss", 1e9, "high"),
    ],
)
def test_non_finite_or_out_of_range_values_stand_at_a_bound_and_raise_the_flag(
    name, value, expected
):
    observation = build_observation(**{**MEASUREMENTS, name: value}, stats=STATS)
    bound = OBSERVATION_HIGH if expected == "high" else OBSERVATION_LOW
    assert observation[OBSERVATION_INDEX[name]] == bound[OBSERVATION_INDEX[name]]
    assert observation[OBSERVATION_INDEX["clipped"]] == 1.0
    assert np.all(np.isfinite(observation))
