"""Checkpoint statistics load without unpickling, and give the same normalisation as before."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from arbiter_env.agents.sb3 import checkpoints
from arbiter_env.envs.batch_size import BatchSizeEnv


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
    checkpoints.save_vecnormalize(venv, tmp_path)
    assert not (tmp_path / checkpoints.LEGACY_PICKLE_FILE).exists()

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle must not be used")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    loaded = checkpoints.load_vecnormalize(
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
    venv.save(str(tmp_path / checkpoints.LEGACY_PICKLE_FILE))
    with pytest.warns(UserWarning, match="can run code"):
        loaded = checkpoints.load_vecnormalize(
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
    env = BatchSizeEnv.from_config(controller.config.env)
    assert len(run_episode(env, controller, seed=1_000_000).batch_sizes) == 2
    # The same weights as SB3's own (trusting) loader of the untouched checkpoint.
    trusted = load_rl_controller(checkpoint, trusted=True)
    observation = env.reset(seed=3)[0]
    assert controller.predict(observation)[0] == trusted.predict(observation)[0]


def test_checkpoint_with_an_unknown_pickled_entry_is_refused_unexecuted(
    checkpoint: Path, tmp_path: Path
) -> None:
    import shutil

    from arbiter_env.agents.sb3 import load_rl_controller
    from arbiter_env.agents.sb3.safe_load import UnsafeCheckpointError

    tampered = tmp_path / "tampered"
    shutil.copytree(checkpoint, tampered)
    marker = tmp_path / "pwned"
    _tamper(tampered / "model.zip", "surprise", _RunsCode(marker))
    with pytest.raises(UnsafeCheckpointError, match="surprise"):
        load_rl_controller(tampered)
    assert not marker.exists()


# --- one trust rule, whatever the folder layout --------------------------------------------------


class _CreatesMarker:
    """A pickle payload: unpickling it creates ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _bare_model_zip(path: Path, marker: Path) -> Path:
    """A real SB3 ``.zip`` (untrained PPO) whose pickled ``observation_space`` creates ``marker``."""
    from stable_baselines3 import PPO

    env = BatchSizeEnv("digits-mlp", task_kwargs={"epochs": 0.25}, num_intervals=2)
    PPO("MlpPolicy", env, n_steps=8, batch_size=8, device="cpu").save(path)
    _tamper(path, "observation_space", _CreatesMarker(marker))
    return path


def _zoo_run(folder: Path, marker: Path, *, model_payload: bool, pickle_payload: bool) -> Path:
    """rl-zoo3's layout: ``ENV.zip``, ``ENV/args.yml`` and ``ENV/vecnormalize.pkl``."""
    from arbiter_env.agents import zoo

    params = folder / zoo.ENV_NAME
    params.mkdir(parents=True)
    model = _bare_model_zip(folder / f"{zoo.ENV_NAME}.zip", marker)
    if not model_payload:  # the model is clean: only the statistics carry the payload
        from stable_baselines3 import PPO

        env = BatchSizeEnv("digits-mlp", task_kwargs={"epochs": 0.25}, num_intervals=2)
        PPO("MlpPolicy", env, n_steps=8, batch_size=8, device="cpu").save(model)
    (params / "args.yml").write_text("algo: ppo\nenv: arbiter_env/BatchSize-v0\n")
    if pickle_payload:
        (params / "vecnormalize.pkl").write_bytes(pickle.dumps(_CreatesMarker(marker)))
    return folder


