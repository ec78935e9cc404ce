"""`arbiter compare` checks the whole plan first and reports every problem at once, one line each."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from arbiter_env.config import ConfigError
from arbiter_env.lab.cli import main
from arbiter_env.lab.experiments import load_experiment, run_comparison
from arbiter_env.lab.experiments.plan_check import PlanError


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return tmp_path


def test_every_problem_is_reported_at_once_before_anything_runs(in_tmp: Path, capsys) -> None:
    experiment = {
        "name": "broken",
        "tasks": ["digits-mlp"],
        "controllers": [
            {"name": "typo", "controller": "fixed", "kwargs": {"batchsize": 64}},
            {"name": "ok", "controller": "fixed", "kwargs": {"batch_size": 64}},
            {"name": "sac", "controller": "sac", "train_timesteps": 64},
            {
                "name": "ppo",
                "controller": "ppo",
                "train_timesteps": 64,
                "kwargs": {"overrides": ["hyperparams.gamma=2.0"]},
            },
        ],
        "seeds": [0, 10**23],
        "task_overrides": {"epochs": 0.1},
        "env": {"num_interval": 3},
        "wandb": {"mode": "disabled"},
    }
    config = in_tmp / "broken.yaml"
    config.write_text(yaml.safe_dump(experiment))
    run_dir = in_tmp / "run"
    started = time.perf_counter()
    assert main(["compare", "--config", str(config), "--run-dir", str(run_dir)]) == 2
    assert time.perf_counter() - started < 10
    error = capsys.readouterr().err
    lines = error.strip().splitlines()
    assert "problems in the experiment, nothing was run" in lines[0]
    problems = lines[1:]
    assert any("seeds[1]" in line and "2**63" in line for line in problems)
    assert any("env:" in line and "num_interval" in line for line in problems)
    assert not run_dir.exists()  # nothing written

    # Fix the env typo: the per-controller problems come out, each on one line.
    experiment["env"] = {}
    config.write_text(yaml.safe_dump(experiment))
    assert main(["compare", "--config", str(config), "--run-dir", str(run_dir)]) == 2
    problems = capsys.readouterr().err.strip().splitlines()[1:]
    joined = "\n".join(problems)
    assert "controllers[0] (typo)" in joined and "batchsize" in joined
    # SAC's config trains it on the continuous encoding; the comparison would evaluate it on
    # the discrete one, which used to fail only after training.
    assert "controllers[2] (sac): the agent trains with action_encoding='continuous'" in joined
    assert "controllers[3] (ppo)" in joined and "gamma must lie in [0, 1]" in joined
    assert "controllers[1] (ok)" not in joined
    assert all(line.startswith("  ") for line in problems)  # one line per problem


def test_missing_data_files_are_one_line_before_anything_runs(in_tmp: Path, capsys) -> None:
    config = _write(
        in_tmp,
        {
            "name": "x",
            "tasks": ["mnist-mlp"],
            "controllers": [{"name": "f", "controller": "fixed"}],
            "task_overrides": {"data_dir": str(in_tmp / "no-data")},
        },
    )
    assert main(["compare", "--config", str(config), "--run-dir", str(in_tmp / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "tasks[0] mnist-mlp: env: Could not find the mnist IDX" in lines[1]


def test_yaml_syntax_error_is_one_line_with_file_line_and_column(in_tmp: Path, capsys) -> None:
    config = in_tmp / "bad.yaml"
    config.write_text("name: x\ntasks: [digits-mlp\ncontrollers: []\n")
    assert main(["compare", "--config", str(config)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"{config}:3:" in error and "invalid YAML" in error


@pytest.mark.parametrize(
    "text",
    ["name: x\n\ttasks: []\n", "name: !!python/object/apply:os.system ['true']\n"],
    ids=["tab", "python-tag"],
)
def test_tabs_and_python_tags_are_one_line_errors(in_tmp: Path, capsys, text: str) -> None:
    config = in_tmp / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+:\d+: invalid YAML"):
        load_experiment(config)
    assert main(["compare", "--config", str(config)]) == 2


def test_max_workers_zero_is_refused(in_tmp: Path, capsys) -> None:
    config = in_tmp / "x.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "tasks": ["digits-mlp"],
                "controllers": [{"name": "f", "controller": "fixed"}],
            }
        )
    )
    assert main(["compare", "--config", str(config), "--max-workers", "0"]) == 2
    assert "max_workers must be >= 1" in capsys.readouterr().err


def test_plan_error_lists_problems(in_tmp: Path) -> None:
    config = load_experiment(
        _write(
            in_tmp,
            {"name": "x", "tasks": ["nope"], "controllers": [{"name": "f", "controller": "nah"}]},
        )
    )
    with pytest.raises(PlanError) as caught:
        run_comparison(config, in_tmp / "run", progress=False)
    assert len(caught.value.problems) == 2


def _write(folder: Path, data: dict) -> Path:
    file = folder / "experiment.yaml"
    file.write_text(yaml.safe_dump(data))
    return file


def test_plan_check_leaves_no_data_set_in_the_driver(in_tmp: Path) -> None:
    from arbiter_env.lab.experiments.plan_check import check_plan
    from arbiter_env.tasks import make_task
    from arbiter_env.training import data as training_data

    training_data._DATA_CACHE.pop(make_task("synthetic-teacher").data, None)
    before = set(training_data._DATA_CACHE)
    config = load_experiment(
        _write(
            in_tmp,
            {
                "name": "x",
                "tasks": ["synthetic-teacher"],
                "controllers": [{"name": "f", "controller": "fixed"}],
            },
        )
    )
    check_plan(config)
    assert set(training_data._DATA_CACHE) == before


def test_train_checks_env_data_and_encoding_before_creating_a_run_folder(
    in_tmp: Path, capsys
) -> None:
    run_dir = in_tmp / "run"
    argv = ["train", "--agent", "dqn", "--run-dir", str(run_dir), "--wandb", "disabled"]
    assert main([*argv, "env.action_encoding=continuous"]) == 2
    error = capsys.readouterr().err
    assert "DQN cannot act in the 'continuous' encoding" in error and not run_dir.exists()

    argv = ["train", "--agent", "ppo", "--task", "mnist-mlp", "--run-dir", str(run_dir)]
    assert main([*argv, "-t", f"data_dir={in_tmp}", "--wandb", "disabled"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Could not find the mnist IDX files" in lines[-1] and not run_dir.exists()


@pytest.mark.parametrize(
    "experiment",
    sorted((Path(__file__).resolve().parents[2] / "configs" / "experiments").glob("*.yaml")),
    ids=lambda path: path.stem,
)
def test_shipped_experiments_pass_the_plan_check(experiment: Path) -> None:
    from arbiter_env.lab.experiments.benchmark import experiment_config, load_benchmark
    from arbiter_env.lab.experiments.plan_check import check_plan

    if experiment.stem == "benchmark":  # the suite's own format, expanded into its comparison
        check_plan(experiment_config(load_benchmark(experiment)))
        return
    check_plan(load_experiment(experiment))


def test_plan_accepts_an_rl_zoo3_model_and_names_a_missing_checkpoint(in_tmp: Path) -> None:
    import shutil

    from arbiter_env.agents.sb3 import load_agent_config, train_rl_agent
    from arbiter_env.lab.experiments.plan_check import check_plan

    agent = load_agent_config(
        "ppo",
        overrides=[
            "env.task_kwargs={epochs: 0.25, num_intervals: 2}",
            "hyperparams.n_steps=8",
            "hyperparams.batch_size=8",
            "total_timesteps=8",
        ],
    )
    final = train_rl_agent(agent, in_tmp / "trained")
    zoo_run = in_tmp / "zoo-run"
    zoo_run.mkdir()
    shutil.copy(final / "model.zip", zoo_run / "model.zip")  # a zoo folder has no config.yaml

    def plan(checkpoint: str, **kwargs: object) -> object:
        return load_experiment(
            _write(
                in_tmp,
                {
                    "name": "x",
                    "tasks": ["digits-mlp"],
                    "controllers": [
                        {
                            "name": "rl",
                            "controller": "ppo",
                            "kwargs": {"checkpoint": checkpoint, **kwargs},
                        }
                    ],
                },
            )
        )

    check_plan(plan(str(zoo_run), trusted=True))  # a zoo model can only be unpickled
    with pytest.raises(PlanError, match="trusted=True"):
        check_plan(plan(str(zoo_run)))
    check_plan(plan(str(final)))
    with pytest.raises(PlanError, match="controllers\\[0\\] \\(rl\\)"):
        check_plan(plan(str(in_tmp / "nowhere")))
