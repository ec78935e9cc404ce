"""Tests of arbiter-la v2 (arbiter_env.agents.arbiter_la_v2): its model, calibration and decisions."""

import itertools
import math

import numpy as np
import pytest
import torch

from arbiter_env.agents.arbiter_la_v2 import (
    ArbiterLAv2,
    ArbiterLAv2Config,
    ResponseCalibration,
    heavy_ball_contraction,
    heavy_ball_stationary_loss,
)
from arbiter_env.controllers import make_controller, run_episode
from arbiter_env.envs.batch_size import BatchSizeEnv

MOMENTA = (0.0, 0.5, 0.9)
# Fractions of the stable range 0 < ηh < 2(1 + μ).
STABLE_FRACTIONS = (0.05, 0.3, 0.6, 0.9, 0.97)


def _simulate(lr: float, h: float, mu: float, sigma: float, steps: int, chains: int, seed: int):
    """Heavy ball x ← x − η(hx + ξ) + μ(x − x_prev) on a 1-D quadratic, float64, many chains."""
    rng = np.random.default_rng(seed)
    x = np.zeros(chains)
    previous = np.zeros(chains)
    losses = []
    for t in range(steps):
        new = x - lr * (h * x + sigma * rng.standard_normal(chains)) + mu * (x - previous)
        previous, x = x, new
        if t >= steps // 2:
            losses.append(0.5 * h * np.mean(x * x))
    return float(np.mean(losses))


@pytest.mark.parametrize("mu", MOMENTA)
@pytest.mark.parametrize("fraction", STABLE_FRACTIONS)
def test_stationary_loss_matches_a_simulated_noisy_quadratic(mu, fraction):
    lr, sigma = 0.05, 1.0
    h = fraction * 2 * (1 + mu) / lr
    simulated = _simulate(lr, h, mu, sigma, steps=6000, chains=400, seed=0)
    predicted = float(heavy_ball_stationary_loss(lr, h, mu, sigma**2))
    assert predicted == pytest.approx(simulated, rel=0.08)


@pytest.mark.parametrize("mu", MOMENTA)
@pytest.mark.parametrize("fraction", STABLE_FRACTIONS)
def test_contraction_is_the_slowest_mode_of_the_heavy_ball_step(mu, fraction):
    lr_h = fraction * 2 * (1 + mu)
    # One noiseless heavy-ball step maps (x_t, x_{t-1}) by this matrix; its spectral radius is
    # the slowest mode's per-step contraction of |x|, squared for the loss.
    step = np.array([[1 + mu - lr_h, -mu], [1.0, 0.0]], dtype=np.float64)
    radius = float(np.max(np.abs(np.linalg.eigvals(step))))
    contraction = heavy_ball_contraction(torch.tensor(lr_h, dtype=torch.float64), mu)
    assert float(contraction) == pytest.approx(radius**2, rel=1e-9)


@pytest.mark.parametrize("mu", MOMENTA)
def test_heavy_ball_diverges_exactly_beyond_two_times_one_plus_momentum(mu):
    edge = 2 * (1 + mu)
    assert float(heavy_ball_contraction(torch.tensor(0.999 * edge), mu)) < 1
    assert float(heavy_ball_contraction(torch.tensor(1.001 * edge), mu)) > 1
    assert math.isinf(float(heavy_ball_stationary_loss(1.0, 1.001 * edge, mu, 1.0)))


def test_at_zero_momentum_the_model_is_v1s_plain_sgd():
    lr_h = torch.tensor([0.1, 0.7, 1.5])
    assert torch.allclose(heavy_ball_contraction(lr_h, 0.0), (1 - lr_h.double()) ** 2)
    lr, h, variance = 0.05, 20.0, 3.0
    v1 = lr * variance / (2 * (2 - lr * h))
    assert float(heavy_ball_stationary_loss(lr, h, 0.0, variance)) == pytest.approx(v1)


def _progress(fraction: np.ndarray) -> np.ndarray:
    """A saturating progress model: at most the reducible fraction of a unit loss."""
    return -fraction * (1 - np.exp(-0.2 / fraction))


def _calibration(strength: float) -> ResponseCalibration:
    return ResponseCalibration(
        np.geomspace(1e-3, 1.0, 25), strength=strength, decay=0.7, noise_range=(0.05, 2.0)
    )


def test_calibration_starts_at_the_uncalibrated_model():
    calibration = _calibration(1.0)
    assert (calibration.fraction, calibration.noise_scale) == (1.0, 1.0)


def test_calibration_recovers_the_fraction_and_noise_scale_behind_the_measurements():
    calibration = _calibration(strength=1e-3)
    true_fraction, true_noise_scale = calibration.grid[8], 0.3
    for t in range(30):
        noise = [0.05, -0.03, 0.08][t % 3]  # the played size changes: κ is identified
        measured = float(_progress(np.array(true_fraction))) + true_noise_scale * noise
        calibration.update(_progress(calibration.grid), noise, measured, val_loss=1.0)
    assert calibration.fraction == pytest.approx(true_fraction, rel=1e-6)
    assert calibration.noise_scale == pytest.approx(true_noise_scale, rel=1e-3)


