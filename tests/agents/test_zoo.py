"""Models saved by rl-zoo3 load as controllers (arbiter_env.agents.zoo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from arbiter_env.agents import zoo
from arbiter_env.controllers import make_controller
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.lab.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY_TASK = {"epochs": 0.2, "num_intervals": 3}


def save_like_the_zoo(folder: Path, *, normalize: bool = True) -> tuple[PPO, VecNormalize | None]:
    """A PPO model saved in rl-zoo3's layout (ExperimentManager.save_trained_model/_save_config)."""
    env_kwargs = {"task_kwargs": dict(TINY_TASK)}
    venv = DummyVecEnv([lambda: BatchSizeEnv("digits-mlp", **env_kwargs)])
    vec_normalize = VecNormalize(venv, norm_reward=False) if normalize else None
    model = PPO("MlpPolicy", vec_normalize or venv, n_steps=8, batch_size=8, seed=0)
    if vec_normalize is not None:
        # Statistics that differ from the identity, so that a skipped normalisation shows.
        vec_normalize.obs_rms.mean = np.linspace(-1, 1, vec_normalize.obs_rms.mean.shape[0])
        vec_normalize.obs_rms.var = np.full_like(vec_normalize.obs_rms.var, 4.0)
    params = folder / zoo.ENV_NAME
    params.mkdir(parents=True)
    model.save(folder / zoo.ENV_NAME)
    if vec_normalize is not None:
        vec_normalize.save(str(params / "vecnormalize.pkl"))
    args = OrderedDict(algo="ppo", env="arbiter_env/BatchSize-v0", env_kwargs=env_kwargs)
    (params / "args.yml").write_text(yaml.dump(args))  # as the zoo writes it: an OrderedDict tag
    return model, vec_normalize


def test_a_zoo_model_loads_with_its_frozen_vecnormalize(tmp_path: Path) -> None:
    model, vec_normalize = save_like_the_zoo(tmp_path / "run")
    assert zoo.is_zoo_model(tmp_path / "run")
    assert zoo.read_zoo_args(tmp_path / "run")["env_kwargs"] == {"task_kwargs": TINY_TASK}
    env = BatchSizeEnv("digits-mlp", task_kwargs=TINY_TASK)
    controller = zoo.load_zoo_controller(tmp_path / "run", env, trusted=True)
    assert controller.vec_normalize is not None and not controller.vec_normalize.training
    observation, _ = env.reset(seed=0)
    expected, _ = model.predict(vec_normalize.normalize_obs(observation), deterministic=True)
    action, _ = controller.predict(observation, deterministic=True)
    assert int(action) == int(expected)
    np.testing.assert_allclose(
        controller.vec_normalize.obs_rms.mean, vec_normalize.obs_rms.mean, rtol=0
    )


def test_registered_rl_controllers_accept_a_zoo_model_zip(tmp_path: Path) -> None:
    save_like_the_zoo(tmp_path / "run", normalize=False)
    env = BatchSizeEnv("digits-mlp", task_kwargs=TINY_TASK)
    controller = make_controller(
        "ppo", env, checkpoint=str(tmp_path / "run" / f"{zoo.ENV_NAME}.zip"), trusted=True
    )
    assert controller.vec_normalize is None
    with pytest.raises(ValueError, match="no controller arguments"):
        make_controller("ppo", env, checkpoint=str(tmp_path / "run"), total_timesteps=5)


def test_evaluate_runs_a_zoo_model_in_the_env_the_zoo_trained_it_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    save_like_the_zoo(tmp_path / "logs" / "ppo" / f"{zoo.ENV_NAME}_1")
    run = tmp_path / "eval"
    argv = ["evaluate", "--trust-checkpoint", "--controller", f"logs/ppo/{zoo.ENV_NAME}_1"]
    argv += ["--seeds", "0"]
    assert main([*argv, "--wandb", "disabled", "--run-dir", str(run)]) == 0
    (episode,) = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert episode["intervals"] == TINY_TASK["num_intervals"]  # the zoo's env_kwargs were used


@pytest.mark.slow
def test_rl_zoo3_trains_ppo_with_the_shipped_hyperparameters_and_evaluate_loads_it(
    tmp_path: Path,
) -> None:
    pytest.importorskip("rl_zoo3")
    command = [
        sys.executable,
        "-m",
        "rl_zoo3.train",
        "--algo",
        "ppo",
        "--env",
        "arbiter_env/BatchSize-v0",
        "--gym-packages",
        "arbiter_env",
        "-conf",
        str(REPO / "configs" / "zoo" / "ppo.yml"),
        "--env-kwargs",
        "task_kwargs:dict(epochs=0.2,num_intervals=4)",
        "-n",
        "64",
        "-params",
        "n_envs:1",
        "n_steps:32",
        "batch_size:32",
        "--seed",
        "0",
        "--log-folder",
        "logs",
    ]
    environment = os.environ | {"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    subprocess.run(command, cwd=tmp_path, env=environment, check=True, timeout=600)
    run = tmp_path / "logs" / "ppo" / f"{zoo.ENV_NAME}_1"
    assert (run / f"{zoo.ENV_NAME}.zip").is_file()
    assert (run / zoo.ENV_NAME / "vecnormalize.pkl").is_file()  # normalize: in configs/zoo/ppo.yml
    evaluate = [sys.executable, "-m", "arbiter_env.lab.cli", "evaluate", "--trust-checkpoint"]
    evaluate += ["--controller", str(run)]
    result = subprocess.run(
        [*evaluate, "--seeds", "0", "--wandb", "disabled", "--run-dir", str(tmp_path / "eval")],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "a fresh controller per seed" in result.stdout
