import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import SubprocVecEnv

import arbiter_env
from arbiter_env.envs.batch_size import BatchSizeEnv

ENCODINGS = ["discrete", "continuous", "relative"]
TINY_DIGITS = {"epochs": 0.5, "num_intervals": 3}


def rollout(env, seed, actions):
    observation, _ = env.reset(seed=seed)
    trajectory = [observation]
    for action in actions:
        observation, reward, terminated, _truncated, info = env.step(action)
        trajectory.append((observation, reward, terminated, info["batch_size"], info["val_loss"]))
        if terminated:
            break
    return trajectory


def assert_same_trajectory(a, b):
    assert len(a) == len(b)
    np.testing.assert_array_equal(a[0], b[0])
    for (obs_a, *rest_a), (obs_b, *rest_b) in zip(a[1:], b[1:], strict=True):
        np.testing.assert_array_equal(obs_a, obs_b)
        assert rest_a == rest_b


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_gymnasium_and_sb3_env_checkers_pass_without_warnings(tiny_task, encoding):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = BatchSizeEnv(tiny_task, action_encoding=encoding)
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(BatchSizeEnv(tiny_task, action_encoding=encoding), warn=True)


def test_gym_make_builds_the_registered_environment_with_the_default_task():
    env = gym.make(arbiter_env.ENV_ID, task_kwargs=TINY_DIGITS)
    assert isinstance(env.unwrapped, BatchSizeEnv)
    assert env.unwrapped.task.name == "digits-mlp"
    assert env.action_space == gym.spaces.Discrete(7)
    assert env.spec.entry_point == "arbiter_env.envs.batch_size:BatchSizeEnv"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_same_seed_and_actions_give_an_identical_trajectory_and_other_seeds_differ(
    dropout_task, encoding
):
    env = BatchSizeEnv(dropout_task, action_encoding=encoding)
    actions = [env.action_space.sample() for _ in range(dropout_task.num_intervals)]
    first = rollout(env, 3, actions)
    again = rollout(BatchSizeEnv(dropout_task, action_encoding=encoding), 3, actions)
    assert_same_trajectory(first, again)
    other = rollout(env, 4, actions)
    assert not np.array_equal(first[0], other[0]) or first[-1][4] != other[-1][4]


def test_episode_consumes_the_sample_budget_exactly_with_odd_batch_sizes(tiny_task):
    env = BatchSizeEnv(tiny_task.replace(batch_min=3, batch_max=37, batch_start=5), ladder_size=5)
    env.reset(seed=0)
    total_updates, terminated, steps = 0, False, 0
    while not terminated:
        _, _, terminated, truncated, info = env.step(steps % env.action_space.n)
        assert not truncated
        slice_size = env.interval_boundaries[steps + 1] - env.interval_boundaries[steps]
        assert info["interval_updates"] == -(-slice_size // info["batch_size"])
        total_updates += info["interval_updates"]
        steps += 1
    assert steps == tiny_task.num_intervals
    assert (
        info["samples"] == env.budget == round(tiny_task.epochs * env.trainer.data.x_train.shape[0])
    )
    assert info["updates"] == total_updates
    assert "test_accuracy" in info and 0 <= info["test_accuracy"] <= 1


def test_reward_telescopes_to_the_log_improvement_of_the_validation_loss(tiny_task):
    env = BatchSizeEnv(tiny_task)
    _, info = env.reset(seed=1)
    initial = info["val_loss"]
    total, terminated = 0.0, False
    while not terminated:
        _, reward, terminated, _, info = env.step(env.encode(16))
        total += reward
    assert total == pytest.approx(np.log(initial) - np.log(info["val_loss"]), rel=1e-9)


def test_update_cost_option_subtracts_the_share_of_updates(tiny_task):
    plain = BatchSizeEnv(tiny_task)
    costly = BatchSizeEnv(tiny_task, reward={"cost": "updates", "cost_weight": 2.0})
    plain.reset(seed=0)
    costly.reset(seed=0)
    _, r_plain, *_ = plain.step(plain.encode(4))
    _, r_costly, _, _, info = costly.step(costly.encode(4))
    assert r_plain - r_costly == pytest.approx(2.0 * info["interval_updates"] / costly.budget)


def test_divergence_terminates_cleanly_with_penalty_flag_and_finite_observation(exploding_task):
    env = BatchSizeEnv(exploding_task)
    observation, _ = env.reset(seed=0)
    terminated, episode_return = False, 0.0
    while not terminated:
        observation, reward, terminated, truncated, info = env.step(env.encode(4))
        episode_return += reward
    assert info["diverged"] is True and truncated is False
    # The diverging interval's reward sets the return to log(L_0 / threshold) - penalty, with the
    # default threshold of 10 L_0 (arbiter_env.envs.divergence): below any finished episode's return.
    assert episode_return == pytest.approx(-math.log(10.0) - env.reward_config.divergence_penalty)
    assert np.all(np.isfinite(observation)) and env.observation_space.contains(observation)
    assert observation[-1] == 1.0  # the "clipped" flag
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.encode(4))


