"""The CUDA path: the environment, the trainer's statistics and Arbiter on a GPU.

Skipped where no GPU is present (development and CI machines); run on a GPU machine with
``python -m pytest tests/test_cuda.py``.
"""

import contextlib
import math

import numpy as np
import pytest
import torch

from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.training.stats import gradient_statistics

pytestmark = pytest.mark.gpu

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


@contextlib.contextmanager
def synchronisation_raises():
    """Inside the context any host-device synchronisation raises (torch's sync debug mode)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_batches_and_validation_draws_do_not_synchronise_with_the_gpu():
    env = BatchSizeEnv("digits-mlp", task_kwargs=DIGITS_CUDA)
    env.reset(seed=0)
    trainer = env.trainer
    half_epoch = trainer.data.x_train.shape[0] // 2 + 1
    with synchronisation_raises():
        for _ in range(5):  # three fresh epoch permutations, two of them in mid-batch
            trainer.sampler.next_batch(half_epoch)
        trainer.sample_validation(48)


def test_arbiter_meta_steps_do_not_synchronise_with_the_gpu():
    from arbiter_env.agents.arbiter import Arbiter

    env = BatchSizeEnv("digits-mlp", task_kwargs=DIGITS_CUDA, action_encoding="continuous")
    env.reset(seed=0)
    agent = Arbiter(env)
    agent.on_episode_start(None)
    agent.warmup(64)  # reads s on the host at each iteration, as it must
    agent.meta_step()  # the first step creates the optimizer state
    with synchronisation_raises():
        for _ in range(3):
            agent.meta_step()
    assert agent.meta_steps == 4


def test_population_on_cuda_follows_single_cuda_envs():
    from arbiter_env.vector.population import Population

    population = Population("digits-mlp", 3, task_kwargs=DIGITS_CUDA)
    singles = [BatchSizeEnv("digits-mlp", task_kwargs=DIGITS_CUDA) for _ in range(3)]
    for i, env in enumerate(singles):
        np.testing.assert_allclose(
            population.reset_member(i, i)[0], env.reset(seed=i)[0], rtol=1e-5, atol=1e-5
        )
    for actions in ([0, 3, 6], [2, 2, 5], [6, 1, 0]):
        outcomes = population.step(actions)
        for env, action, outcome in zip(singles, actions, outcomes, strict=True):
            observation = env.step(action)[0]
            assert np.isfinite(outcome[0]).all()
            # cuBLAS batched and single products may round differently: float32 closeness.
            np.testing.assert_allclose(outcome[0], observation, rtol=1e-3, atol=1e-3)
