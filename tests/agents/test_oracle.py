"""oracle-greedy (arbiter_env.agents.oracle): a reference that tries every size on copies."""

import numpy as np
import pytest

from arbiter_env.config import from_dict
from arbiter_env.controllers import make_controller, run_episode
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.envs.branching import branch_env
from arbiter_env.lab.experiments import ExperimentConfig, execute_run, plan_runs

SHORT = {"epochs": 2, "num_intervals": 4}


def test_it_keeps_the_size_whose_copy_ends_with_the_lowest_validation_loss():
    env = BatchSizeEnv("synthetic-teacher", task_kwargs=SHORT)
    observation, _ = env.reset(seed=5)
    env.step(env.encode(64))
    oracle = make_controller("oracle-greedy", env)
    losses = {}
    for size in env.ladder:
        trial = branch_env(env)
        losses[int(size)] = trial.step(trial.encode(int(size)))[4]["val_loss"]
    twin = BatchSizeEnv("synthetic-teacher", task_kwargs=SHORT)
    twin.reset(seed=5)
    twin.step(twin.encode(64))
    chosen = oracle.choose_batch_size(observation)
    assert chosen == min(losses, key=losses.get)
    # The env it chose for is untouched by the trials.
    assert np.array_equal(env.step(env.encode(32))[0], twin.step(twin.encode(32))[0])


def test_a_horizon_scores_each_size_after_that_many_intervals():
    env = BatchSizeEnv("synthetic-teacher", task_kwargs=SHORT)
    observation, _ = env.reset(seed=1)
    oracle = make_controller("oracle-greedy", env, sizes=[16, 256], horizon=2)
    oracle.choose_batch_size(observation)
    trial = branch_env(env)
    trial.step(trial.encode(16))
    loss = trial.step(trial.encode(16))[4]["val_loss"]
    assert oracle.scores[-1][16] == pytest.approx(loss - env._val_loss)


def test_bad_settings_are_named():
    env = BatchSizeEnv("synthetic-teacher", task_kwargs=SHORT)
    with pytest.raises(ValueError, match="horizon"):
        make_controller("oracle-greedy", env, horizon=0)
    with pytest.raises(ValueError, match="positive batch sizes"):
        make_controller("oracle-greedy", env, sizes=[0])


def test_a_comparison_runs_it_and_reports_test_metrics(tmp_path, restore_threads):
    experiment = {
        "name": "oracle",
        "tasks": ["synthetic-teacher"],
        "controllers": [{"name": "oracle", "controller": "oracle-greedy"}],
        "seeds": [0],
        "task_overrides": SHORT,
        "wandb": {"mode": "disabled"},
    }
    (), (run,) = plan_runs(from_dict(ExperimentConfig, experiment), tmp_path)
    result = execute_run(run)
    assert result["status"] == "ok", result.get("traceback")
    assert 0 <= result["test_accuracy"] <= 1


def test_a_whole_episode_plays_only_ladder_sizes():
    env = BatchSizeEnv("synthetic-teacher", task_kwargs=SHORT)
    record = run_episode(env, make_controller("oracle-greedy", env), seed=0)
    assert set(record.batch_sizes) <= {int(b) for b in env.ladder}
