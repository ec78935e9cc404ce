"""SGD-HD and Adam-HD against hand-computed updates on the quadratic f(θ) = ½ θᵀ diag(1, 2) θ."""

import math
from typing import Any, cast

import numpy as np
import pytest
import torch

from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.tasks.spec import OptimizerConfig
from arbiter_env.training.hypergradient import SGDHD, AdamHD

CURVATURE = np.array([1.0, 2.0])


def quadratic_steps(optimizer: SGDHD | AdamHD, theta: torch.Tensor, steps: int) -> list:
    """Runs ``steps`` updates; returns (θ, lr, hypergradient) after each."""
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = 0.5 * (torch.tensor(CURVATURE) * theta**2).sum()
        loss.backward()
        optimizer.step()
        history.append(
            (
                theta.detach().numpy().copy(),
                optimizer.param_groups[0]["lr"],
                optimizer.last_hypergradient,
            )
        )
    return history


def test_sgd_hd_matches_hand_computed_first_steps():
    theta = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    history = quadratic_steps(SGDHD([theta], lr=0.1, hypergradient_lr=0.01), theta, 3)
    # Step 1: g1 = (1, 2), no previous direction: h1 = 0, α1 = 0.1, θ1 = (0.9, 0.8).
    np.testing.assert_allclose(history[0][0], [0.9, 0.8])
    assert history[0][1:] == (0.1, 0.0)
    # Step 2: g2 = (0.9, 1.6), h2 = g2·g1 = 4.1, α2 = 0.1 + 0.01·4.1 = 0.141,
    # θ2 = θ1 − 0.141·g2 = (0.7731, 0.5744).
    np.testing.assert_allclose(history[1][0], [0.7731, 0.5744])
    assert history[1][1] == pytest.approx(0.141)
    assert history[1][2] == pytest.approx(4.1)
    # Step 3: g3 = (0.7731, 1.1488), h3 = g3·g2 = 2.53387, α3 = 0.1663387.
    assert history[2][2] == pytest.approx(2.53387)
    assert history[2][1] == pytest.approx(0.1663387)
    np.testing.assert_allclose(
        history[2][0], [0.7731 - 0.1663387 * 0.7731, 0.5744 - 0.1663387 * 1.1488]
    )


def test_sgd_hd_with_momentum_uses_the_momentum_direction():
    theta = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    history = quadratic_steps(SGDHD([theta], lr=0.1, hypergradient_lr=0.01, momentum=0.5), theta, 2)
    # v1 = g1 = (1, 2), θ1 = (0.9, 0.8); g2 = (0.9, 1.6), h2 = g2·v1 = 4.1, α2 = 0.141,
    # v2 = 0.5·v1 + g2 = (1.4, 2.6), θ2 = θ1 − 0.141·v2 = (0.7026, 0.4334).
    np.testing.assert_allclose(history[0][0], [0.9, 0.8])
    assert history[1][2] == pytest.approx(4.1)
    np.testing.assert_allclose(history[1][0], [0.7026, 0.4334])


def test_sgd_hd_long_run_matches_a_float64_reference_loop():
    theta = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    history = quadratic_steps(SGDHD([theta], lr=0.05, hypergradient_lr=0.003), theta, 25)
    x, lr, previous = np.array([1.0, -0.5]), 0.05, np.zeros(2)
    for got_theta, got_lr, got_h in history:
        g = CURVATURE * x
        h = g @ previous
        lr += 0.003 * h
        x = x - lr * g
        previous = g
        np.testing.assert_allclose(got_theta, x, rtol=1e-12)
        assert got_lr == pytest.approx(lr, rel=1e-12)
        assert got_h == pytest.approx(h, rel=1e-12, abs=1e-15)


def test_adam_hd_matches_hand_computed_first_steps():
    theta = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    eps = 1e-8
    history = quadratic_steps(AdamHD([theta], lr=0.1, hypergradient_lr=0.01, eps=eps), theta, 2)
    # Step 1: m̂1 = g1 = (1, 2), v̂1 = g1², d1 = g1/(|g1| + ε) ≈ (1, 1), θ1 ≈ (0.9, 0.9), h1 = 0.
    d1 = np.array([1 / (1 + eps), 2 / (2 + eps)])
    np.testing.assert_allclose(history[0][0], 1 - 0.1 * d1, rtol=1e-12)
    assert history[0][1:] == (0.1, 0.0)
    # Step 2: g2 = (0.9, 1.8), h2 = g2·d1 ≈ 2.7, α2 = 0.1 + 0.01·2.7 = 0.127.
    g2 = CURVATURE * (1 - 0.1 * d1)
    assert history[1][2] == pytest.approx(g2 @ d1, rel=1e-12)
    assert history[1][2] == pytest.approx(2.7, rel=1e-6)
    assert history[1][1] == pytest.approx(0.127, rel=1e-6)
    # m2 = 0.9·0.1·g1 + 0.1·g2, v2 = 0.999·0.001·g1² + 0.001·g2², bias-corrected.
    g1 = np.array([1.0, 2.0])
    m_hat = (0.9 * 0.1 * g1 + 0.1 * g2) / (1 - 0.9**2)
    v_hat = (0.999 * 0.001 * g1**2 + 0.001 * g2**2) / (1 - 0.999**2)
    expected = (1 - 0.1 * d1) - (0.1 + 0.01 * (g2 @ d1)) * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(history[1][0], expected, rtol=1e-12)


