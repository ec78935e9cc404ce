"""The ``arbiter`` command line: listings, a tiny episode, training dispatch and bad arguments."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from arbiter_env.lab.cli import main

# Tiny budgets: one epoch of digits in two or three intervals takes about a second.
TINY = ["-t", "epochs=1", "-t", "num_intervals=2"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default run folders (runs/...) land in tmp_path; W&B stays offline and inside it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / variable.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tasks_lists_digits_mlp_and_its_family(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "digits-mlp" in out and "digits-mlp-family" in out


def test_controllers_lists_fixed(capsys):
    assert main(["controllers"]) == 0
    assert "fixed" in capsys.readouterr().out.split()


def test_controllers_print_plain_text_without_restructuredtext_markup(capsys):
    from arbiter_env.lab.cli.listing import plain_text

    assert main(["controllers"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out and ":class:" not in out
    assert "B(p) = B_start" in out  # exponential-growth's formula, without its backquotes
    assert plain_text("see :func:`make_task`, ``B``, **bold** and `link`_") == (
        "see make_task, B, bold and link"
    )


def test_episode_runs_on_a_tiny_budget_and_prints_a_summary(tmp_path, capsys):
    run_dir = tmp_path / "episode"
    argv = ["episode", "--task", "digits-mlp", "--batch-size", "32", "--seed", "3"]
    assert main([*argv, "--run-dir", str(run_dir), "epochs=1", "num_intervals=3"]) == 0
    out = capsys.readouterr().out
    assert "fixed batch size 32" in out and "test acc" in out and "32×3" in out
    assert f"run folder: {run_dir}" in out and "wandb sync" in out
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["task_overrides"] == {"epochs": 1, "num_intervals": 3}
    assert config["seeds"] == [3]
    intervals = read_jsonl(run_dir / "intervals.jsonl")
    assert [r["batch_size"] for r in intervals] == [32, 32, 32]
    (episode,) = read_jsonl(run_dir / "episodes.jsonl")
    assert episode["seed"] == 3 and episode["complete"]
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def test_evaluate_runs_a_registered_controller_over_seeds(tmp_path, capsys):
    run_dir = tmp_path / "eval"
    argv = ["evaluate", "--controller", "fixed", "batch_size=64", "--seeds", "0", "1", *TINY]
    assert main([*argv, "--run-dir", str(run_dir), "--wandb", "disabled"]) == 0
    out = capsys.readouterr().out
    assert "fixed on digits-mlp" in out and "mean" in out
    assert [e["seed"] for e in read_jsonl(run_dir / "episodes.jsonl")] == [0, 1]
    assert not (run_dir / "wandb").exists()


def test_evaluate_keeps_a_search_study_in_the_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "search"
    argv = ["evaluate", "--controller", "random-search", "n_trials=1", "--learn", "--seeds", "0"]
    assert main([*argv, *TINY, "--run-dir", str(run_dir), "--wandb", "disabled"]) == 0
    assert list((run_dir / "learn").glob("*.db"))  # --learn's work folder
    assert not (tmp_path / "runs").exists()


def test_default_run_folder_is_timestamped_under_runs(tmp_path, capsys):
    assert main(["episode", "--batch-size", "16", "--wandb", "disabled", *TINY]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.endswith("-episode") and (run_dir / "run.json").is_file()


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["episode", "--task", "no-such-task", "--batch-size", "8"], "no-such-task"),
        (["evaluate", "--controller", "no-such-controller", *TINY], "no-such-controller"),
        (["evaluate", "--controller", "fixed", "batch_size"], "'batch_size' is not of the form"),
        (["evaluate", "--controller", "fixed", "batch_sise=8", *TINY], "batch_sise"),
        (["evaluate", "--controller", "fixed", "batch_size=big", *TINY], "batch_size"),
        (["episode", "--batch-size", "8", "epochs=many"], "task.epochs: expected a number"),
        (["episode", "--batch-size", "8", "-t", "no_such_field=1"], "no_such_field"),
        (["episode", "--batch-size", "8", "optimizer.lr=fast"], "task.optimizer.lr"),
        (["evaluate", "--controller", "fixed", "--seeds", "0", "x"], "'x' is not an integer"),
        (["train", "--agent", "no-such-agent"], "no-such-agent"),
        (["train", "--agent", "ppo", "--config", "missing.yaml"], "missing.yaml"),
        (["train", "--agent", "ppo", "--task", "no-such-task"], "no-such-task"),
        (["train", "--agent", "arbiter", "agent.no_such_key=1"], "no_such_key"),
        (["train", "--agent", "arbiter", "seeds=zero"], "seeds"),
    ],
)
def test_bad_arguments_exit_nonzero_with_a_one_line_message_naming_the_problem(
    argv, named, tmp_path, capsys
):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert named in err
    assert not (tmp_path / "runs").exists()  # nothing was started


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["episode", "--batch-size", "large"], "invalid int value: 'large'"),
        (["evaluate", "--controller", "fixed", "--wandb", "sometimes"], "invalid choice"),
        (["no-such-command"], "invalid choice"),
        (["episode"], "--batch-size"),
    ],
)
def test_malformed_command_lines_exit_2_with_argparse_usage(argv, named, capsys):
    assert main(argv) == 2
    assert named in capsys.readouterr().err


def test_console_script_reports_errors_without_a_traceback(tmp_path):
    script = Path(sys.executable).with_name("arbiter")
    result = subprocess.run(
        [str(script), "episode", "--task", "nope", "--batch-size", "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: Unknown task 'nope'")
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("arbiter_env.agents.sb3") is None, reason="SB3 agents not present"
)
def test_train_ppo_on_a_tiny_budget_then_evaluate_its_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "ppo"
    argv = ["train", "--agent", "ppo", "--run-dir", str(run_dir), "--wandb", "disabled", *TINY]
    tiny_ppo = [
        "n_envs=1",
        "total_timesteps=8",
        "hyperparams.n_steps=4",
        "hyperparams.batch_size=4",
        "evaluation.n_episodes=1",
    ]
    assert main([*argv, *tiny_ppo]) == 0
    out = capsys.readouterr().out
    assert "checkpoint:" in out and "held-out seeds" in out
    episodes = read_jsonl(run_dir / "episodes.jsonl")
    assert [e.get("phase") for e in episodes if e["complete"]] == [None] * 4 + ["eval"]
    assert any("rollout/ep_rew_mean" in m for m in read_jsonl(run_dir / "metrics.jsonl"))

    checkpoint = run_dir / "final"
    argv = ["evaluate", "--controller", str(checkpoint), "--seeds", "7", "--wandb", "disabled"]
    assert main([*argv, "--run-dir", str(tmp_path / "eval")]) == 0
    assert [e["seed"] for e in read_jsonl(tmp_path / "eval" / "episodes.jsonl")] == [7]


def test_train_arbiter_on_a_tiny_budget_logs_its_episode(tmp_path, capsys):
    run_dir = tmp_path / "arbiter"
    argv = ["train", "--agent", "arbiter", "--seed", "1", "--run-dir", str(run_dir)]
    tiny = ["-t", "epochs=0.5", "-t", "num_intervals=2", "agent.warmup_max_iters=50"]
    assert main([*argv, "--wandb", "disabled", *tiny]) == 0
    assert "Arbiter on digits-mlp" in capsys.readouterr().out
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["seeds"] == [1] and config["task_kwargs"] == {"epochs": 0.5, "num_intervals": 2}
    assert config["agent"]["warmup_max_iters"] == 50
    assert config["resolved"]["env"]["task"]["epochs"] == 0.5  # the task as it ran
    (episode,) = read_jsonl(run_dir / "episodes.jsonl")
    assert episode["seed"] == 1 and episode["controller"] == "arbiter" and episode["intervals"] == 2


ARBITER_TINY = ["-t", "epochs=0.5", "-t", "num_intervals=2"]


def _final_losses(run_dir: Path) -> dict[int, float]:
    return {e["seed"]: e["final_val_loss"] for e in read_jsonl(run_dir / "episodes.jsonl")}


def test_train_arbiter_writes_a_checkpoint_that_evaluate_and_compare_load(tmp_path, capsys):
    from arbiter_env.agents.arbiter import Arbiter
    from arbiter_env.controllers import make_controller
    from arbiter_env.envs.batch_size import BatchSizeEnv

    run_dir = tmp_path / "train"
    argv = ["train", "--agent", "arbiter", "--seed", "0", "--run-dir", str(run_dir)]
    env_setting = ["-e", "action_encoding=relative", "agent.warmup_max_iters=50"]
    assert main([*argv, "--wandb", "disabled", *ARBITER_TINY, *env_setting]) == 0
    out = capsys.readouterr().out
    checkpoint = run_dir / "checkpoint"
    assert f"checkpoint: {checkpoint}" in out
    # Which of Arbiter's two modes gave the numbers, and which to report.
    assert "Arbiter mode: learning online from scratch" in out
    assert "Report the from-scratch online numbers" in out
    saved = yaml.safe_load((checkpoint / "arbiter_run.yaml").read_text())
    assert saved["action_encoding"] == "relative" and saved["task_kwargs"]["num_intervals"] == 2

    # evaluate rebuilds the env from the checkpoint (relative actions, 2 intervals).
    eval_dir = tmp_path / "eval"
    argv = ["evaluate", "--controller", str(checkpoint), "--seeds", "3", "--wandb", "disabled"]
    assert main([*argv, "--run-dir", str(eval_dir)]) == 0
    (episode,) = read_jsonl(eval_dir / "episodes.jsonl")
    assert episode["seed"] == 3 and episode["intervals"] == 2
    out = capsys.readouterr().out
    assert f"Arbiter mode: started from the checkpoint {checkpoint}" in out
    assert out.count("Arbiter mode:") == 1  # once, not once per seed

    # A comparison entry {controller: arbiter, kwargs: {checkpoint: ...}} loads the same agent.
    env = BatchSizeEnv("digits-mlp", task_kwargs={"epochs": 0.5, "num_intervals": 2})
    agent = make_controller("arbiter", env, checkpoint=str(checkpoint))
    state = __import__("torch").load(checkpoint / "arbiter.pt", weights_only=True)
    assert isinstance(agent, Arbiter) and agent.meta_steps == state["meta_steps"] > 0


def test_evaluate_gives_each_seed_a_fresh_arbiter_unless_asked_to_share(tmp_path, capsys):
    common = ["evaluate", "--controller", "arbiter", "warmup_max_iters=50", "--wandb", "disabled"]
    assert (
        main([*common, *ARBITER_TINY, "--seeds", "0", "1", "--run-dir", str(tmp_path / "a")]) == 0
    )
    assert main([*common, *ARBITER_TINY, "--seeds", "1", "--run-dir", str(tmp_path / "b")]) == 0
    # Seed 1 gives the same result after seed 0 as alone: no state leaks between seeds.
    assert _final_losses(tmp_path / "a")[1] == _final_losses(tmp_path / "b")[1]
    out = capsys.readouterr().out
    assert "a fresh controller per seed" in out
    assert "Arbiter mode: learning online from scratch" in out
    shared = [*common, *ARBITER_TINY, "--seeds", "0", "1", "--shared-agent"]
    assert main([*shared, "--run-dir", str(tmp_path / "c")]) == 0
    assert "one controller shared across seeds" in capsys.readouterr().out
    config = yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())
    assert config["agent_per_seed"] == "shared"
    # Arbiter acts through the continuous encoding by default, as in train and compare.
    assert config["env"] == {"action_encoding": "continuous"}


def test_env_arguments_can_be_set_on_every_command(tmp_path, capsys):
    run = tmp_path / "continuous"
    argv = ["evaluate", "--controller", "fixed", "batch_size=48", "env.action_encoding=continuous"]
    assert main([*argv, *TINY, "--seeds", "0", "--wandb", "disabled", "--run-dir", str(run)]) == 0
    # The ladder has no 48; the continuous encoding reaches it.
    assert {row["batch_size"] for row in read_jsonl(run / "intervals.jsonl")} == {48}
    assert yaml.safe_load((run / "config.yaml").read_text())["env"] == {
        "action_encoding": "continuous"
    }
    run = tmp_path / "episode"
    argv = ["episode", "--batch-size", "48", "-e", "action_encoding=continuous", *TINY]
    assert main([*argv, "--wandb", "disabled", "--run-dir", str(run)]) == 0
    assert {row["batch_size"] for row in read_jsonl(run / "intervals.jsonl")} == {48}
    assert main(["episode", "--batch-size", "8", "-e", "no_such_arg=1"]) == 2
    assert "no_such_arg" in capsys.readouterr().err


def test_tasks_marks_local_data_and_controllers_have_a_line_each(capsys):
    assert main(["tasks"]) == 0
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if "│" in line}
    assert "local files" in rows["mnist-mlp"] and "built in" in rows["digits-mlp"]
    assert main(["controllers"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "One batch size for the whole run" in lines["fixed"]
    assert "checkpoint=PATH" in lines["arbiter"] and "stable-baselines3 PPO" in lines["ppo"]


def test_env_options_are_read_once_into_typed_values_that_reach_the_agents_configs(tmp_path):
    import argparse

    from arbiter_env.config import ConfigError
    from arbiter_env.controllers import TrainRequest, controller_entry
    from arbiter_env.envs.rewards import RewardConfig
    from arbiter_env.lab.cli import inputs
    from arbiter_env.lab.cli.train import _resume_command

    items = ["num_intervals=3", "reward.cost=updates", "reward.cost_weight=0.5"]
    values = inputs.env_args(items)
    assert values == {"num_intervals": 3, "reward": RewardConfig(cost="updates", cost_weight=0.5)}
    with pytest.raises(ConfigError, match="task fields go in -t"):
        inputs.env_args(["task_kwargs.epochs=1"])
    # The resume hint writes the typed values back as options that read back to the same values.
    args = argparse.Namespace(
        agent="ppo",
        task=None,
        config=None,
        seed=None,
        task_override=[],
        env_args=values,
        no_eval=False,
        wandb=None,
        overrides=[],
    )
    command = _resume_command(args, tmp_path, tmp_path / "checkpoint.zip")
    options = [command[i + 1] for i, part in enumerate(command) if part == "-e"]
    assert inputs.env_args(options) == values
    # Both agents' training configs receive the typed values unchanged.
    arbiter = controller_entry("arbiter").training.prepare(TrainRequest("arbiter", env_args=values))
    ppo = controller_entry("ppo").training.prepare(TrainRequest("ppo", env_args=values))
    for env in (arbiter.run_config, ppo.agent.env):
        assert (env.num_intervals, env.reward) == (3, values["reward"])
