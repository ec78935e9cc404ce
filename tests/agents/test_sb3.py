"""RL agents from stable-baselines3: configs, training, checkpoints, resuming and controllers."""

import numpy as np
import pytest
from stable_baselines3 import PPO

from arbiter_env.agents.sb3 import (
    ALGORITHMS,
    HYPERPARAMS,
    AgentConfig,
    ConfigError,
    load_agent_config,
    load_checkpoint_config,
    load_rl_controller,
    make_rl_agent,
    make_vec_env,
    resolve_agent_config,
    train_rl_agent,
)
from arbiter_env.config import from_dict, to_dict
from arbiter_env.controllers import list_controllers, make_controller, run_episode
from arbiter_env.envs.batch_size import BatchSizeEnv

TINY_ENV = "env.task_kwargs={epochs: 0.5, num_intervals: 4}"


@pytest.mark.parametrize("algo", sorted(HYPERPARAMS))
def test_hyperparams_become_sb3_arguments_with_a_constant_or_linear_learning_rate(algo):
    constant = HYPERPARAMS[algo](learning_rate=0.01).to_kwargs()
    assert constant["learning_rate"] == 0.01
    assert "lr_schedule" not in constant and "action_noise_std" not in constant
    linear = HYPERPARAMS[algo](learning_rate=0.01, lr_schedule="linear").to_kwargs()
    assert linear["learning_rate"](1.0) == 0.01 and linear["learning_rate"](0.25) == 0.0025
    assert set(linear) == set(constant)


def test_td3_adds_gaussian_action_noise_only_when_its_std_is_positive():
    noisy = HYPERPARAMS["td3"](action_noise_std=0.3).to_kwargs()["action_noise"]
    assert noisy._sigma.tolist() == [0.3] and noisy._mu.tolist() == [0.0]
    assert "action_noise" not in HYPERPARAMS["td3"](action_noise_std=0.0).to_kwargs()


def tiny_config(*overrides: str, algo: str = "ppo") -> AgentConfig:
    return load_agent_config(
        algo,
        overrides=[
            TINY_ENV,
            "n_envs=2",
            "hyperparams.n_steps=32",
            "hyperparams.batch_size=32",
            "hyperparams.n_epochs=2",
            "total_timesteps=128",
            "checkpoint_every=64",
            "evaluation.n_episodes=2",
            *overrides,
        ],
    )


# --- configs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_shipped_configs_load_and_round_trip(algo):
    config = load_agent_config(algo)
    assert config.algo == algo
    assert from_dict(AgentConfig, to_dict(config)) == config


def test_per_task_overrides_apply_and_command_line_overrides_win():
    data = {
        "total_timesteps": 100,
        "hyperparams": {"n_steps": 64, "gamma": 0.9},
        "tasks": {"digits-mlp-family": {"total_timesteps": 500, "hyperparams": {"n_steps": 32}}},
    }
    plain = resolve_agent_config(data)
    assert plain.total_timesteps == 100 and plain.hyperparams.n_steps == 64
    family = resolve_agent_config(data, task="digits-mlp-family")
    assert family.env.task == "digits-mlp-family"
    assert family.total_timesteps == 500
    assert (
        family.hyperparams.n_steps == 32 and family.hyperparams.gamma == 0.9
    )  # merged, not replaced
    cli = resolve_agent_config(data, task="digits-mlp-family", overrides=["total_timesteps=7"])
    assert cli.total_timesteps == 7


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["hyperparams.n_stepz=3"], "hyperparams.n_stepz"),
        (["hyperparams.learning_rate=fast"], "hyperparams.learning_rate"),
        (["n_envs=two"], "n_envs"),
        (["n_envs=0"], "n_envs"),
        (["vec_env=threads"], "vec_env"),
        (["policy_kwargs.activation=swish"], "policy_kwargs.activation"),
        (["policy_kwargs.net_arch=[64, -1]"], "policy_kwargs.net_arch"),
        (["policy_kwargs.net_arch={pi: [8], qf: [8]}"], "policy_kwargs.net_arch"),
        (["env.action_encoding=sideways"], "env.action_encoding"),
        (["evaluation.seed_offset=5"], "evaluation.seed_offset"),
        (["tasks={digits-mlp: {n_envz: 2}}"], "tasks.digits-mlp"),
    ],
)
def test_config_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        load_agent_config("ppo", overrides=overrides)


