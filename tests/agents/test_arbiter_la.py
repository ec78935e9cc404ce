"""Tests of arbiter-la v1 (`arbiter-la-v1`), our first extension of Arbiter (agents/arbiter_la.py)."""

import math

import numpy as np
import pytest
import torch

from arbiter_env.agents.arbiter_la import (
    ArbiterLA,
    ArbiterLAConfig,
    predicted_validation_change,
)
from arbiter_env.controllers import BatchSizeController, make_controller, run_episode
from arbiter_env.envs.batch_size import BatchSizeEnv

MODEL = {
    "train_loss": 0.5,
    "grad_sq_norm": 0.2,
    "trace_covariance": 10.0,
    "noise_curvature": 0.3,
    "alignment": 1.0,
    "momentum": 0.9,
    "horizon_samples": 600.0,
}


def simulated_change(batch_size: int, lr: float, **model) -> float:
    """ΔL_val by iterating the model's recursion step by step (K = horizon / B whole steps)."""
    eta = lr / (1 - model["momentum"])
    loss = model["train_loss"]
    progress_rate = (1 - eta * model["grad_sq_norm"] / (2 * loss)) ** 2
    noise_rate = (1 - eta * model["noise_curvature"]) ** 2
    per_step = 0.5 * eta**2 * model["noise_curvature"] * model["trace_covariance"] / batch_size
    bias, noise = loss, 0.0
    for _ in range(round(model["horizon_samples"] / batch_size)):
        bias *= progress_rate
        noise = noise_rate * noise + per_step
    return -model["alignment"] * (loss - bias) + noise


def predict(sizes, lr=0.05, **changes) -> torch.Tensor:
    return predicted_validation_change(
        torch.as_tensor(sizes, dtype=torch.float64), lr=lr, **{**MODEL, **changes}
    )


@pytest.mark.parametrize("batch_size", [8, 20, 60, 300])
@pytest.mark.parametrize("lr", [0.01, 0.05, 0.3])
def test_model_matches_its_step_by_step_recursion(batch_size, lr):
    assert float(predict([batch_size], lr)) == pytest.approx(
        simulated_change(batch_size, lr, **MODEL), rel=1e-9, abs=1e-12
    )


def test_model_is_exact_where_a_rate_is_one_and_finite_where_it_diverges():
    # η_e h = 1 gives r = 0, η_e h = 2 gives r = 1 (the geometric sum is then K).
    eta = 0.05 / (1 - MODEL["momentum"])
    at_one = predict([20], noise_curvature=2 / eta)
    assert float(at_one) == pytest.approx(
        simulated_change(20, 0.05, **{**MODEL, "noise_curvature": 2 / eta})
    )
    diverging = predict([8, 64, 512], noise_curvature=10 / eta)
    assert torch.isfinite(diverging).all()
    assert diverging[0] > diverging[1] > diverging[2]  # fewer steps, less predicted damage


def test_model_has_an_interior_optimum_that_grows_with_the_learning_rate():
    sizes = torch.arange(8, 513, dtype=torch.float64)
    best = [int(sizes[int(torch.argmin(predict(sizes, lr)))]) for lr in (0.02, 0.05, 0.2)]
    assert 8 < best[0] < best[1] < best[2] < 512


def test_without_alignment_only_noise_is_left_and_the_largest_batch_wins():
    sizes = torch.arange(8, 513, dtype=torch.float64)
    for alignment in (0.0, -0.5):
        change = predict(sizes, alignment=alignment)
        assert int(sizes[int(torch.argmin(change))]) == 512


