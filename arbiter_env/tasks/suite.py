"""The benchmark suite's task names: built-in tasks under an LR schedule, and family instances.

Importing this module registers, lazily (nothing is built until a name is used):

* ``TASK@SCHEDULE`` for every registered task and every preset of :data:`SUITE_LR_SCHEDULES`:
  the task with that ``lr_schedule`` (``digits-mlp@cosine``);
* ``FAMILY-SPLIT-N`` for every instance ``N`` of every family's train and test split
  (``digits-mlp-family-test-3``): the instance's task, as the family builds it.

Names, not objects, so that worker processes and Ray tasks rebuild the same task from the name
alone: the benchmark lists this module in its experiment's ``imports``.
"""

from __future__ import annotations

from functools import partial

from arbiter_env.tasks.families import get_family, list_families
from arbiter_env.tasks.registry import list_tasks, make_task, register_task
from arbiter_env.tasks.spec import Task
from arbiter_env.training.lr_schedule import LrSchedule

SUITE_LR_SCHEDULES: dict[str, LrSchedule] = {
    "cosine": LrSchedule(name="cosine"),
    "wsd": LrSchedule(name="wsd", decay=0.2),
    "step": LrSchedule(name="step", milestones=(0.5, 0.75), gamma=0.1),
}
"""The schedule presets of ``TASK@SCHEDULE``: cosine to 0, warmup-stable-decay over the last
20%, and ×0.1 steps at 50% and 75% of the budget (no warm-up: the built-in tasks need none)."""


def scheduled_task_name(task: str, schedule: str) -> str:
    """``TASK@SCHEDULE`` (``constant`` is the task itself)."""
    return task if schedule == "constant" else f"{task}@{schedule}"


def family_instance_name(family: str, split: str, index: int) -> str:
    """``FAMILY-SPLIT-N``: one instance of a family as a task of its own."""
    return f"{family}-{split}-{index}"


def _scheduled(task: str, schedule: str, **kwargs: object) -> Task:
    return make_task(task, **kwargs).replace(lr_schedule=SUITE_LR_SCHEDULES[schedule])


def _instance(family: str, split: str, index: int) -> Task:
    source = get_family(family)
    instance = next(i for i in source.instances(split) if i.index == index)  # type: ignore[arg-type]
    return source.make_task(instance)


def register_suite_tasks() -> None:
    """Registers every suite name (idempotent; called when this module is imported)."""
    known = set(list_tasks())
    for task in [t for t in list_tasks() if "@" not in t]:
        for schedule in SUITE_LR_SCHEDULES:
            name = scheduled_task_name(task, schedule)
            if name not in known:
                register_task(name, partial(_scheduled, task, schedule))
    for family in list_families():
        for split in ("train", "test"):
            for instance in get_family(family).instances(split):  # type: ignore[arg-type]
                name = family_instance_name(family, split, instance.index)
                if name not in known:
                    register_task(name, partial(_instance, family, split, instance.index))


register_suite_tasks()