def test_unknown_agent_names_the_choices():
    with pytest.raises(ConfigError, match="ppo"):
        load_agent_config("rainbow")


# --- algorithms and action spaces ---------------------------------------------------------------


def test_dqn_rejects_the_continuous_encoding():
    env = BatchSizeEnv("digits-mlp", action_encoding="continuous", task_kwargs={"epochs": 0.5})
    with pytest.raises(ValueError, match="DQN needs a discrete action space"):
        make_rl_agent("dqn", env)
    with pytest.raises(ConfigError, match=r"env\.action_encoding.*'discrete', 'relative'"):
        load_agent_config("dqn", overrides=["env.action_encoding=continuous"])


def test_sac_and_td3_reject_discrete_encodings():
    env = BatchSizeEnv("digits-mlp", action_encoding="relative", task_kwargs={"epochs": 0.5})
    for algo in ("sac", "td3"):
        with pytest.raises(ValueError, match="needs the continuous action space"):
            make_rl_agent(algo, env)


@pytest.mark.parametrize(
    ("algo", "encoding"),
    [
        ("ppo", "continuous"),
        ("a2c", "relative"),
        ("dqn", "discrete"),
        ("sac", "continuous"),
        ("td3", "continuous"),
    ],
)
def test_factory_builds_each_algorithm_with_the_configured_network(algo, encoding):
    env = BatchSizeEnv("digits-mlp", action_encoding=encoding, task_kwargs={"epochs": 0.5})
    config = load_agent_config(
        algo,
        overrides=[f"env.action_encoding={encoding}", "policy_kwargs.net_arch=[16]"],
    )
    model = make_rl_agent(algo, env, config)
    assert isinstance(model, ALGORITHMS[algo])
    assert model.policy_kwargs["net_arch"] == [16]
    action, _ = model.predict(env.observation_space.sample(), deterministic=True)
    assert env.action_space.contains(np.asarray(action).reshape(env.action_space.shape)) or (
        env.action_space.contains(int(action))
    )


# --- training, checkpoints, resuming, controllers -----------------------------------------------


def test_ppo_trains_checkpoints_reloads_evaluates_and_resumes(tmp_path):
    numpy_state = np.random.get_state()
    config = tiny_config()
    checkpoint = train_rl_agent(config, tmp_path / "run")
    # SB3 seeds the global RNGs; training must leave the caller's streams as they were.
    np.testing.assert_array_equal(numpy_state[1], np.random.get_state()[1])
    assert checkpoint == tmp_path / "run" / "final"
    assert {"model.zip", "vecnormalize.npz", "config.yaml"} <= {
        p.name for p in checkpoint.iterdir()
    }
    assert (tmp_path / "run" / "checkpoints" / "step_000000064" / "model.zip").is_file()
    assert load_checkpoint_config(checkpoint) == config
    assert PPO.load(checkpoint / "model.zip").num_timesteps == 128

    env = BatchSizeEnv.from_config(config.env)
    numpy_state = np.random.get_state()
    controller = load_rl_controller(checkpoint, env)
    np.testing.assert_array_equal(numpy_state[1], np.random.get_state()[1])
    assert controller.vec_normalize is not None and not controller.vec_normalize.training
    record = run_episode(env, controller, seed=1_000_000)
    assert len(record.batch_sizes) == 4 and set(record.batch_sizes) <= set(env.ladder.tolist())
    # The same checkpoint through the controller registry, like any heuristic.
    registered = make_controller("ppo", env, checkpoint=checkpoint)
    assert run_episode(env, registered, seed=1_000_000).batch_sizes == record.batch_sizes

    resumed = train_rl_agent(
        tiny_config("total_timesteps=256"), tmp_path / "resumed", resume_from=checkpoint
    )
    assert PPO.load(resumed / "model.zip").num_timesteps == 256  # the counter continues


def test_controller_normalises_observations_like_training(tmp_path):
    checkpoint = train_rl_agent(tiny_config("total_timesteps=64"), tmp_path)
    controller = load_rl_controller(checkpoint)
    observation = BatchSizeEnv("digits-mlp", task_kwargs={"epochs": 0.5}).reset(seed=0)[0]
    normalised = controller.vec_normalize.normalize_obs(observation)
    assert not np.allclose(normalised, observation)
    expected, _ = controller.model.predict(normalised, deterministic=True)
    action, _ = controller.predict(observation, deterministic=True)
    assert action == expected


