"""Bad actions, constructor values and command-line arguments fail at once, naming the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from arbiter_env.checks import check_device
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.lab.cli import main
from arbiter_env.tasks import Task


@pytest.mark.parametrize("action", ["0.5", 0.5 + 0j, True, np.array([True]), None])
def test_continuous_action_refuses_strings_complex_and_bools(tiny_task: Task, action) -> None:
    env = BatchSizeEnv(tiny_task, action_encoding="continuous")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="is not a real number"):
        env.step(action)


@pytest.mark.parametrize("action", [True, np.bool_(False), 1.0, "1"])
def test_discrete_action_refuses_bools_floats_and_strings(tiny_task: Task, action) -> None:
    env = BatchSizeEnv(tiny_task)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="is not an integer"):
        env.step(action)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_batch_size": 0}, "base_batch_size must be >= 1, got 0"),
        ({"base_batch_size": 64.0}, "base_batch_size must be an integer"),
        ({"task_kwargs": {"batch_min": 8.5}}, "batch_min must be an integer, got 8.5"),
        ({"task_kwargs": {"epochs": "1"}}, "epochs must be a number, got '1'"),
        ({"task_kwargs": {"num_intervals": True}}, "num_intervals must be an integer"),
        ({"task_kwargs": {"optimizer": {"lr": "0.1"}}}, "optimizer.lr must be a number"),
        ({"num_intervals": 2.5}, "num_intervals must be an integer"),
        ({"reward": {"divergence_penalty": "10"}}, "reward.divergence_penalty must be a number"),
    ],
)
def test_env_constructor_names_the_invalid_field(tiny_task: Task, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        BatchSizeEnv(tiny_task, **kwargs)


def test_family_instance_option_must_be_an_integer() -> None:
    env = BatchSizeEnv("digits-mlp-family", task_kwargs={"epochs": 0.1})
    with pytest.raises(ValueError, match=r"options\['family_instance'\] must be an integer"):
        env.reset(seed=0, options={"family_instance": 1.7})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_device_without_cuda_is_a_clear_error(tiny_task: Task) -> None:
    with pytest.raises(ValueError, match="device='cuda' but this torch build"):
        BatchSizeEnv(tiny_task.replace(device="cuda"))
    with pytest.raises(ValueError, match="Invalid device"):
        check_device("gpu")


# --- command line ---------------------------------------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return tmp_path


def test_episode_batch_size_off_the_ladder_is_refused(in_tmp: Path, capsys) -> None:
    assert main(["episode", "--batch-size", "100", "-t", "epochs=1"]) == 2
    error = capsys.readouterr().err
    assert "--batch-size 100 cannot be selected exactly" in error and "train at 128" in error
    assert not (in_tmp / "runs").exists()


def test_data_dir_task_override_is_accepted_for_file_tasks(in_tmp: Path, capsys) -> None:
    # Accepted as the builder's argument; the (empty) folder then has no files, which the loader
    # reports by name, rather than the override being refused as an unknown task field.
    code = main(
        ["episode", "--task", "mnist-mlp", "--batch-size", "128", "-t", f"data_dir={in_tmp}"]
    )
    error = capsys.readouterr().err
    assert code == 2 and "Unknown task field" not in error and "IDX files" in error


def test_controller_name_wins_over_a_folder_of_the_same_name(in_tmp: Path, capsys) -> None:
    (in_tmp / "fixed").mkdir()  # would have been loaded as a checkpoint before
    argv = ["evaluate", "--controller", "fixed", "--seeds", "0", "-t", "epochs=0.2"]
    assert main([*argv, "-t", "num_intervals=2", "--wandb", "disabled"]) == 0


def test_missing_checkpoint_path_says_so(in_tmp: Path, capsys) -> None:
    assert main(["evaluate", "--controller", "runs/nonexistent/final"]) == 2
    error = capsys.readouterr().err
    assert "no checkpoint folder there" in error and "Unknown controller" not in error


def test_rl_controller_without_checkpoint_is_refused(in_tmp: Path, capsys) -> None:
    assert main(["evaluate", "--controller", "ppo", "--seeds", "0"]) == 2
    assert "untrained policy" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [("hyperparams.n_steps=0", "n_steps must lie in"), ("hyperparams.gamma=2.0", "gamma must")],
)
def test_train_refuses_out_of_range_hyperparameters(in_tmp: Path, capsys, override, message):
    assert main(["train", "--agent", "ppo", override, "--wandb", "disabled"]) == 2
    assert message in capsys.readouterr().err
