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


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _tamper(model_file: Path, key: str, payload: object) -> None:
    """Rewrites one entry of model.zip's JSON ``data`` as SB3 would store a pickled value."""
    import base64
    import json
    import zipfile

    import cloudpickle

    with zipfile.ZipFile(model_file) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(contents["data"])
    data[key] = {
        ":type:": "<class 'object'>",
        ":serialized:": base64.b64encode(cloudpickle.dumps(payload)).decode(),
    }
    contents["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(model_file, "w") as archive:
        for name, blob in contents.items():
            archive.writestr(name, blob)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from arbiter_env.agents.sb3 import load_agent_config, train_rl_agent

    config = load_agent_config(
        "ppo",
        overrides=[
            "env.task_kwargs={epochs: 0.25, num_intervals: 2}",
            "hyperparams.n_steps=8",
            "hyperparams.batch_size=8",
            "total_timesteps=16",
            "vec_normalize.enabled=true",
        ],
    )
    return train_rl_agent(config, tmp_path_factory.mktemp("ppo"))


def test_checkpoint_with_a_malicious_known_entry_loads_without_running_it(
    checkpoint: Path, tmp_path: Path
) -> None:
    import shutil

    from arbiter_env.agents.sb3 import load_rl_controller
    from arbiter_env.controllers import run_episode

    tampered = tmp_path / "tampered"
    shutil.copytree(checkpoint, tampered)
    marker = tmp_path / "pwned"
    _tamper(tampered / "model.zip", "observation_space", _RunsCode(marker))
    controller = load_rl_controller(tampered)
    assert not marker.exists()
    env = controller.config.env.make()
    assert len(run_episode(env, controller, seed=1_000_000).batch_sizes) == 2
    # The same weights as SB3's own (trusting) loader of the untouched checkpoint.
    trusted = load_rl_controller(checkpoint, trusted=True)
    observation = env.reset(seed=3)[0]
    assert controller.predict(observation)[0] == trusted.predict(observation)[0]


def test_checkpoint_with_an_unknown_pickled_entry_is_refused_unexecuted(
    checkpoint: Path, tmp_path: Path
) -> None:
    import shutil

    from arbiter_env.agents.safe_load import UnsafeCheckpointError
    from arbiter_env.agents.sb3 import load_rl_controller

    tampered = tmp_path / "tampered"
    shutil.copytree(checkpoint, tampered)
    marker = tmp_path / "pwned"
    _tamper(tampered / "model.zip", "surprise", _RunsCode(marker))
    with pytest.raises(UnsafeCheckpointError, match="surprise"):
        load_rl_controller(tampered)
    assert not marker.exists()