def test_zero_hypergradient_lr_recovers_plain_sgd_and_adam():
    cases: tuple[tuple[type[SGDHD] | type[AdamHD], dict[str, Any], Any], ...] = (
        (SGDHD, {}, lambda p: torch.optim.SGD(p, lr=0.05)),
        (SGDHD, {"momentum": 0.9}, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
        (
            SGDHD,
            {"momentum": 0.9, "nesterov": True},
            lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
        ),
        (AdamHD, {}, lambda p: torch.optim.Adam(p, lr=0.05)),
    )
    for hd, kwargs, plain in cases:
        a = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        b = a.detach().clone().requires_grad_(True)
        quadratic_steps(hd([a], lr=0.05, hypergradient_lr=0.0, **kwargs), a, 10)
        quadratic_steps_plain = plain([b])
        for _ in range(10):
            quadratic_steps_plain.zero_grad()
            (0.5 * (torch.tensor(CURVATURE) * b**2).sum()).backward()
            quadratic_steps_plain.step()
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_learning_rate_never_goes_below_min_lr():
    theta = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    optimizer = SGDHD([theta], lr=0.1, hypergradient_lr=10.0, min_lr=0.0)
    # A learning rate far too large makes consecutive gradients point apart: h < 0.
    optimizer.param_groups[0]["lr"] = 1.5
    quadratic_steps(optimizer, theta, 3)
    assert optimizer.param_groups[0]["lr"] >= 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"hypergradient_lr": -1.0}, {"lr": math.nan}, {"momentum": 1.0}, {"nesterov": True}],
)
def test_sgd_hd_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        SGDHD([torch.zeros(1, requires_grad=True)], **kwargs)


def test_optimizer_config_builds_hypergradient_optimizers():
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd = OptimizerConfig(name="sgd-hd", lr=0.05, hypergradient_lr=1e-4).build(params)
    assert isinstance(sgd, SGDHD)
    assert sgd.param_groups[0]["hypergradient_lr"] == 1e-4
    assert sgd.param_groups[0]["momentum"] == 0.9
    adam = OptimizerConfig(name="adam-hd", lr=1e-3).build(params)
    assert isinstance(adam, AdamHD)
    assert adam.param_groups[0]["hypergradient_lr"] == 1e-7  # the paper's default
    with pytest.raises(ValueError, match="hypergradient_lr"):
        OptimizerConfig(name="sgd-hd", hypergradient_lr=-1e-3)


def test_adapted_learning_rate_persists_between_intervals(tiny_task):
    beta = 1e-3
    task = tiny_task.replace(optimizer={"name": "sgd-hd", "lr": 0.05, "hypergradient_lr": beta})
    env = BatchSizeEnv(task)
    env.reset(seed=0)
    seen: list[tuple[float, float]] = []
    env.trainer.add_step_hook(
        lambda info: seen.append(
            (info.trainer.current_lr, cast(SGDHD, info.trainer.optimizer).last_hypergradient)
        )
    )
    action = env.encode(16)
    _, _, _, _, first = env.step(action)
    assert first["lr"] != 0.05
    updates_first = len(seen)
    env.step(action)
    # The trainer writes lr only when its target changes, so the second interval starts from
    # the adapted value: lr after its first update = lr at the end of interval 1 + β·h.
    lr, h = seen[updates_first]
    assert lr == pytest.approx(first["lr"] + beta * h, rel=1e-12)
    # A new target (set_learning_rate) restarts the adaptation from the written value.
    env.set_learning_rate(0.01)
    env.trainer.train(16, 16)
    assert env.trainer.current_lr == pytest.approx(
        0.01 + beta * cast(SGDHD, env.trainer.optimizer).last_hypergradient, rel=1e-12
    )
