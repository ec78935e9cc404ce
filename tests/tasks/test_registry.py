import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import gymnasium as gym
import pytest

import arbiter_env
from arbiter_env.tasks import registry

USER_MODULE = """
import torch
from torch import nn

import arbiter_env

x = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
y = (x[:, 0] > 0).long()


def model(input_shape, num_classes):
    return nn.Sequential(nn.Linear(input_shape[0], 8), nn.Tanh(), nn.Linear(8, num_classes))


arbiter_env.register_task(
    "module-task",
    arbiter_env.Task(
        name="module-task",
        data=lambda: arbiter_env.from_tensors(x, y, x, y, num_classes=2),
        model=model,
        optimizer=arbiter_env.OptimizerConfig(name="sgd", lr=0.1),
        epochs=1,
        num_intervals=2,
        batch_min=4,
        batch_max=16,
        batch_start=8,
        probe_size=8,
    ),
)
"""


@pytest.fixture
def isolated_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    # Registering from a module writes this variable; restore it afterwards.
    monkeypatch.setenv(
        registry.TASK_MODULES_ENV_VAR, os.environ.get(registry.TASK_MODULES_ENV_VAR, "{}")
    )


def test_module_prefixed_task_name_imports_the_module_that_registers_it(
    tmp_path, monkeypatch, isolated_registry
):
    (tmp_path / "user_tasks_for_test.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "user_tasks_for_test", raising=False)
    assert "module-task" not in arbiter_env.list_tasks()
    env = gym.make(arbiter_env.ENV_ID, task="user_tasks_for_test:module-task")
    assert env.unwrapped.task.name == "module-task"
    assert arbiter_env.make_task("user_tasks_for_test:module-task", epochs=2).epochs == 2


def test_module_prefix_that_cannot_be_imported_names_the_module():
    with pytest.raises(ValueError, match="importing module 'no_such_module_xyz' failed"):
        arbiter_env.make_task("no_such_module_xyz:some-task")


def test_unknown_task_in_a_worker_process_says_how_to_make_it_known(isolated_registry):
    arbiter_env.register_task("parent-only", arbiter_env.make_task("digits-mlp"))
    # The worker imports arbiter_env to unpickle make_task, so it knows the built-in tasks, but
    # not the one registered above.
    context = multiprocessing.get_context("forkserver")
    with (
        ProcessPoolExecutor(1, mp_context=context) as pool,
        pytest.raises(ValueError) as error,
    ):
        pool.submit(arbiter_env.make_task, "parent-only").result()
    message = str(error.value)
    assert "worker process" in message and "'your_module:parent-only'" in message
    assert "pass the Task object itself" in message
    # In the parent the message stays short.
    with pytest.raises(ValueError) as error:
        arbiter_env.make_task("nowhere")
    assert "worker process" not in str(error.value)


def test_a_task_a_module_registers_is_found_by_name_in_a_process_without_that_module(
    tmp_path, monkeypatch, isolated_registry
):
    import importlib
    import json

    (tmp_path / "user_tasks_by_name.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.setenv(registry.TASK_MODULES_ENV_VAR, "{}")
    builtins = dict(registry._REGISTRY)
    importlib.import_module("user_tasks_by_name")  # the parent imports the user's module
    # Worker processes inherit the environment, and with it where the task came from.
    modules = json.loads(os.environ[registry.TASK_MODULES_ENV_VAR])
    assert modules == {"module-task": "user_tasks_by_name"}
    # A worker: the built-in tasks only, the module not imported.
    monkeypatch.setattr(registry, "_REGISTRY", builtins)
    monkeypatch.delitem(sys.modules, "user_tasks_by_name")
    assert arbiter_env.make_task("module-task").name == "module-task"


def test_tasks_registered_in_main_are_not_remembered_for_workers(monkeypatch, isolated_registry):
    monkeypatch.setenv(registry.TASK_MODULES_ENV_VAR, "{}")
    exec(  # as a script's own code, whose module is __main__
        "import arbiter_env\narbiter_env.register_task('in-main', arbiter_env.make_task('digits-mlp'))",
        {"__name__": "__main__"},
    )
    assert "in-main" in arbiter_env.list_tasks()
    assert os.environ[registry.TASK_MODULES_ENV_VAR] == "{}"
