"""User code from the command line: --import, imports: in YAML, the working folder, workers."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from arbiter_env import user_code
from arbiter_env.lab.cli import build_parser, main

PLUGIN = textwrap.dedent(
    '''
    """A user's module: one task and one controller."""
    from arbiter_env import make_task, register_task
    from arbiter_env.controllers import register_controller
    from arbiter_env.controllers import BatchSizeController


    class Halves(BatchSizeController):
        """Always 64: a user's own controller."""

        def choose_batch_size(self, observation):
            return 64


    register_task("user-digits", lambda: make_task("digits-mlp", epochs=0.2, num_intervals=2),
                  overwrite=True)
    register_controller("user-64", Halves, overwrite=True)
    '''
)


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder holding the user's module, which is not on sys.path yet."""
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_plugin", raising=False)
    # Restored after the test: the commands export the module names for worker processes.
    monkeypatch.delenv(user_code.IMPORTS_ENV_VAR, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    yield tmp_path
    sys.modules.pop("my_plugin", None)


@pytest.mark.parametrize(
    "command",
    [
        ["tasks"],
        ["controllers"],
        ["episode", "--batch-size", "8"],
        ["train", "--agent", "ppo"],
        ["evaluate", "--controller", "fixed"],
        ["compare", "--config", "x.yaml"],
        ["plot", "RUN"],
    ],
)
def test_every_command_takes_repeatable_import_options(command) -> None:
    args = build_parser().parse_args([*command, "--import", "a", "--import", "b.c"])
    assert args.imports == ["a", "b.c"]


def test_import_makes_a_module_in_the_working_folder_usable_by_a_command(
    user_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["controllers", "--import", "my_plugin"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("user-64"))
    assert "Always 64: a user's own controller." in line
    run = user_folder / "run"
    argv = ["evaluate", "--import", "my_plugin", "--controller", "user-64", "--task", "user-digits"]
    assert main([*argv, "--seeds", "0", "--run-dir", str(run)]) == 0
    intervals = [json.loads(x) for x in (run / "intervals.jsonl").read_text().splitlines()]
    assert [row["batch_size"] for row in intervals] == [64, 64]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["imports"] == ["my_plugin"]
    # Worker processes learn the module names from the environment.
    assert os.environ[user_code.IMPORTS_ENV_VAR] == "my_plugin"


def test_imports_in_a_training_yaml_are_imported_before_the_task_is_looked_up(
    user_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    config = user_folder / "arbiter.yaml"
    config.write_text(
        yaml.safe_dump(
            {"imports": ["my_plugin"], "task": "user-digits", "agent": {"warmup_max_iters": 30}}
        )
    )
    run = user_folder / "run"
    assert (
        main(["train", "--agent", "arbiter", "--config", str(config), "--run-dir", str(run)]) == 0
    )
    assert "Arbiter on user-digits" in capsys.readouterr().out


def test_an_unimportable_module_is_a_usage_error_naming_it_and_the_working_folder(
    user_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["tasks", "--import", "no_such_plugin"]) == 2
    err = capsys.readouterr().err
    assert "cannot import 'no_such_plugin'" in err and str(user_folder) in err


def test_a_subproc_env_worker_imports_the_modules_named_in_the_environment_first(
    user_folder: Path,
) -> None:
    # What a SubprocVecEnv worker of `arbiter train --import my_plugin` gets: the pickled env
    # factory, and the module names in the environment. Importing the package reads nothing.
    from arbiter_env.agents.sb3.envs import EnvFactory
    from arbiter_env.envs.config import EnvConfig

    user_code.share_with_workers(user_code.import_modules(["my_plugin"]))
    factory = pickle.dumps(EnvFactory(EnvConfig(task="user-digits")))
    code = (
        "import pickle, sys; import arbiter_env; "
        "assert 'my_plugin' not in sys.modules, 'imported by import arbiter_env'; "
        "env = pickle.loads(sys.stdin.buffer.read())(); print(env.unwrapped.task.epochs)"
    )
    environment = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=factory,
        cwd=user_folder,
        env=environment,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "0.2"  # the user task's epochs, not the default
    broken = environment | {user_code.IMPORTS_ENV_VAR: "no_such_plugin"}
    result = subprocess.run(
        [sys.executable, "-c", code], input=factory, env=broken, capture_output=True, timeout=120
    )
    assert result.returncode != 0 and "ARBITER_IMPORTS" in result.stderr.decode()


@pytest.mark.slow
def test_compare_from_the_console_script_imports_a_module_of_the_working_folder_in_workers(
    user_folder: Path,
) -> None:
    experiment = {
        "name": "user",
        "tasks": ["user-digits"],
        "controllers": [{"name": "mine", "controller": "user-64"}],
        "seeds": [0, 1],
        "engine": {"max_workers": 2},
        "wandb": {"mode": "disabled"},
    }
    (user_folder / "user.yaml").write_text(yaml.safe_dump(experiment))
    script = Path(sys.executable).with_name("arbiter")
    result = subprocess.run(
        [
            str(script),
            "compare",
            "--config",
            "user.yaml",
            "--import",
            "my_plugin",
            "--run-dir",
            "r",
        ],
        cwd=user_folder,
        env=os.environ | {"PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| mine | 2/2 | 0 |" in result.stdout
