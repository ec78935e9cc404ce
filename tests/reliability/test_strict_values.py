"""Numbers mean what they say: a fixed size is one the env can select, a batch fits the data,
out-of-range actions and options are named as such, and names stay inside their folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbiter_env.controllers import make_controller
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.tasks import Task


@pytest.mark.parametrize(("wanted", "nearest"), [(10**12, 512), (100, 128), (5, 8)])
def test_a_fixed_size_off_the_ladder_is_refused_naming_the_nearest_rung(
    wanted: int, nearest: int
) -> None:
    env = BatchSizeEnv("digits-mlp")
    with pytest.raises(ValueError, match=f"batch_size {wanted} cannot be selected.*is {nearest}"):
        make_controller("fixed", env, batch_size=wanted)


def test_a_fixed_size_on_the_ladder_or_under_continuous_actions_is_kept() -> None:
    assert make_controller("fixed", BatchSizeEnv("digits-mlp"), batch_size=64).config.batch_size
    continuous = BatchSizeEnv("digits-mlp", action_encoding="continuous")
    assert make_controller("fixed", continuous, batch_size=100).batch_size_at(0.5) == 100


def test_a_fixed_size_off_the_ladder_is_one_line_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from arbiter_env.lab.cli import main

    argv = ["evaluate", "--controller", "fixed", "batch_size=1000000000000", "--seeds", "0"]
    assert main([*argv, "--wandb", "disabled", "--run-dir", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "nearest size it can select is 512" in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_batch_max_above_the_training_set_is_refused(tiny_task: Task) -> None:
    # tiny-blobs trains on 160 examples: a batch of 10**9 could never be what ran.
    with pytest.raises(ValueError, match=r"batch_max 1000000000 is above the 160 examples"):
        BatchSizeEnv(tiny_task.replace(batch_max=10**9))
    assert BatchSizeEnv(tiny_task.replace(batch_max=160)).ladder[-1] == 160


@pytest.mark.parametrize("encoding", ["discrete", "relative", "continuous"])
def test_a_huge_integer_action_is_outside_the_space_not_a_non_integer(
    tiny_task: Task, encoding: str
) -> None:
    env = BatchSizeEnv(tiny_task, action_encoding=encoding)
    env.reset(seed=0)
    for action in (2**70, -(2**70)):
        with pytest.raises(ValueError, match="is outside the action space") as refused:
            env.step(action)
        assert "not an integer" not in str(refused.value)


@pytest.mark.parametrize("options", ["x", 3, ["a"]])
def test_reset_options_must_be_a_dict(tiny_task: Task, options: object) -> None:
    env = BatchSizeEnv(tiny_task)
    with pytest.raises(TypeError, match=r"options=\.\.\.\) must be a dict or None"):
        env.reset(seed=0, options=options)  # type: ignore[arg-type]
    env.reset(seed=0, options={})


@pytest.mark.parametrize("name", ["../../../escaped", "/tmp/abs", "a/b", "..", ".hidden"])
def test_an_experiment_name_becomes_one_folder_inside_output_dir(tmp_path: Path, name: str) -> None:
    from arbiter_env.lab.experiments.config import ControllerSpec, ExperimentConfig
    from arbiter_env.lab.experiments.runner import default_run_dir

    output_dir = tmp_path / "out"
    config = ExperimentConfig(
        name=name,
        tasks=["digits-mlp"],
        controllers=[ControllerSpec(name="b64", controller="fixed")],
        output_dir=str(output_dir),
    )
    run_dir = default_run_dir(config)
    assert run_dir.parent == output_dir
    assert run_dir.resolve().parent == output_dir.resolve()
    assert not run_dir.name.startswith(".")


def test_a_task_name_with_separators_stays_one_folder_of_the_run(tmp_path: Path) -> None:
    from arbiter_env.lab.experiments.config import ControllerSpec, ExperimentConfig
    from arbiter_env.lab.experiments.plan import plan_runs

    config = ExperimentConfig(
        name="x",
        tasks=["../../outside"],
        controllers=[ControllerSpec(name="b64", controller="fixed")],
        seeds=[0],
    )
    _, evaluate = plan_runs(config, tmp_path)
    folder = Path(evaluate[0].folder).resolve()
    assert (
        folder.is_relative_to(tmp_path.resolve())
        and folder.parent.parent.parent == (tmp_path / "runs").resolve()
    )


@pytest.mark.parametrize("n_envs", [True, False, 0, -1, 2.0, "2"])
def test_make_population_env_takes_a_positive_integer_not_a_bool(n_envs: object) -> None:
    pytest.importorskip("stable_baselines3")
    from arbiter_env.agents.population_vec_env import make_population_env

    with pytest.raises(ValueError, match="n_envs must be a positive integer"):
        make_population_env("digits-mlp", n_envs)  # type: ignore[arg-type]