def _evaluate_refuses(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture, *, names: Path
) -> None:
    """``arbiter evaluate --controller path`` exits 2 with one line naming ``names`` and the flag."""
    from arbiter_env.lab.cli import main

    run_dir = tmp_path / "eval-run"
    argv = ["evaluate", "--controller", str(path), "--seeds", "0", "--wandb", "disabled"]
    assert main([*argv, "--run-dir", str(run_dir)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(names) in lines[0] and "--trust-checkpoint" in lines[0]
    assert not run_dir.exists()  # refused before any work


@pytest.mark.parametrize(
    ("model_payload", "pickle_payload"), [(True, True), (True, False), (False, True)]
)
def test_a_zoo_run_folder_is_never_unpickled_without_trust_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture, model_payload: bool, pickle_payload: bool
) -> None:
    from arbiter_env.agents import zoo

    marker = tmp_path / "pwned"
    run = _zoo_run(
        tmp_path / "logs" / "ppo" / "run_1",
        marker,
        model_payload=model_payload,
        pickle_payload=pickle_payload,
    )
    _evaluate_refuses(run, tmp_path, capsys, names=run / f"{zoo.ENV_NAME}.zip")
    assert not marker.exists()


def test_a_bare_model_zip_is_never_unpickled_without_trust_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    model = _bare_model_zip(tmp_path / "downloaded" / "policy.zip", marker)
    _evaluate_refuses(model, tmp_path, capsys, names=model)
    _evaluate_refuses(model.parent, tmp_path, capsys, names=model)
    assert not marker.exists()


def test_deleting_config_yaml_does_not_get_past_the_trust_gate(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(checkpoint, tampered)
    marker = tmp_path / "pwned"
    _tamper(tampered / "model.zip", "observation_space", _CreatesMarker(marker))
    (tampered / "config.yaml").unlink()
    _evaluate_refuses(tampered, tmp_path, capsys, names=tampered / "model.zip")
    assert not marker.exists()


def test_a_vecnormalize_pickle_beside_our_checkpoint_is_refused_unexecuted(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(checkpoint, tampered)
    marker = tmp_path / "pwned"
    (tampered / checkpoints.VECNORMALIZE_FILE).unlink()
    pickle_file = tampered / checkpoints.LEGACY_PICKLE_FILE
    pickle_file.write_bytes(pickle.dumps(_CreatesMarker(marker)))
    _evaluate_refuses(tampered, tmp_path, capsys, names=pickle_file)
    assert not marker.exists()


def test_the_controller_registry_refuses_a_zoo_model_unless_trusted(tmp_path: Path) -> None:
    from arbiter_env.agents.sb3.safe_load import UnsafeCheckpointError
    from arbiter_env.controllers import make_controller

    marker = tmp_path / "pwned"
    run = _zoo_run(tmp_path / "run", marker, model_payload=True, pickle_payload=True)
    env = BatchSizeEnv("digits-mlp", task_kwargs={"epochs": 0.25}, num_intervals=2)
    with pytest.raises(UnsafeCheckpointError, match="trusted=True"):
        make_controller("ppo", env, checkpoint=str(run))
    assert not marker.exists()


def test_train_resume_needs_trust_checkpoint_and_unpickles_nothing_without_it(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    from arbiter_env.lab.cli import main

    tampered = tmp_path / "tampered"
    shutil.copytree(checkpoint, tampered)
    marker = tmp_path / "pwned"
    _tamper(tampered / "model.zip", "observation_space", _CreatesMarker(marker))
    run_dir = tmp_path / "resumed"
    argv = ["train", "--agent", "ppo", "--resume", str(tampered), "--no-eval"]
    assert main([*argv, "--run-dir", str(run_dir), "--wandb", "disabled"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(tampered) in lines[0] and "--trust-checkpoint" in lines[0]
    assert not marker.exists() and not run_dir.exists()


def test_help_states_the_trust_rule() -> None:
    from arbiter_env.lab.cli.parser import build_parser

    parser = build_parser()
    for command in ("evaluate", "train"):
        subparser = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        text = " ".join(subparser.format_help().split())
        assert "nothing in a checkpoint is unpickled unless this flag is given" in text


def _replace_policy_weights(model_file: Path, payload: object) -> None:
    """Rewrites ``policy.pth`` inside ``model.zip`` as a torch file holding ``payload``."""
    import io
    import zipfile

    import torch

    with zipfile.ZipFile(model_file) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO()
    torch.save({"weights": payload}, buffer)
    contents["policy.pth"] = buffer.getvalue()
    with zipfile.ZipFile(model_file, "w") as archive:
        for name, blob in contents.items():
            archive.writestr(name, blob)


@pytest.mark.parametrize("trusted", [False, True])
def test_a_pickle_payload_in_policy_pth_is_refused_in_one_line(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, trusted: bool
) -> None:
    import shutil

    from arbiter_env.lab.cli import main

    tampered = tmp_path / "tampered"
    shutil.copytree(checkpoint, tampered)
    marker = tmp_path / "pwned"
    _replace_policy_weights(tampered / "model.zip", _CreatesMarker(marker))
    argv = ["evaluate", "--controller", str(tampered), "--seeds", "0", "--wandb", "disabled"]
    argv += ["--trust-checkpoint"] if trusted else []
    assert main([*argv, "--run-dir", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(tampered / "model.zip") in lines[0], lines
    assert "nothing in it was run" in lines[0]
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a zip"])
def test_a_damaged_vecnormalize_npz_is_one_line_naming_it(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, content: bytes
) -> None:
    import shutil

    from arbiter_env.lab.cli import main

    tampered = tmp_path / "tampered"
    shutil.copytree(checkpoint, tampered)
    (tampered / checkpoints.VECNORMALIZE_FILE).write_bytes(content)
    argv = ["evaluate", "--controller", str(tampered), "--seeds", "0", "--wandb", "disabled"]
    assert main([*argv, "--run-dir", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(tampered / checkpoints.VECNORMALIZE_FILE) in lines[0], lines
    assert "is damaged" in lines[0]


def test_a_comparison_refuses_an_untrusted_zoo_model_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import yaml

    from arbiter_env.lab.cli import main

    marker = tmp_path / "pwned"
    run = _zoo_run(tmp_path / "zoo", marker, model_payload=True, pickle_payload=True)
    config = tmp_path / "experiment.yaml"
    contestant = {"name": "zoo", "controller": "ppo", "kwargs": {"checkpoint": str(run)}}
    experiment = {"name": "x", "tasks": ["digits-mlp"], "controllers": [contestant]}
    config.write_text(yaml.safe_dump(experiment | {"wandb": {"mode": "disabled"}}))
    assert main(["compare", "--config", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert str(run) in error and "trusted=True" in error, error
    assert not marker.exists() and not (tmp_path / "run" / "runs").exists()
