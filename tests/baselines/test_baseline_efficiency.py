"""AdaScale's gain and Pollux's goodput against hand computations in float64."""

import math

import numpy as np
import pytest

from arbiter_env.baselines import AdaScale, Goodput
from arbiter_env.baselines.efficiency import fit_iteration_time, goodput
from arbiter_env.controllers import controller_env_defaults, run_episode
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.training.trainer import adascale_gain


def test_adascale_gain_by_hand():
    # tr(Σ) = 8 at B₀ = 4: σ² = 2; |G|² = 1; S = 4: r = (2 + 1)/(2/4 + 1) = 3/1.5 = 2.
    assert adascale_gain(4.0, 8.0, 1.0, 4) == 2.0
    # S = 2: (2 + 1)/(1 + 1) = 1.5
    assert adascale_gain(2.0, 8.0, 1.0, 4) == 1.5
    assert adascale_gain(4.0, 8.0, 0.0, 4) == pytest.approx(4.0, rel=1e-15)  # pure noise: S
    assert adascale_gain(4.0, 0.0, 1.0, 4) == 1.0  # no noise: nothing to gain
    assert adascale_gain(4.0, math.nan, 1.0, 4) == 1.0  # no measurement
    assert adascale_gain(4.0, 8.0, -3.0, 4) == pytest.approx(4.0, rel=1e-15)  # |G|² < 0 counts as 0


def test_the_adascale_rule_scales_each_interval_by_the_gain_of_the_latest_statistics(tiny_task):
    env = BatchSizeEnv(tiny_task, lr_scaling="adascale", base_batch_size=8)
    env.reset(seed=0)
    for batch_size in (32, 16):
        stats = env.trainer._gain_statistics  # what the last observation reported
        gain = adascale_gain(batch_size / 8, stats.trace_covariance, stats.grad_sq_norm, 8)
        _, _, _, _, info = env.step(env.encode(batch_size))
        assert info["lr"] == tiny_task.optimizer.lr * gain
        assert 1.0 <= gain <= batch_size / 8


def test_adascale_runs_at_scale_times_base_and_needs_the_adascale_rule(tiny_task):
    task = tiny_task.replace(batch_min=8, batch_start=16, batch_max=128)
    env = BatchSizeEnv(task, **controller_env_defaults("adascale"))
    assert set(run_episode(env, AdaScale(env, scale=4.0), seed=0).batch_sizes) == {64}
    with pytest.raises(ValueError, match="lr_scaling='adascale'"):
        AdaScale(BatchSizeEnv(task))


def test_iteration_time_fit_by_hand():
    # Two points, T(8) = 0.3 s, T(32) = 0.9 s: β = 0.6/24 = 0.025, α = 0.3 − 8·0.025 = 0.1.
    alpha, beta = fit_iteration_time(np.array([8.0, 32.0]), np.array([0.3, 0.9]))
    assert alpha == pytest.approx(0.1, abs=1e-15)
    assert beta == pytest.approx(0.025, abs=1e-15)
    # One size: all time per sample, β = Σ tB / Σ B² = (0.4·16 + 0.4·16)/(2·256) = 0.025.
    assert fit_iteration_time(np.array([16.0, 16.0]), np.array([0.4, 0.4])) == (0.0, 0.025)
    # Time falling with B: no per-sample part, α = mean time.
    assert fit_iteration_time(np.array([8.0, 32.0]), np.array([0.5, 0.3])) == (0.4, 0.0)


def test_goodput_by_hand():
    # α = 0.1, β = 0.025; tr(Σ) = 8, |G|² = 1, B₀ = 4.
    # B = 4: T = 0.2, 20 samples/s, r = 1, efficiency r·B₀/B = 1: goodput 20.
    # B = 16: T = 0.5, 32 samples/s, r = 2, efficiency 2·4/16 = 0.5: goodput 16.
    scores = goodput(np.array([4.0, 16.0]), 0.1, 0.025, 8.0, 1.0, 4)
    assert scores == pytest.approx([20.0, 16.0], rel=1e-15)
    # A large per-update overhead favours the large batch: α = 2, β = 0.025.
    # B = 4: 4/2.1·1 = 1.9048; B = 16: 16/2.4·0.5 = 3.3333.
    assert goodput(np.array([4.0, 16.0]), 2.0, 0.025, 8.0, 1.0, 4) == pytest.approx(
        [4 / 2.1, 16 / 2.4 * 0.5], rel=1e-15
    )


def test_goodput_times_base_and_probe_sizes_then_picks_from_the_ladder(tiny_task):
    task = tiny_task.replace(batch_min=8, batch_start=16, batch_max=128, num_intervals=6)
    env = BatchSizeEnv(task, **controller_env_defaults("goodput"))
    sizes = run_episode(env, Goodput(env), seed=0).batch_sizes
    assert sizes[:2] == [16, 64]
    assert all(b in env.ladder for b in sizes[2:])
