"""A controller's registry entry says how it trains: registering one is the only edit needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arbiter_env.config import ConfigError, from_dict
from arbiter_env.controllers import (
    BatchSizeController,
    LearnerTraining,
    TrainOutcome,
    TrainRequest,
    controller_entry,
    controller_kind,
    register_controller,
    trainable_controllers,
)
from arbiter_env.lab.experiments import ExperimentConfig, execute_run, plan_runs
from arbiter_env.lab.experiments.plan_check import check_plan


class Searcher(BatchSizeController):
    """A toy Learner: ``learn`` picks the largest rung and notes it in its work folder."""

    def __init__(self, env: Any, start: int = 16):
        super().__init__(env)
        self.batch_size = start

    def choose_batch_size(self, observation: Any) -> int:
        return self.batch_size

    def learn(self, total_timesteps: int = 0, *, work_dir: Any = None, **kwargs: Any) -> Searcher:
        self.batch_size = int(self.batch_env.ladder[-1])
        if work_dir is not None:
            Path(work_dir, "search.txt").write_text(f"{total_timesteps} {self.batch_size}\n")
        return self

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"batch_size": self.batch_size}))

    @classmethod
    def load(cls, path: str | Path, env: Any) -> Searcher:
        controller = cls(env)
        controller.batch_size = json.loads(Path(path).read_text())["batch_size"]
        return controller


class Rule(BatchSizeController):
    """A toy rule: no save, so it cannot be trained."""

    def choose_batch_size(self, observation: Any) -> int:
        return 32


register_controller("test-searcher", Searcher, overwrite=True, kind="test-kind")
register_controller("test-rule", Rule, overwrite=True)


def _experiment(controller: str, train_timesteps: int) -> ExperimentConfig:
    return from_dict(
        ExperimentConfig,
        {
            "name": "toy",
            "tasks": ["digits-mlp"],
            "controllers": [
                {"name": "toy", "controller": controller, "train_timesteps": train_timesteps}
            ],
            "seeds": [0],
            "task_overrides": {"epochs": 0.5, "num_intervals": 3},
            "wandb": {"mode": "disabled"},
        },
    )


@pytest.mark.slow  # a training and an evaluation run in this process: about 10 s
def test_a_registered_learner_is_trained_saved_and_loaded_by_a_comparison(
    tmp_path, restore_threads
):
    config = _experiment("test-searcher", train_timesteps=5)
    check_plan(config)  # the entry's training accepts it
    (train,), (evaluate,) = plan_runs(config, tmp_path)
    trained = execute_run(train)
    assert trained["status"] == "ok", trained.get("traceback")
    # learn() ran in the training run's folder, save() wrote the model path.
    assert (Path(train.folder) / "search.txt").read_text().split()[0] == "5"
    assert json.loads(Path(str(train.model_path)).read_text()) == {"batch_size": 512}
    result = execute_run(evaluate)
    assert result["status"] == "ok", result.get("traceback")
    assert result["mean_batch_size"] == 512  # the loaded, trained controller played


def test_a_controller_without_save_is_refused_training_before_anything_runs():
    with pytest.raises(ValueError, match="has no learn\\(\\)/save\\(\\)"):
        check_plan(_experiment("test-rule", train_timesteps=5))


def test_registry_entries_say_kind_and_training_without_names_elsewhere():
    searcher, rule = controller_entry("test-searcher"), controller_entry("test-rule")
    assert controller_kind("test-searcher") == "test-kind" and rule.kind == "other"
    assert isinstance(searcher.training, LearnerTraining) and searcher.training.cls is Searcher
    assert isinstance(rule.training, LearnerTraining) and rule.training.cls is None
    assert controller_entry("ppo").needs_training and controller_kind("ppo") == "rl"
    assert {"arbiter", "ppo", "sac"} <= set(trainable_controllers())
    assert "test-searcher" not in trainable_controllers()
    with pytest.raises(ValueError, match="not trained by arbiter train"):
        searcher.training.prepare(TrainRequest(agent="test-searcher"))


class _ToyCommandTraining(LearnerTraining):
    """A training with an ``arbiter train`` command: learn, save, play one seed."""

    @property
    def has_command(self) -> bool:
        return True

    def prepare(self, request: TrainRequest) -> Any:
        if request.overrides:
            raise ConfigError(f"unknown overrides {request.overrides}")
        return _ToyPlan(request)


class _ToyPlan:
    def __init__(self, request: TrainRequest):
        self.request = request
        self.config = {"agent": request.agent, "seed": request.seed}
        self.task = request.task or "digits-mlp"
        self.total = 1

    def run(self, log: Any, progress: Any) -> TrainOutcome:
        from arbiter_env.lab.cli.inputs import make_env

        env = make_env(self.task, {"epochs": 0.5, "num_intervals": 2})
        agent = Searcher(env).learn(1, work_dir=log.run_dir)
        agent.save(log.run_dir / "model.json")
        progress(1)
        record = log.run_episode(env, agent, self.request.seed or 0, controller_name="toy")
        return TrainOutcome(
            log.run_dir / "model.json", title="toy", records=[record], notes=["toy trained"]
        )

    def interrupted(self, run_dir: Path) -> None:
        return None


def test_arbiter_train_trains_any_agent_whose_entry_has_a_command(tmp_path, capsys, monkeypatch):
    from arbiter_env.lab.cli import main

    monkeypatch.chdir(tmp_path)
    register_controller(
        "test-commanded", Searcher, overwrite=True, training=_ToyCommandTraining(Searcher)
    )
    run_dir = tmp_path / "run"
    argv = ["train", "--agent", "test-commanded", "--seed", "3", "--wandb", "disabled"]
    assert main([*argv, "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "toy trained" in out and "512×2" in out
    assert json.loads((run_dir / "model.json").read_text()) == {"batch_size": 512}
    assert main([*argv, "--run-dir", str(tmp_path / "bad"), "x=1"]) == 2
    assert "unknown overrides" in capsys.readouterr().err
