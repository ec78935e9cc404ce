"""Task families: seeded instance sets, disjoint train/test splits, and BatchSizeEnv integration."""

import dataclasses

import numpy as np
import pytest

from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.tasks import (
    TaskFamily,
    get_family,
    list_families,
    make_task,
    register_family,
    register_task,
)
from arbiter_env.tasks.families import _draw_instances

TINY = {"epochs": 0.5, "num_intervals": 4}
BUILT_IN = ["digits-mlp-family", "mnist1d-mlp-family", "synthetic-teacher-family"]


def test_one_family_ships_per_built_in_dataset():
    assert set(BUILT_IN) <= set(list_families())


@pytest.mark.parametrize("name", BUILT_IN)
def test_train_and_test_instances_do_not_overlap(name):
    family = get_family(name)
    train, test = family.instances("train"), family.instances("test")
    assert len(train) + len(test) == family.num_instances
    assert len(test) == family.num_test >= 1
    assert not {i.index for i in train} & {i.index for i in test}
    assert not {i._key() for i in train} & {i._key() for i in test}
    assert all(i.split == "train" for i in train) and all(i.split == "test" for i in test)


def test_digits_family_samples_the_documented_settings():
    family = get_family("digits-mlp-family")
    instances = family.instances()
    assert all(0.02 <= i.lr <= 0.2 for i in instances)
    assert {i.momentum for i in instances} == {0.0, 0.9}
    assert {i.width for i in instances} == {32, 128, 512}
    task = family.make_task(instances[0])
    assert task.optimizer.lr == instances[0].lr
    assert task.optimizer.momentum == instances[0].momentum


def test_instances_depend_only_on_the_family_fields():
    family = get_family("digits-mlp-family")
    # Bypass the per-process cache: a fresh draw (as in another process) gives the same set.
    assert _draw_instances.__wrapped__(family) == family.instances()
    reseeded = dataclasses.replace(family, seed=1)
    assert _draw_instances.__wrapped__(reseeded) != family.instances()


def test_same_seed_samples_the_same_instance():
    env = BatchSizeEnv("digits-mlp-family", task_kwargs=TINY)
    seen = {}
    for seed in range(5):
        _, info = env.reset(seed=seed)
        seen[seed] = info["family_instance"]
    for seed in range(5):
        _, info = env.reset(seed=seed)
        assert info["family_instance"] == seen[seed]
    assert len(set(seen.values())) > 1  # different seeds reach different instances


def test_reset_draws_only_from_the_chosen_split_and_info_names_the_instance():
    family = get_family("digits-mlp-family")
    test_indices = {i.index for i in family.instances("test")}
    env = BatchSizeEnv("digits-mlp-family", family_split="test", task_kwargs=TINY)
    for seed in range(4):
        _, info = env.reset(seed=seed)
        assert info["family_instance"] in test_indices
        assert info["family_split"] == "test"
        assert info["task"] == f"digits-mlp-family#{info['family_instance']}"
        assert info["family_settings"]["lr"] == env.task.optimizer.lr
        _, _, _, _, info = env.step(env.action_space.sample())
        assert info["family_instance"] in test_indices


def test_spaces_stay_fixed_and_trainers_are_cached_per_instance():
    env = BatchSizeEnv("digits-mlp-family", task_kwargs=TINY)
    observation_space, action_space = env.observation_space, env.action_space
    trainers = {}
    for seed in [0, 1, 0]:
        observation, info = env.reset(seed=seed)
        assert env.observation_space == observation_space and env.action_space == action_space
        assert observation_space.contains(observation)
        trainers.setdefault(info["family_instance"], env.trainer)
        assert trainers[info["family_instance"]] is env.trainer
        terminated = False
        while not terminated:
            observation, _, terminated, _, _ = env.step(env.encode(64))
            assert observation_space.contains(observation)


def test_task_kwargs_override_every_instance():
    env = BatchSizeEnv("digits-mlp-family", task_kwargs=TINY)
    for seed in range(3):
        env.reset(seed=seed)
        assert env.task.epochs == 0.5 and env.task.num_intervals == 4


def test_reset_option_pins_an_instance_of_the_split():
    family = get_family("digits-mlp-family")
    test_index = family.instances("test")[0].index
    env = BatchSizeEnv("digits-mlp-family", family_split="test", task_kwargs=TINY)
    _, info = env.reset(seed=0, options={"family_instance": test_index})
    assert info["family_instance"] == test_index
    train_index = family.instances("train")[0].index
    with pytest.raises(ValueError, match="not in the 'test' split"):
        env.reset(seed=0, options={"family_instance": train_index})


def test_same_seed_gives_identical_family_episodes():
    def rollout():
        env = BatchSizeEnv("digits-mlp-family", task_kwargs=TINY, record_wall_time=False)
        observation, _ = env.reset(seed=3)
        observations, rewards = [observation], []
        for action in [0, 3, 6, 2]:
            observation, reward, _, _, _ = env.step(action)
            observations.append(observation)
            rewards.append(reward)
        return np.stack(observations), rewards

    first, second = rollout(), rollout()
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1] == second[1]


def test_family_split_is_rejected_for_a_single_task_and_checked_for_families():
    with pytest.raises(ValueError, match="only to task families"):
        BatchSizeEnv("digits-mlp", family_split="test")
    with pytest.raises(ValueError, match="family_split must be 'train' or 'test'"):
        BatchSizeEnv("digits-mlp-family", family_split="validation")


def _bounded_task(batch_max: int = 512):
    return make_task("digits-mlp").replace(name="bounded-digits", batch_max=batch_max)


def test_a_family_needs_one_ladder():
    register_task("bounded-digits", _bounded_task, overwrite=True)
    family = TaskFamily(
        name="uneven-family",
        base_task="bounded-digits",
        lr_range=(0.01, 0.1),
        data_variants=({"batch_max": 256}, {"batch_max": 512}),
        num_instances=8,
    )
    with pytest.raises(ValueError, match="equal batch_min and batch_max"):
        BatchSizeEnv(family)


def test_register_family_validates_names_and_fields():
    with pytest.raises(ValueError, match="already a task name"):
        register_family(TaskFamily(name="digits-mlp", base_task="digits-mlp", lr_range=(0.1, 1)))
    with pytest.raises(ValueError, match="unknown base task"):
        register_family(TaskFamily(name="x-family", base_task="no-such-task", lr_range=(0.1, 1)))
    with pytest.raises(ValueError, match="lr_range"):
        TaskFamily(name="bad", base_task="digits-mlp", lr_range=(0.1, 0.01))
    with pytest.raises(ValueError, match="at least one train and one test"):
        TaskFamily(
            name="bad",
            base_task="digits-mlp",
            lr_range=(0.01, 0.1),
            num_instances=10,
            test_fraction=0.01,
        )
    with pytest.raises(ValueError, match="distinct"):
        # Only two distinct settings exist: lr fixed, two momenta.
        _draw_instances(
            TaskFamily(
                name="narrow",
                base_task="digits-mlp",
                lr_range=(0.1, 0.1),
                momenta=(0.0, 0.9),
                num_instances=4,
            )
        )
