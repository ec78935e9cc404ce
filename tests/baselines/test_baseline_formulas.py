"""Each adaptive rule against an independent float64 brute-force computation.

A fixed set of per-sample gradients (a seeded network on a seeded probe batch) gives the real
statistics the environment would measure (``gradient_statistics``) and, separately, the float64
reference values computed here from the raw per-sample gradients. The observation is built from
the real statistics, and the baseline's decision must match the reference formula.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from arbiter_env.baselines import (
    CABS,
    CABSConfig,
    NoiseScale,
    NoiseScaleConfig,
    NormTest,
    NormTestConfig,
    SimiGrad,
    SimiGradConfig,
)
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.envs.observation import build_observation
from arbiter_env.training.stats import gradient_statistics, per_sample_gradients

PROBE = 32


def probe(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    inputs = torch.randn(PROBE, 6, generator=generator)
    targets = torch.randint(3, (PROBE,), generator=generator)
    return model, inputs, targets


class Reference:
    """Float64 statistics computed directly from the per-sample gradient matrix."""

    def __init__(self, seed: int):
        model, inputs, targets = probe(seed)
        self.stats = gradient_statistics(model, inputs, targets)
        g = per_sample_gradients(model, inputs, targets).double().numpy()
        n = g.shape[0]
        mean = g.mean(axis=0)
        # CABS's ξ: per-parameter variance Σ_j (mean_i g_ij² − ḡ_j²), summed over parameters.
        self.xi = float(sum((g[:, j] ** 2).mean() - mean[j] ** 2 for j in range(g.shape[1])))
        # Unbiased trace of the covariance, by its definition Σ‖g_i − ḡ‖²/(n−1).
        self.variance = float(((g - mean) ** 2).sum() / (n - 1))
        self.mean_sq_norm = float(mean @ mean)
        self.grad_sq = max(self.mean_sq_norm - self.variance / n, 1e-12)
        first, second = g[: n // 2].mean(axis=0), g[n // 2 :].mean(axis=0)
        self.cosine = float(first @ second / (np.linalg.norm(first) * np.linalg.norm(second)))

    def observation(self, *, batch_size: int, lr: float = 0.05, train_loss: float = 1.0):
        return build_observation(
            progress=0.25,
            batch_size=batch_size,
            lr=lr,
            train_loss=train_loss,
            val_loss=1.0,
            val_accuracy=0.5,
            val_log_loss_change=0.0,
            stats=self.stats,
        )


def _wide_data():
    # A training part of a million examples, so that batch_max can be a million (the env refuses
    # a batch_max above its training set). No episode runs here: the values do not matter.
    from arbiter_env.tasks import from_tensors

    labels = torch.arange(1_250_000) % 3
    return from_tensors(torch.zeros(1_250_000, 6), labels, torch.zeros(6, 6), labels[:6], 3)


@pytest.fixture
def wide_env(tiny_task):
    # Wide bounds so that no decision below is clipped.
    wide = tiny_task.replace(data=_wide_data, batch_min=1, batch_start=16, batch_max=1_000_000)
    return BatchSizeEnv(wide)


def assert_rounded(decision: int, exact: float) -> None:
    assert abs(decision - exact) <= 0.5 + 1e-4 * exact, (decision, exact)


def test_reference_statistics_agree_with_the_environment():
    ref = Reference(0)
    assert ref.stats.trace_covariance == pytest.approx(ref.variance, rel=1e-4)
    assert ref.stats.grad_sq_norm == pytest.approx(ref.grad_sq, rel=1e-3)
    assert ref.stats.half_batch_cosine == pytest.approx(ref.cosine, rel=1e-4)
    assert ref.xi == pytest.approx(ref.variance * (PROBE - 1) / PROBE, rel=1e-9)


def test_cabs_uses_the_biased_variance_sum_and_the_loss(wide_env):
    ref = Reference(0)
    loss = 0.7
    lr = 37.3 * loss / ref.xi  # puts B = c·ε·ξ/L near 37 with c = 1
    controller = CABS(wide_env, CABSConfig(c=1.0))
    observation = ref.observation(batch_size=16, lr=lr, train_loss=loss)
    controller.on_episode_start(observation)
    assert_rounded(controller.choose_batch_size(observation), lr * ref.xi / loss)


def test_cabs_running_averages_follow_mu(wide_env):
    first, second = Reference(0), Reference(1)
    mu, c = 0.95, 2.0
    lr = 40 * 0.7 / first.xi
    controller = CABS(wide_env, CABSConfig(c=c, mu=mu))
    obs1 = first.observation(batch_size=16, lr=lr, train_loss=0.7)
    obs2 = second.observation(batch_size=16, lr=lr, train_loss=0.4)
    controller.on_episode_start(obs1)
    controller.choose_batch_size(obs1)
    xi = mu * first.xi + (1 - mu) * second.xi
    loss = mu * 0.7 + (1 - mu) * 0.4
    assert_rounded(controller.choose_batch_size(obs2), c * lr * xi / loss)


def test_noise_scale_is_the_ratio_of_separate_moving_averages(wide_env):
    first, second = Reference(0), Reference(2)
    decay = 0.9
    controller = NoiseScale(wide_env, NoiseScaleConfig(ema_decay=decay))
    obs1, obs2 = first.observation(batch_size=16), second.observation(batch_size=16)
    controller.on_episode_start(obs1)
    assert_rounded(controller.choose_batch_size(obs1), first.variance / first.grad_sq)
    numerator = decay * first.variance + (1 - decay) * second.variance
    denominator = decay * first.grad_sq + (1 - decay) * second.grad_sq
    exact = numerator / denominator
    assert_rounded(controller.choose_batch_size(obs2), exact)
    average_of_ratios = decay * first.variance / first.grad_sq + (1 - decay) * second.variance / (
        second.grad_sq
    )
    assert abs(exact - average_of_ratios) > 1, "the two averages must differ for this check"


def test_norm_test_grows_to_the_size_that_passes_and_never_shrinks(wide_env):
    ref = Reference(0)
    theta = 0.9
    required = ref.variance / (theta**2 * ref.mean_sq_norm)
    assert required > 2, "the probe must fail the test at B = 2"
    controller = NormTest(wide_env, NormTestConfig(theta=theta, initial_batch_size=2))
    failing = ref.observation(batch_size=2)
    controller.on_episode_start(failing)
    assert controller.choose_batch_size(failing) == math.ceil(required)
    # At a size that passes the test nothing changes, and the size never goes back down.
    passing = ref.observation(batch_size=math.ceil(required) * 4)
    assert controller.choose_batch_size(passing) == math.ceil(required)


def test_norm_test_keeps_the_size_when_the_test_passes(wide_env):
    ref = Reference(0)
    big = 4 * math.ceil(ref.variance / (0.81 * ref.mean_sq_norm))
    controller = NormTest(wide_env, NormTestConfig(theta=0.9, initial_batch_size=big))
    observation = ref.observation(batch_size=big)
    controller.on_episode_start(observation)
    assert controller.choose_batch_size(observation) == big


@pytest.mark.parametrize("direction", ["grow", "shrink"])
def test_simigrad_steps_on_the_probe_cosine(direction, wide_env):
    ref = Reference(0)
    target = ref.cosine + (0.01 if direction == "grow" else -0.01)
    config = SimiGradConfig(target_similarity=target, rescale_to_batch=False, initial_batch_size=50)
    controller = SimiGrad(wide_env, config)
    observation = ref.observation(batch_size=50)
    controller.on_episode_start(observation)
    assert controller.similarity(observation) == pytest.approx(ref.cosine, rel=1e-5)
    expected = max(51, math.floor(1.1 * 50)) if direction == "grow" else math.floor(0.9 * 50)
    assert controller.choose_batch_size(observation) == expected


def test_simigrad_rescales_the_probe_cosine_to_the_batch_halves(wide_env):
    ref = Reference(0)
    assert ref.cosine > 0
    batch = 200
    # Noise model: cos(m) = 1/(1 + B_simple/m); P/2 examples per probe half, B/2 per batch half.
    b_simple = (PROBE / 2) * (1 / ref.cosine - 1)
    expected_cosine = 1 / (1 + b_simple / (batch / 2))
    controller = SimiGrad(wide_env, SimiGradConfig(target_similarity=expected_cosine - 0.01))
    observation = ref.observation(batch_size=batch)
    controller.on_episode_start(observation)
    assert controller.similarity(observation) == pytest.approx(expected_cosine, rel=1e-5)
    # The cosine at B is above the target, so the size shrinks by 10% from the start size (16).
    assert controller.choose_batch_size(observation) == math.floor(0.9 * 16)
