"""The population refuses seeds, options, sizes and actions of the wrong shape, naming the fix."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from arbiter_env.agents.population_vec_env import PopulationEnv, make_population_env
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.tasks import Task
from arbiter_env.vector.population import Population, PopulationVectorEnv


def _relu_mlp(shape, classes):  # trained by the population's batched path
    return nn.Sequential(nn.Flatten(), nn.Linear(shape[0], 16), nn.ReLU(), nn.Linear(16, classes))


@pytest.fixture
def relu_task(tiny_task: Task) -> Task:
    return tiny_task.replace(model=_relu_mlp)


@pytest.mark.parametrize("seed", [[1, 2], [1, 2, 3, 4], (5,), np.array([1, 2])])
def test_a_seed_list_of_the_wrong_length_is_refused_on_a_fresh_population(relu_task, seed):
    envs = PopulationVectorEnv(3, relu_task)
    with pytest.raises(ValueError, match=r"seeds for 3 members; pass one per member"):
        envs.reset(seed=seed)


def test_a_short_seed_list_mid_episode_resets_no_member(relu_task):
    envs = PopulationVectorEnv(3, relu_task)
    envs.reset(seed=0)
    envs.step(np.array([1, 1, 1]))
    with pytest.raises(ValueError, match="got 2 seeds for 3 members"):
        envs.reset(seed=[1, 2])
    # Every member is still one interval into its episode: they all take the next step alike.
    *_, infos = envs.step(np.array([1, 1, 1]))
    assert len(set(infos["samples"].tolist())) == 1


@pytest.mark.parametrize("seed", ["1", 1.0, True, [1, "2", 3], [1, 2.5, 3]])
def test_seeds_that_are_not_integers_are_refused(relu_task, seed):
    envs = PopulationVectorEnv(3, relu_task)
    with pytest.raises(ValueError, match="seed"):
        envs.reset(seed=seed)


def test_a_seed_list_of_the_right_length_seeds_each_member(relu_task):
    envs = PopulationVectorEnv(3, relu_task)
    observations, _ = envs.reset(seed=[5, None, 7])
    single = BatchSizeEnv(relu_task)
    assert observations[2].tobytes() == single.reset(seed=7)[0].tobytes()


@pytest.mark.parametrize("options", ["x", ["family_instance", 0], 3])
def test_reset_options_that_are_not_a_dict_are_refused(relu_task, options):
    with pytest.raises(TypeError, match=r"options=\.\.\.\) must be a dict or None"):
        PopulationVectorEnv(2, relu_task).reset(options=options)
    with pytest.raises(TypeError, match=r"options=\.\.\.\) must be a dict or None"):
        Population(relu_task, 2).reset_member(0, 0, options)
    with pytest.raises(TypeError, match=r"options=\.\.\.\) must be a dict or None"):
        BatchSizeEnv(relu_task).reset(options=options)


@pytest.mark.parametrize("n_envs", [True, False, 0, -1, 2.0, "2"])
def test_n_envs_must_be_a_positive_integer(relu_task, n_envs):
    with pytest.raises(ValueError, match="n_envs must be"):
        make_population_env(relu_task, n_envs=n_envs)
    with pytest.raises(ValueError, match="n_envs must be"):
        Population(relu_task, n_envs)


@pytest.mark.parametrize("actions", [None, 1, "01", np.array([1, 1, 1])])
def test_step_without_one_action_per_member_is_a_clear_error(relu_task, actions):
    sb3_env = PopulationEnv(relu_task, 2)
    sb3_env.reset()
    with pytest.raises(ValueError, match="step\\(\\) needs"):
        sb3_env.step(actions)
    vector_env = PopulationVectorEnv(2, relu_task)
    vector_env.reset(seed=0)
    with pytest.raises(ValueError, match="step\\(\\) needs"):
        vector_env.step(actions)
