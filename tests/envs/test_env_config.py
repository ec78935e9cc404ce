"""EnvConfig: the one shape of the env's arguments, reachable from every front end."""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import pytest
import yaml

import arbiter_env
from arbiter_env.agents.run_arbiter import ArbiterRunConfig, make_env
from arbiter_env.config import ConfigError, from_dict
from arbiter_env.envs.batch_size import BatchSizeEnv, EnvConfig
from arbiter_env.envs.divergence import DivergenceRule
from arbiter_env.envs.rewards import RewardConfig
from arbiter_env.lab.experiments.config import ControllerSpec, ExperimentConfig, load_experiment
from arbiter_env.lab.experiments.plan import plan_runs
from arbiter_env.training.lr_schedule import LrSchedule

# One non-default value per EnvConfig field, as plain (YAML) data and as the typed value it
# becomes. A field added to EnvConfig without a sample here fails the first test below: every
# path is then checked with it, so no front end can keep a list of keys of its own.
SAMPLES: dict[str, tuple[Any, Any]] = {
    "task": ("synthetic-teacher", "synthetic-teacher"),
    "family_split": ("test", "test"),
    "task_kwargs": ({"epochs": 0.5}, {"epochs": 0.5}),
    "action_encoding": ("relative", "relative"),
    "num_intervals": (4, 4),
    "reward": ({"final_accuracy_weight": 1.0}, RewardConfig(final_accuracy_weight=1.0)),
    "divergence": ({"loss_ratio": None}, DivergenceRule(loss_ratio=None)),
    "lr_scaling": ("sqrt", "sqrt"),
    "base_batch_size": (64, 64),
    "lr_schedule": (
        {"name": "cosine", "final_factor": 0.1},
        LrSchedule(name="cosine", final_factor=0.1),
    ),
    "ladder_size": (4, 4),
    "record_wall_time": (True, True),
    "gradient_statistics": ("probe", "probe"),
    "render_mode": ("ansi", "ansi"),
}
# What an env needs besides the sample to build quickly (and, for family_split, a family).
CONTEXT: dict[str, dict[str, Any]] = {
    "family_split": {"task": "digits-mlp-family", "task_kwargs": {"epochs": 0.5}},
    "task_kwargs": {},
}
TINY = {"task_kwargs": {"epochs": 0.5, "num_intervals": 3}}
# Fields an experiment sets through tasks: / task_overrides:, not through env:.
SET_BY_THE_EXPERIMENT = {"task", "task_kwargs", "family_split"}


def test_every_field_has_a_sample_so_every_path_below_is_checked_with_it() -> None:
    assert list(SAMPLES) == list(EnvConfig.field_names())
    for name, (_, typed) in SAMPLES.items():
        default = getattr(EnvConfig(), name)
        assert typed != default, f"the sample of {name} must differ from its default"


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_field_reaches_the_env_through_gym_make_keyword_arguments(name: str) -> None:
    plain, typed = SAMPLES[name]
    kwargs = {**TINY, **CONTEXT.get(name, {}), name: plain}
    env = gym.make(arbiter_env.ENV_ID, **kwargs)
    try:
        assert isinstance(env.unwrapped, BatchSizeEnv)
        assert getattr(env.unwrapped.config, name) == typed
    finally:
        env.close()


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_field_reaches_an_experiment_run_or_is_named_where_it_belongs(
    name: str, tmp_path
) -> None:
    plain, typed = SAMPLES[name]
    file = tmp_path / "experiment.yaml"
    controller: dict[str, Any] = {"name": "fixed", "controller": "fixed"}
    data = {"name": "x", "tasks": ["digits-mlp"], "controllers": [controller], "env": {name: plain}}
    file.write_text(yaml.safe_dump(data))
    config = load_experiment(file)
    if name in SET_BY_THE_EXPERIMENT:
        with pytest.raises(ConfigError, match=rf"env\.{name} cannot be set here: .*(tasks|task)"):
            plan_runs(config, tmp_path / "run")
        return
    _, runs = plan_runs(config, tmp_path / "run")
    assert runs[0].env[name] == typed
    # ... and per controller, over the experiment's value.
    controller["env"] = {name: plain}
    data["env"] = {}
    file.write_text(yaml.safe_dump(data))
    _, runs = plan_runs(load_experiment(file), tmp_path / "run")
    assert runs[0].env[name] == typed


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_field_reaches_the_sb3_agent_config(name: str) -> None:
    sb3 = pytest.importorskip("arbiter_env.agents.sb3")
    plain, typed = SAMPLES[name]
    if name == "family_split":
        # The RL package picks the split itself (train to learn, test to evaluate).
        with pytest.raises(ConfigError, match=r"env\.family_split: leave it null"):
            sb3.resolve_agent_config({"algo": "ppo", "env": {name: plain}})
        return
    config = sb3.resolve_agent_config({"algo": "ppo", "env": {name: plain}})
    assert getattr(config.env, name) == typed
    typed_settings = sb3.resolve_agent_config({"algo": "ppo"}, settings={f"env.{name}": typed})
    assert getattr(typed_settings.env, name) == typed


