"""What is trained: data sets, models, task descriptions and the task registry."""

from arbiter_env.tasks.datasets import ClassificationData, from_tensors, from_torch_datasets
from arbiter_env.tasks.families import (
    FamilyInstance,
    TaskFamily,
    get_family,
    is_family,
    list_families,
    register_family,
)
from arbiter_env.tasks.registry import list_tasks, make_task, needs_data_files, register_task
from arbiter_env.tasks.spec import OptimizerConfig, Task

__all__ = [
    "ClassificationData",
    "FamilyInstance",
    "OptimizerConfig",
    "Task",
    "TaskFamily",
    "from_tensors",
    "from_torch_datasets",
    "get_family",
    "is_family",
    "list_families",
    "list_tasks",
    "make_task",
    "needs_data_files",
    "register_family",
    "register_task",
]