def test_model_is_differentiable_in_the_batch_size():
    batch_size = torch.tensor([30.0], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(predict(batch_size).sum(), [batch_size])
    step = 1e-4
    numeric = (predict([30.0 + step]) - predict([30.0 - step])) / (2 * step)
    assert float(grad) == pytest.approx(float(numeric), rel=1e-5)


# --- the agent ------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_interval", [1, 3])
@pytest.mark.parametrize("start", [4, 64])
def test_meta_steps_follow_the_sample_clock_whatever_the_batch_size(tiny_task, per_interval, start):
    env = BatchSizeEnv(tiny_task.replace(batch_start=start), action_encoding="continuous")
    agent = ArbiterLA(env, meta_steps_per_interval=per_interval)
    record = run_episode(env, agent, seed=0)
    assert agent.meta_steps == per_interval * tiny_task.num_intervals
    # An interval's meta-steps fall inside it, up to the one due on its last sample.
    counts = [info["arbiter"]["meta_steps"] for info in record.infos]
    assert sum(counts) == agent.meta_steps and max(counts) <= per_interval + 1


class Replay(BatchSizeController):
    def __init__(self, env, sizes):
        super().__init__(env)
        self.sizes = sizes

    def on_episode_start(self, observation):
        self.step = 0

    def choose_batch_size(self, observation):
        self.step += 1
        return self.sizes[self.step - 1]


def test_measurements_leave_inner_training_untouched(dropout_task):
    env = BatchSizeEnv(dropout_task, action_encoding="continuous")
    record = run_episode(env, ArbiterLA(env, seed=2), seed=5)
    replay_env = BatchSizeEnv(dropout_task, action_encoding="continuous")
    replayed = run_episode(replay_env, Replay(replay_env, record.batch_sizes), seed=5)
    assert replayed.batch_sizes == record.batch_sizes
    assert replayed.val_losses == record.val_losses


def test_same_seed_gives_the_same_schedule(tiny_task):
    records = []
    for _ in range(2):
        env = BatchSizeEnv(tiny_task, action_encoding="continuous")
        records.append(run_episode(env, make_controller("arbiter-la-v1", env, seed=1), seed=3))
    assert records[0].batch_sizes == records[1].batch_sizes
    assert records[0].val_losses == records[1].val_losses


def test_reports_its_model_in_info_and_has_no_response_map(tiny_task):
    env = BatchSizeEnv(tiny_task, action_encoding="continuous")
    agent = ArbiterLA(env)
    record = run_episode(env, agent, seed=0)
    assert agent.response_map is None
    for info in record.infos:
        diagnostics = info["arbiter"]
        assert tiny_task.batch_min <= diagnostics["model_best_batch_size"] <= tiny_task.batch_max
        for key in ("alignment", "noise_curvature", "trace_covariance", "dF_ds"):
            assert math.isfinite(diagnostics[key]), key
        assert math.isnan(diagnostics["map_norm"]) and math.isnan(diagnostics["temperature"])


def test_moves_toward_larger_batches_at_a_larger_learning_rate():
    # The model's optimum scales with the learning rate; the paper's objective does not see it.
    means = []
    for lr in (0.02, 0.3):
        env = BatchSizeEnv(
            "digits-mlp",
            task_kwargs={"epochs": 3, "num_intervals": 6, "optimizer": {"lr": lr}},
            action_encoding="continuous",
        )
        record = run_episode(env, ArbiterLA(env, seed=0), seed=0)
        means.append(np.mean(record.batch_sizes[1:]))
    assert means[1] > 1.5 * means[0]


def test_save_and_load_give_identical_decisions(tiny_task, tmp_path):
    env = BatchSizeEnv(tiny_task, action_encoding="continuous")
    agent = ArbiterLA(env, seed=4)
    run_episode(env, agent, seed=1)
    agent.save(tmp_path / "la.pt")
    expected = run_episode(env, agent, seed=2)
    other = BatchSizeEnv(tiny_task, action_encoding="continuous")
    loaded = ArbiterLA.load(tmp_path / "la.pt", other)
    assert isinstance(loaded.config, ArbiterLAConfig)
    assert run_episode(other, loaded, seed=2).batch_sizes == expected.batch_sizes


def test_registered_and_validated():
    env = BatchSizeEnv("digits-mlp", task_kwargs={"epochs": 0.5, "num_intervals": 2})
    agent = make_controller("arbiter-la-v1", env, meta_steps_per_interval=2)
    assert isinstance(agent, ArbiterLA) and agent.config.meta_steps_per_interval == 2
    fields = [("meta_steps_per_interval", 0), ("statistics_decay", 1.0), ("horizon_intervals", 0)]
    for field, value in fields:
        with pytest.raises(ValueError, match=field):
            ArbiterLAConfig(**{field: value})
