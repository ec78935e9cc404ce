"""Checkpoint statistics load without unpickling, and give the same normalisation as before."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from arbiter_env.agents import vecnormalize_io
from arbiter_env.env import BatchSizeEnv


def _trained_normalizer() -> tuple[VecNormalize, BatchSizeEnv]:
    env = BatchSizeEnv("digits-mlp", task_kwargs={"epochs": 0.25}, num_intervals=2)
    venv = VecNormalize(DummyVecEnv([lambda: env]), gamma=0.9, clip_obs=5.0)
    venv.seed(0)
    venv.reset()
    for _ in range(3):
        venv.step(np.array([1]))
    return venv, env


def test_vecnormalize_statistics_round_trip_without_pickle(tmp_path: Path, monkeypatch) -> None:
    venv, env = _trained_normalizer()
    vecnormalize_io.save_vecnormalize(venv, tmp_path)
    assert not (tmp_path / vecnormalize_io.LEGACY_PICKLE_FILE).exists()

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle must not be used")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    loaded = vecnormalize_io.load_vecnormalize(
        tmp_path, observation_space=env.observation_space, action_space=env.action_space
    )
    observation = env.observation_space.sample()
    np.testing.assert_array_equal(
        loaded.normalize_obs(observation), venv.normalize_obs(observation)
    )
    assert loaded.gamma == 0.9 and loaded.clip_obs == 5.0
    np.testing.assert_array_equal(loaded.ret_rms.var, venv.ret_rms.var)


def test_legacy_vecnormalize_pickle_is_read_only_with_a_warning(tmp_path: Path) -> None:
    venv, env = _trained_normalizer()
    venv.save(str(tmp_path / vecnormalize_io.LEGACY_PICKLE_FILE))
    with pytest.warns(UserWarning, match="can run code"):
        loaded = vecnormalize_io.load_vecnormalize(
            tmp_path, observation_space=env.observation_space, action_space=env.action_space
        )
    np.testing.assert_array_equal(loaded.obs_rms.mean, venv.obs_rms.mean)