@pytest.mark.parametrize(
    ("action_encoding", "action"),
    [
        ("discrete", 99),
        ("discrete", np.int64(-1)),
        ("discrete", np.uint8(99)),
        ("continuous", np.array([2.0])),
        ("relative", -1),
    ],
)
def test_out_of_space_action_raises_value_error_naming_the_space(
    tiny_task, action_encoding, action
):
    env = BatchSizeEnv(tiny_task, action_encoding=action_encoding)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(action)


def test_numpy_integer_actions_select_the_same_size_as_python_ints(tiny_task):
    env = BatchSizeEnv(tiny_task)
    env.reset(seed=0)
    for index in range(len(env.ladder)):
        for action in (np.int64(index), np.int32(index), np.array([index])[0]):
            assert env.decode(action) == env.decode(index) == env.ladder[index]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "no-such-task"}, "Unknown task 'no-such-task'"),
        ({"task": "digits-mlp", "task_kwargs": {"epochs": -1}}, "epochs must be > 0"),
        ({"task": "digits-mlp", "task_kwargs": {"colour": 1}}, "Unknown task field"),
        ({"task": "digits-mlp", "task_kwargs": {"optimizer": {"lr": 0}}}, "lr must be positive"),
        ({"task": "digits-mlp", "task_kwargs": {"batch_start": 1000}}, "batch_start"),
        ({"task": "digits-mlp", "action_encoding": "binary"}, "action_encoding"),
        ({"task": "digits-mlp", "lr_scaling": "cubic"}, "lr_scaling"),
        ({"task": "digits-mlp", "reward": {"cost": "money"}}, "reward cost"),
        ({"task": "digits-mlp", "num_intervals": 0}, "num_intervals"),
    ],
)
def test_bad_configuration_raises_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchSizeEnv(**kwargs)


def test_missing_data_files_raise_an_error_naming_the_path_and_files(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        BatchSizeEnv("cifar10-cnn", task_kwargs={"data_dir": tmp_path})
    assert str(tmp_path) in str(error.value) and "data_batch_1" in str(error.value)


@pytest.mark.parametrize("task", ["digits-mlp", "mnist1d-mlp", "mnist1d-cnn", "synthetic-teacher"])
def test_every_network_free_built_in_task_runs_an_episode(task):
    env = BatchSizeEnv(task, task_kwargs={"epochs": 0.2, "num_intervals": 2})
    env.reset(seed=0)
    terminated = False
    while not terminated:
        observation, _, terminated, _, info = env.step(env.encode(64))
    assert env.observation_space.contains(observation)
    assert info["samples"] == env.budget and 0 <= info["test_accuracy"] <= 1


def test_file_backed_tasks_run_an_episode_on_files_in_their_formats(tmp_path):
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    generator = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": generator.integers(0, 256, (8, 3072), dtype=np.uint8),
            b"labels": list(range(8)),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    env = BatchSizeEnv(
        "cifar10-cnn",
        task_kwargs={
            "data_dir": tmp_path,
            "epochs": 1,
            "num_intervals": 2,
            "batch_min": 4,
            "batch_max": 8,
            "batch_start": 4,
            "probe_size": 8,
        },
    )
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.encode(8))
    assert info["samples"] == 16  # 40 examples, 8 for validation, half the 32-sample budget


