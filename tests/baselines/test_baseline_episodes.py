"""Every baseline is a registered controller that completes episodes under every action encoding."""

from pathlib import Path

import pytest

from arbiter_env.baselines import BASELINES, StaticHPO
from arbiter_env.config import ConfigError, load_yaml
from arbiter_env.controllers import (
    controller_env_defaults,
    list_controllers,
    make_controller,
    run_episode,
)
from arbiter_env.envs.actions import ACTION_ENCODINGS
from arbiter_env.envs.batch_size import BatchSizeEnv

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "baselines"
# A short digits-mlp: a quarter epoch in 3 intervals keeps 39 episodes within seconds.
FAST_DIGITS = {"epochs": 0.25, "num_intervals": 3}


@pytest.fixture(scope="module")
def envs():
    return {
        encoding: BatchSizeEnv("digits-mlp", task_kwargs=FAST_DIGITS, action_encoding=encoding)
        for encoding in ACTION_ENCODINGS
    }


@pytest.fixture(scope="module")
def hpo_dir(tmp_path_factory):
    # Shared by the three encodings: the search space is the same, so the second and third
    # encodings pick up the finished study instead of searching again.
    return str(tmp_path_factory.mktemp("hpo"))


def test_every_baseline_is_registered():
    assert set(BASELINES) <= set(list_controllers())


@pytest.mark.parametrize("encoding", ACTION_ENCODINGS)
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_completes_a_digits_episode(envs, hpo_dir, name, encoding):
    env = envs[encoding]
    if controller_env_defaults(name):  # the env arguments the baseline is meant to run with
        env = BatchSizeEnv(
            "digits-mlp",
            task_kwargs=FAST_DIGITS,
            action_encoding=encoding,
            **controller_env_defaults(name),
        )
    kwargs = {}
    if issubclass(BASELINES[name], StaticHPO):
        kwargs = {"n_trials": 1, "run_dir": hpo_dir}
    controller = make_controller(name, env, **kwargs)
    controller.learn()
    record = run_episode(env, controller, seed=0)
    assert len(record.batch_sizes) == 3
    assert all(env.task.batch_min <= b <= env.task.batch_max for b in record.batch_sizes)
    assert record.samples[-1] == env.budget


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_yaml_config_loads_into_the_config_dataclass(name):
    cls = BASELINES[name]
    config = load_yaml(cls.Config, CONFIG_DIR / f"{name}.yaml")
    assert config == cls.Config(), "the YAML file documents the defaults"


def test_factories_reject_unknown_keys_and_wrong_types(envs):
    env = envs["discrete"]
    with pytest.raises(ConfigError, match="batchsize"):
        make_controller("fixed", env, batchsize=32)
    with pytest.raises(ConfigError, match="theta"):
        make_controller("norm-test", env, theta="big")