@pytest.mark.parametrize("name", sorted(set(SAMPLES) - SET_BY_THE_EXPERIMENT))
def test_every_field_of_an_experiment_reaches_the_rl_agent_it_trains(name: str, tmp_path) -> None:
    pytest.importorskip("arbiter_env.agents.sb3")
    from arbiter_env.agents.sb3.learning import sb3_training_config
    from arbiter_env.lab.experiments.worker import training_job

    plain, typed = SAMPLES[name]
    config = ExperimentConfig(
        name="x",
        tasks=["digits-mlp"],
        controllers=[ControllerSpec("ppo", "ppo", train_timesteps=8)],
        task_overrides={"epochs": 0.5},
        env={name: plain},
    )
    (train,), _ = plan_runs(config, tmp_path)
    agent = sb3_training_config(training_job(train))
    assert getattr(agent.env, name) == typed
    assert agent.env.task_kwargs == {"epochs": 0.5} and agent.total_timesteps == 8


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_field_reaches_arbiter_run_configs_and_the_command_line_parser(name: str) -> None:
    plain, typed = SAMPLES[name]
    run_config = from_dict(ArbiterRunConfig, {name: plain})
    assert getattr(run_config.env_config(), name) == typed
    inline = yaml.safe_dump(plain, default_flow_style=True, width=10**6).strip()
    assert EnvConfig.parse([f"{name}={inline.removesuffix(chr(10) + '...')}"]) == {name: typed}


def test_arbiter_run_config_keeps_its_continuous_default_and_builds_its_env() -> None:
    config = from_dict(ArbiterRunConfig, {"task_kwargs": TINY["task_kwargs"], "ladder_size": 4})
    assert config.action_encoding == "continuous"
    env = make_env(config)
    assert env.action_encoding.name == "continuous" and env.config.ladder_size == 4


def test_config_and_keyword_arguments_build_the_same_env_and_keywords_win() -> None:
    config = EnvConfig(task_kwargs=TINY["task_kwargs"], action_encoding="relative")
    from_config = BatchSizeEnv(config=config)
    from_kwargs = BatchSizeEnv(task_kwargs=TINY["task_kwargs"], action_encoding="relative")
    assert from_config.config == from_kwargs.config == config
    both = BatchSizeEnv(config=config, action_encoding="continuous")
    assert both.config.action_encoding == "continuous"
    assert config.action_encoding == "relative"  # the given config is not changed


def test_yaml_round_trip_keeps_every_value_typed() -> None:
    config = EnvConfig.from_mapping({name: plain for name, (plain, _) in SAMPLES.items()})
    text = yaml.safe_dump(config.to_dict())
    loaded = EnvConfig.from_mapping(yaml.safe_load(text))
    assert loaded == config
    assert isinstance(loaded.reward, RewardConfig) and isinstance(loaded.num_intervals, int)
    # The same through the nested section of an agent config (from_dict), as files are read.
    sb3 = pytest.importorskip("arbiter_env.agents.sb3")
    env_section = yaml.safe_load(text) | {"family_split": None}
    agent = sb3.resolve_agent_config({"algo": "ppo", "env": env_section})
    assert agent.env == dataclasses.replace(config, family_split=None)