def test_resume_rejects_another_algorithm(tmp_path):
    checkpoint = train_rl_agent(tiny_config("total_timesteps=64"), tmp_path)
    a2c = load_agent_config("a2c", overrides=[TINY_ENV, "total_timesteps=64"])
    with pytest.raises(ValueError, match="holds a 'ppo' agent"):
        train_rl_agent(a2c, tmp_path / "a2c", resume_from=checkpoint)


def test_loading_into_an_env_with_another_encoding_fails_clearly(tmp_path):
    checkpoint = train_rl_agent(tiny_config("total_timesteps=64"), tmp_path)
    env = BatchSizeEnv("digits-mlp", action_encoding="continuous", task_kwargs={"epochs": 0.5})
    with pytest.raises(ValueError, match="action_encoding"):
        load_rl_controller(checkpoint, env)
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        load_rl_controller(tmp_path)


def test_registry_builds_an_untrained_agent_that_learns():
    assert {"ppo", "a2c", "dqn", "sac", "td3"} <= set(list_controllers())
    env = BatchSizeEnv("digits-mlp", task_kwargs={"epochs": 0.5, "num_intervals": 4})
    controller = make_controller(
        "ppo", env, overrides=["hyperparams.n_steps=16", "hyperparams.batch_size=16"]
    )
    controller.learn(16)
    assert controller.model.num_timesteps == 16
    assert len(run_episode(env, controller, seed=5).batch_sizes) == 4


@pytest.mark.slow  # ~30 s on 2 busy cores: each forkserver worker imports torch afresh
def test_subproc_vec_env_with_two_envs_runs_a_family():
    config = tiny_config("vec_env=subproc", "env.task=digits-mlp-family")
    venv = make_vec_env(config)
    try:
        venv.reset()
        instances = set()
        for _ in range(8):
            _, _, _, infos = venv.step(np.array([1, 5]))
            instances |= {info["family_instance"] for info in infos}
        assert instances  # both workers report which instance they ran
    finally:
        venv.close()


@pytest.mark.slow
def test_dqn_trains_and_resumes_with_its_replay_buffer(tmp_path):
    config = tiny_config(
        "n_envs=1",
        "hyperparams={learning_starts: 16, batch_size: 16, buffer_size: 1000}",
        algo="dqn",
    )
    checkpoint = train_rl_agent(config, tmp_path / "run")
    assert (checkpoint / "replay_buffer.pkl").is_file()
    resumed = train_rl_agent(
        tiny_config(
            "n_envs=1",
            "total_timesteps=192",
            "hyperparams={learning_starts: 16, batch_size: 16, buffer_size: 1000}",
            algo="dqn",
        ),
        tmp_path / "resumed",
        resume_from=checkpoint,
    )
    env = BatchSizeEnv.from_config(config.env)
    assert len(run_episode(env, load_rl_controller(resumed, env), seed=1_000_000).rewards) == 4


def test_subproc_worker_that_cannot_build_its_env_fails_in_the_parent_with_the_fix(monkeypatch):
    from arbiter_env.tasks import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setenv(registry.TASK_MODULES_ENV_VAR, "{}")
    registry.register_task("registered-in-parent-only", registry.make_task("digits-mlp"))
    config = tiny_config("vec_env=subproc", "env.task=registered-in-parent-only")
    with pytest.raises(RuntimeError, match=r"your_module:task-name.*vec_env: dummy"):
        make_vec_env(config)


def test_population_vec_env_trains_ppo_and_reports_episodes_to_sb3():
    config = tiny_config("vec_env=population")
    venv = make_vec_env(config)
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, seed=0)
    model.learn(16)
    venv.reset()
    episodes = []
    for _ in range(venv.get_attr("task")[0].num_intervals):
        _, _, dones, infos = venv.step(np.array([1, 5]))
        episodes += [info["episode"] for info in infos if "episode" in info]
    assert dones.all() and len(episodes) == 2  # VecMonitor, as Monitor does for single envs
