"""The plan of a comparison is a pure function of its config: tested without processes or files."""

from __future__ import annotations

import pickle
from pathlib import Path

from arbiter_env.config import from_dict
from arbiter_env.lab.experiments import ExperimentConfig, RunSpec, execute_run, plan_runs

CONFIG = {
    "name": "plan",
    "tasks": ["digits-mlp", "digits-linear"],
    "seeds": [3, 1],
    "controllers": [
        {"name": "b32", "controller": "fixed", "kwargs": {"batch_size": 32}},
        {"name": "ppo", "controller": "ppo", "train_timesteps": 64, "train_seed": 7},
    ],
    "wandb": {"mode": "disabled", "group": "g"},
}


def _plan(tmp_path: Path) -> tuple[list[RunSpec], list[RunSpec]]:
    return plan_runs(from_dict(ExperimentConfig, CONFIG), tmp_path)


def test_every_controller_runs_every_seed_on_every_task_in_config_order(tmp_path) -> None:
    _, evaluate = _plan(tmp_path)
    assert [(r.task, r.label, r.seed) for r in evaluate] == [
        (task, label, seed)
        for task in ("digits-mlp", "digits-linear")
        for label in ("b32", "ppo")
        for seed in (3, 1)
    ]
    assert {r.kind for r in evaluate} == {"evaluate"}
    run = evaluate[0]
    assert Path(run.folder) == tmp_path.resolve() / "runs" / "digits-mlp" / "b32" / "seed-3"
    assert run.result_path == Path(run.folder) / "result.json"
    assert run.kwargs == {"batch_size": 32} and run.wandb["dir"] == str(tmp_path.resolve())
    assert len({r.key for r in evaluate}) == len(evaluate)


def test_a_trained_controller_is_trained_once_per_task_and_its_evaluations_load_it(
    tmp_path,
) -> None:
    train, evaluate = _plan(tmp_path)
    assert [(r.task, r.label, r.seed, r.kind) for r in train] == [
        ("digits-mlp", "ppo", 7, "train"),
        ("digits-linear", "ppo", 7, "train"),
    ]
    for run in train:
        assert Path(run.folder) == tmp_path.resolve() / "models" / run.task / "ppo"
        assert run.model_path == str(Path(run.folder) / "final") and run.train_timesteps == 64
        loaders = [r for r in evaluate if r.label == "ppo" and r.task == run.task]
        assert [r.model_path for r in loaders] == [run.model_path] * 2
    assert all(r.model_path is None for r in evaluate if r.label == "b32")


def test_planning_is_pure_same_config_same_plan_and_nothing_written(tmp_path) -> None:
    first, second = _plan(tmp_path), _plan(tmp_path)
    assert first == second
    assert list(tmp_path.iterdir()) == []


def test_runs_and_the_worker_function_pickle_by_module_path(tmp_path) -> None:
    # The local engine's processes and Ray tasks receive both pickled.
    _, evaluate = _plan(tmp_path)
    assert pickle.loads(pickle.dumps(evaluate[0])) == evaluate[0]
    assert pickle.loads(pickle.dumps(execute_run)) is execute_run
    assert type(evaluate[0]).__module__ == "arbiter_env.lab.experiments.plan"
