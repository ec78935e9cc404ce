"""One run in this process: an RL agent is trained by its package, saved, and loaded back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbiter_env.config import from_dict
from arbiter_env.lab.experiments import ExperimentConfig, execute_run, plan_runs
from arbiter_env.lab.runlog import RUN_FILE

EXPERIMENT = {
    "name": "worker",
    "tasks": ["digits-mlp"],
    "controllers": [
        {
            "name": "ppo",
            "controller": "ppo",
            "train_timesteps": 8,
            "kwargs": {
                "overrides": [
                    "n_envs=1",
                    "hyperparams.n_steps=8",
                    "hyperparams.batch_size=8",
                    "hyperparams.n_epochs=1",
                ]
            },
        }
    ],
    "seeds": [0],
    "task_overrides": {"epochs": 0.5, "num_intervals": 3},
    "wandb": {"mode": "disabled"},
}


@pytest.mark.slow  # about 5 s: a real (tiny) PPO training
def test_an_sb3_agent_is_trained_by_its_package_then_evaluated_from_its_saved_model(
    tmp_path, restore_threads
) -> None:
    (train,), (evaluate,) = plan_runs(from_dict(ExperimentConfig, EXPERIMENT), tmp_path)
    trained = execute_run(train)
    assert trained["status"] == "ok", trained["traceback"]
    assert trained["train_timesteps"] == 8 and Path(str(train.model_path)).exists()
    result = execute_run(evaluate)
    assert result["status"] == "ok", result["traceback"]
    assert result["intervals"] == 3 and evaluate.model_path == train.model_path


def test_an_evaluation_run_keeps_its_metrics_in_one_record(tmp_path, restore_threads) -> None:
    experiment = {
        **EXPERIMENT,
        "controllers": [{"name": "b32", "controller": "fixed", "kwargs": {"batch_size": 32}}],
    }
    (), (run,) = plan_runs(from_dict(ExperimentConfig, experiment), tmp_path)
    result = execute_run(run)
    assert result["status"] == "ok", result["traceback"]
    saved = json.loads(Path(run.result_path).read_text())
    assert saved["final_val_loss"] == result["final_val_loss"]
    # run.json keeps what the logger knows (counts, W&B state), not a second copy of the metrics.
    run_info = json.loads((Path(run.folder) / RUN_FILE).read_text())
    assert run_info["intervals"] == 3 and run_info["summary"] == {}


def test_an_arbiter_kind_agent_is_seeded_with_the_episode_seed_unless_told(tmp_path) -> None:
    from arbiter_env.envs.batch_size import BatchSizeEnv
    from arbiter_env.lab.experiments.worker import _evaluated_controller

    experiment = {
        **EXPERIMENT,
        "controllers": [
            {"name": "la", "controller": "arbiter-la"},
            {"name": "la-seeded", "controller": "arbiter-la", "kwargs": {"seed": 9}},
        ],
        "seeds": [3, 4],
    }
    _, runs = plan_runs(from_dict(ExperimentConfig, experiment), tmp_path)
    env = BatchSizeEnv("synthetic-teacher", action_encoding="continuous")
    seeds = {(run.label, run.seed): _evaluated_controller(run, env).config.seed for run in runs}
    assert seeds == {("la", 3): 3, ("la", 4): 4, ("la-seeded", 3): 9, ("la-seeded", 4): 9}