def test_without_a_change_of_size_the_noise_scale_stays_at_its_prior():
    calibration = _calibration(strength=1.0)
    for _ in range(10):
        calibration.update(_progress(calibration.grid), 0.0, -0.01, val_loss=1.0)
    assert calibration.noise_scale == pytest.approx(1.0)
    assert calibration.fraction < 0.5  # the small measured progress says little is reducible


def _env(**kwargs):
    return BatchSizeEnv("synthetic-teacher", action_encoding="continuous", **kwargs)


def test_measurement_passes_stay_within_a_quarter_of_the_update_passes():
    for task in ("synthetic-teacher", "digits-mlp"):
        env = BatchSizeEnv(task, action_encoding="continuous")
        agent = make_controller("arbiter-la", env, seed=0, decision="argmin")
        run_episode(env, agent, seed=0)
        assert len(agent.measurement_passes) == env.task.num_intervals
        for measured, updates in zip(agent.measurement_passes, agent.update_passes, strict=True):
            assert 0 < measured <= 0.25 * updates


def test_argmin_moves_at_most_one_rung_per_interval_and_stays_on_the_ladder():
    env = _env()
    agent = make_controller("arbiter-la", env, seed=1, decision="argmin")
    record = run_episode(env, agent, seed=1)
    sizes = [int(env.task.batch_start), *record.batch_sizes]
    for before, after in itertools.pairwise(sizes):
        assert before / 2 <= after <= 2 * before
    assert set(record.batch_sizes[1:]) <= set(agent.ladder)


@pytest.mark.parametrize("decision", ["alpha", "argmin"])
@pytest.mark.parametrize("start", [8, 100, 512])
def test_any_starting_size_on_or_off_the_ladder_runs_without_diverging(start, decision):
    env = BatchSizeEnv(
        "synthetic-teacher", action_encoding="continuous", task_kwargs={"batch_start": start}
    )
    agent = make_controller("arbiter-la", env, seed=2, decision=decision)
    record = run_episode(env, agent, seed=2)
    assert not record.diverged
    if decision == "argmin":  # it joins the ladder at its first decision
        assert set(record.batch_sizes[1:]) <= set(agent.ladder)


def test_same_seeds_give_the_same_schedule():
    schedules = []
    for _ in range(2):
        env = _env()
        schedules.append(
            run_episode(env, make_controller("arbiter-la", env, seed=4), 4).batch_sizes
        )
    assert schedules[0] == schedules[1]


@pytest.mark.parametrize("decision", ["alpha", "argmin"])
def test_the_guard_doubles_the_size_after_a_blow_up_and_never_goes_below_it(decision):
    env = _env()
    agent = ArbiterLAv2(env, seed=0, decision=decision)
    observation, _ = env.reset(seed=0)
    agent.on_episode_start(observation)
    agent.choose_batch_size(observation)
    observation, *_ = env.step(env.encode(32))
    blown = observation.copy()
    blown[4] = observation[4] * 2.0  # val_loss doubled: a log increase of 0.69 > 0.2
    assert agent.choose_batch_size(blown) == 64
    assert agent.decisions[-1][2] == "guard"
    observation, *_ = env.step(env.encode(64))
    assert agent.choose_batch_size(observation) >= 64


def test_the_default_alpha_decision_runs_the_papers_machinery_on_the_v2_model():
    env = _env()
    agent = make_controller("arbiter-la", env, seed=0)
    record = run_episode(env, agent, seed=0)
    assert len(record.batch_sizes) == env.task.num_intervals
    assert any(kind == "arbiter" for _, _, kind in agent.decisions)


def test_v1_stays_reachable_by_name():
    env = _env()
    assert type(make_controller("arbiter-la-v1", env, seed=0)).__name__ == "ArbiterLA"
    assert isinstance(make_controller("arbiter-la", env, seed=0), ArbiterLAv2)


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="decision"):
        ArbiterLAv2Config(decision="best")
    with pytest.raises(ValueError, match="calibration_min"):
        ArbiterLAv2Config(calibration_min=0.0)
    with pytest.raises(ValueError, match="noise_scale_range"):
        ArbiterLAv2Config(noise_scale_range=(2.0, 3.0))


@pytest.mark.parametrize("name", ["arbiter-la", "arbiter-la-v1"])
def test_adascale_learning_rates_are_refused_with_the_rules_the_model_knows(name):
    env = BatchSizeEnv("synthetic-teacher", lr_scaling="adascale")
    with pytest.raises(ValueError, match="'adascale' depends on the measured gradient noise"):
        make_controller(name, env, seed=0)
