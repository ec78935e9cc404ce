"""The CUDA path: the environment, the trainer's statistics and Arbiter on a GPU.

Skipped where no GPU is present (development and CI machines); run on a GPU machine with
``python -m pytest tests/test_cuda.py``.
"""

import math

import numpy as np
import pytest
import torch

from arbiter_env.env import BatchSizeEnv
from arbiter_env.stats import gradient_statistics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DIGITS_CUDA = {"device": "cuda", "epochs": 1, "num_intervals": 4}


def test_env_episode_runs_on_cuda_and_is_reproducible():
    def rollout():
        env = BatchSizeEnv("digits-mlp", task_kwargs=DIGITS_CUDA, record_wall_time=False)
        observation, _ = env.reset(seed=0)
        observations, terminated = [observation], False
        while not terminated:
            observation, _, terminated, _, info = env.step(env.encode(32))
            observations.append(observation)
        assert env.trainer.data.x_train.is_cuda
        return np.stack(observations), info

    first, info = rollout()
    second, _ = rollout()
    assert np.isfinite(first).all() and info["samples"] > 0 and not info["diverged"]
    np.testing.assert_allclose(first, second, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["linear", "vmap"])
def test_gradient_statistics_on_cuda_match_the_cpu(method):
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    model = model.double()
    inputs = torch.randn(32, 8, generator=generator, dtype=torch.float64)
    targets = torch.randint(3, (32,), generator=generator)
    on_cpu = gradient_statistics(model, inputs, targets, method=method)
    on_gpu = gradient_statistics(model.cuda(), inputs.cuda(), targets.cuda(), method=method)
    for name, value in on_cpu.as_dict().items():
        assert on_gpu.as_dict()[name] == pytest.approx(value, rel=1e-9, abs=1e-14), name


def test_cnn_task_statistics_run_on_cuda():
    env = BatchSizeEnv("mnist1d-cnn", task_kwargs={**DIGITS_CUDA, "epochs": 0.2})
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.encode(64))
    assert math.isfinite(info["noise_scale"]) and math.isfinite(info["val_loss"])


def test_arbiter_episode_runs_on_cuda_and_moves_the_batch_size():
    from arbiter_env.agents.arbiter import Arbiter
    from arbiter_env.controllers import run_episode

    env = BatchSizeEnv(
        "digits-mlp",
        task_kwargs={**DIGITS_CUDA, "epochs": 4, "num_intervals": 8},
        action_encoding="continuous",
    )
    agent = Arbiter(env)
    record = run_episode(env, agent, seed=0)
    assert next(agent.phi.parameters()).is_cuda
    assert not record.diverged and math.isfinite(record.test_accuracy)
    assert len(set(record.batch_sizes)) > 1