def test_registered_user_task_is_accepted_by_gym_make(tiny_task):
    arbiter_env.register_task("my-blobs", tiny_task, overwrite=True)
    env = gym.make(arbiter_env.ENV_ID, task="my-blobs")
    assert env.unwrapped.task is tiny_task


def test_heuristic_can_read_its_inputs_from_the_observation(tiny_task):
    from arbiter_env.envs.observation import observation_value

    env = BatchSizeEnv(tiny_task)
    env.reset(seed=0)
    observation, _, _, _, info = env.step(env.encode(32))
    assert observation_value(observation, "log2_batch_size") == pytest.approx(32)
    assert observation_value(observation, "log10_lr") == pytest.approx(info["lr"], rel=1e-5)
    assert observation_value(observation, "log10_noise_scale") == pytest.approx(
        info["noise_scale"], rel=1e-4
    )
    assert observation_value(observation, "half_batch_cosine") == pytest.approx(
        info["half_batch_cosine"], abs=1e-6
    )


def test_subproc_vec_env_runs_two_environments_built_from_the_module_prefixed_id():
    from stable_baselines3.common.env_util import make_vec_env

    # The workers get only the id, in fresh processes that never imported the package (pytest's
    # __main__ does not): Gymnasium's module prefix imports it there.
    venv = make_vec_env(
        f"arbiter_env:{arbiter_env.ENV_ID}",
        n_envs=2,
        vec_env_cls=SubprocVecEnv,
        env_kwargs={"task_kwargs": TINY_DIGITS},
    )
    try:
        venv.seed(0)
        venv.reset()
        _, rewards, _dones, infos = venv.step(np.array([2, 5]))
        assert rewards.shape == (2,) and [i["batch_size"] for i in infos] == [32, 256]
    finally:
        venv.close()


def test_default_gym_make_passes_both_checkers_with_warnings_as_errors():
    # No arguments at all, as a new user calls it; Gymnasium's checker also builds the env once
    # per declared render mode and renders it.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(arbiter_env.ENV_ID)
        gym_check_env(env.unwrapped)
        sb3_check_env(env)


def test_wall_time_is_opt_in_and_the_wall_time_reward_cost_works_without_it(tiny_task):
    actions = [1, 2, 3, 4]
    plain = BatchSizeEnv(tiny_task)
    _, info = plain.reset(seed=0)
    assert "wall_time" not in info and "episode_wall_time" not in info
    rewards = [plain.step(a)[1] for a in actions]
    costly = BatchSizeEnv(tiny_task, reward={"cost": "wall_time", "cost_weight": 1.0})
    costly.reset(seed=0)
    steps = [costly.step(a) for a in actions]
    assert all("wall_time" not in info for *_, info in steps)
    # The same trajectory, each reward lowered by that interval's (positive) wall time.
    assert all(step[1] < reward for step, reward in zip(steps, rewards, strict=True))
    recorded = BatchSizeEnv(tiny_task, record_wall_time=True)
    _, info = recorded.reset(seed=0)
    *_, info = recorded.step(0)
    assert info["wall_time"] > 0 and info["episode_wall_time"] >= info["wall_time"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encode_and_decode_work_before_the_first_reset(tiny_task, encoding):
    env = BatchSizeEnv(tiny_task, action_encoding=encoding)
    assert env.batch_size == tiny_task.batch_start
    assert env.decode(env.encode(32)) == 32


def test_sb3_builds_ppo_and_a_dummy_vec_env_from_the_registered_id():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    # SB3 builds envs from an id with render_mode="rgb_array" and retries only on TypeError.
    model = PPO("MlpPolicy", arbiter_env.ENV_ID, n_steps=8, batch_size=8)
    assert model.env.observation_space.shape == (14,)
    venv = make_vec_env(arbiter_env.ENV_ID, n_envs=2, env_kwargs={"task_kwargs": TINY_DIGITS})
    venv.seed(0)
    venv.reset()
    _, rewards, _, infos = venv.step(np.array([2, 5]))
    assert rewards.shape == (2,) and [i["batch_size"] for i in infos] == [32, 256]