def test_a_partial_env_section_keeps_the_defaults_of_its_owner() -> None:
    sb3 = pytest.importorskip("arbiter_env.agents.sb3")
    config = sb3.resolve_agent_config({"algo": "ppo", "env": {"num_intervals": 5}})
    # The agent config's env records wall time (for the training logs) unless told otherwise.
    assert config.env.record_wall_time is True and config.env.num_intervals == 5
    off = sb3.resolve_agent_config({"algo": "ppo", "env": {"record_wall_time": False}})
    assert off.env.record_wall_time is False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"num_interval": 4}, r"'num_interval' \(did you mean 'num_intervals'\?\)"),
        (
            {"reward": {"cost_wieght": 1.0}},
            r"'reward.cost_wieght' \(did you mean 'cost_weight'\?\)",
        ),
        ({"num_intervals": "8"}, "num_intervals must be an integer, got '8'"),
        ({"num_intervals": 0}, "num_intervals must be >= 1, got 0. Use a positive integer"),
        ({"ladder_size": 2.5}, "ladder_size must be an integer"),
        ({"action_encoding": "binary"}, "action_encoding must be 'discrete', 'continuous' or"),
        (
            {"lr_scaling": "cubic"},
            "lr_scaling must be 'none', 'linear', 'sqrt' or 'adascale', got 'cubic'",
        ),
        ({"gradient_statistics": "both"}, "gradient_statistics must be 'training' or 'probe'"),
        ({"family_split": "validation"}, r"family_split must be 'train' or 'test' \(or None\)"),
        ({"record_wall_time": "yes"}, "record_wall_time must be True or False"),
        ({"task_kwargs": [1]}, "task_kwargs must be a dict"),
        ({"render_mode": "human"}, "Unknown render_mode 'human'"),
        ({"divergence": {"ratio": 3}}, "divergence: unknown key"),
    ],
)
def test_bad_values_raise_errors_that_name_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EnvConfig.from_mapping(data)


def test_unknown_keyword_argument_of_the_env_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'ladder_size'"):
        BatchSizeEnv(ladder_sizes=4)
    with pytest.raises(TypeError, match="config must be an EnvConfig"):
        BatchSizeEnv(config={"num_intervals": 4})  # type: ignore[arg-type]


def test_experiment_env_sections_are_checked_when_the_runs_are_planned(tmp_path) -> None:
    config = ExperimentConfig(
        name="x",
        tasks=["digits-mlp"],
        controllers=[ControllerSpec("a", "fixed", env={"num_interval": 3})],
    )
    with pytest.raises(ConfigError, match=r"controllers\[0\]\.env\.num_interval' \(did you mean"):
        plan_runs(config, tmp_path)


def test_parse_reads_each_command_line_value_once_into_its_type() -> None:
    parsed = EnvConfig.parse(["num_intervals=8", "reward.cost=updates", "divergence.max_loss=5"])
    assert parsed["num_intervals"] == 8
    assert parsed["reward"] == RewardConfig(cost="updates")
    assert parsed["divergence"] == DivergenceRule(max_loss=5.0)
    with pytest.raises(ConfigError, match=r"did you mean 'lr_scaling'"):
        EnvConfig.parse(["lr_scale=sqrt"])


def test_the_env_signature_lists_every_field_with_its_default() -> None:
    import inspect

    parameters = inspect.signature(BatchSizeEnv).parameters
    defaults = EnvConfig()
    for name in EnvConfig.field_names():
        if name != "task":
            assert parameters[name].default == getattr(defaults, name)
    assert list(parameters) == ["task", *EnvConfig.field_names()[1:], "config"]


def test_the_population_training_env_gets_every_env_argument_of_the_agent_config() -> None:
    sb3 = pytest.importorskip("arbiter_env.agents.sb3")
    from arbiter_env.agents.sb3.envs import make_vec_env

    env = {**TINY, "divergence": {"max_loss": 50.0}, "ladder_size": 4, "lr_scaling": "sqrt"}
    config = sb3.resolve_agent_config(
        {"algo": "ppo", "n_envs": 2, "vec_env": "population", "env": env}
    )
    venv = make_vec_env(config)
    try:
        members = venv.venv.envs  # type: ignore[attr-defined]  # VecMonitor(PopulationEnv)
        assert len(members) == 2
        for member in members:
            # divergence used to be dropped on the way to the population's members.
            for name in set(EnvConfig.field_names()) - {"task", "task_kwargs"}:
                assert getattr(member.config, name) == getattr(config.env, name), name
            assert member.divergence_rule == DivergenceRule(max_loss=50.0)
            assert member.action_encoding.ladder.size == 4 and member.record_wall_time
    finally:
        venv.close()
