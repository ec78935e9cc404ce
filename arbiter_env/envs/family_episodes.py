"""An env over a task family: which instance each episode trains, and a trainer per instance."""

from __future__ import annotations

from typing import Any

import numpy as np

from arbiter_env.checks import check_int
from arbiter_env.envs.config import EnvConfig
from arbiter_env.tasks.families import FamilyInstance, FamilySplit, TaskFamily, get_family
from arbiter_env.tasks.spec import Task
from arbiter_env.training.trainer import InnerTrainer


class FamilyEpisodes:
    """The instances of one split of a family, drawn per episode, with their overrides.

    Args:
        config: The env's arguments; ``config.task`` is a family (its name or the object).
    """

    def __init__(self, config: EnvConfig):
        assert isinstance(config.task, str | TaskFamily)
        self.family = (
            config.task if isinstance(config.task, TaskFamily) else get_family(config.task)
        )
        self.split: FamilySplit = config.family_split or "train"
        self.instances: tuple[FamilyInstance, ...] = self.family.instances(self.split)
        self.overrides = dict(config.task_kwargs)
        if config.num_intervals is not None:
            self.overrides["num_intervals"] = config.num_intervals
        if config.lr_schedule is not None:
            self.overrides["lr_schedule"] = config.lr_schedule
        self.family.check_bounds(**self.overrides)
        # One trainer per instance, built on first use: the data is split once per instance and
        # process, not at every reset.
        self.trainers: dict[int, InnerTrainer] = {}

    def task(self, instance: FamilyInstance) -> Task:
        """The task of ``instance``, with the env's overrides."""
        return self.family.make_task(instance, **self.overrides)

    def choose(
        self, options: dict[str, Any] | None, generator: np.random.Generator
    ) -> FamilyInstance:
        """``options["family_instance"]`` if given (checked), else a draw with ``generator``."""
        if not options or "family_instance" not in options:
            return self.family.sample(self.split, generator)
        index = check_int("options['family_instance']", options["family_instance"])
        by_index = {instance.index: instance for instance in self.instances}
        if index not in by_index:
            raise ValueError(
                f"Instance {index} is not in the {self.split!r} split of "
                f"{self.family.name!r}; its indices are {sorted(by_index)}."
            )
        return by_index[index]

    def info(self, instance: FamilyInstance) -> dict[str, Any]:
        """What ``info`` says of the episode's instance."""
        return {
            "task": instance.name,
            "family": self.family.name,
            "family_split": self.split,
            "family_instance": instance.index,
            "family_settings": instance.settings(),
        }
