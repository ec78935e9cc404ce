"""The task's data as the trainer sees it: loaded once per process, split, and on the device."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from arbiter_env.tasks.datasets import ClassificationData
from arbiter_env.tasks.spec import Task


@dataclass(frozen=True)
class DataSplits:
    """The task's data on its device: train part, validation part, and test split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example."""
        return tuple(self.x_train.shape[1:])


_DATA_CACHE: dict[object, ClassificationData] = {}
"""Loaded data sets, keyed by the task's data factory."""


def load_task_data(task: Task) -> ClassificationData:
    """Loads the task's data once per process (generating or reading a data set is slow)."""
    if task.data not in _DATA_CACHE:
        data = task.data()
        if not isinstance(data, ClassificationData):
            raise TypeError(
                f"Task {task.name!r}: its data factory returned {type(data).__name__}; it must "
                "return ClassificationData (see arbiter_env.tasks.from_tensors)."
            )
        _DATA_CACHE[task.data] = data
    return _DATA_CACHE[task.data]


@contextlib.contextmanager
def transient_data_cache() -> Iterator[None]:
    """Data sets first loaded inside the context leave the process's cache when it exits.

    For code that builds environments only to check them (the experiment plan check): the data
    sets it loads would otherwise stay in memory for the rest of the process.
    """
    cached = set(_DATA_CACHE)
    try:
        yield
    finally:
        for key in set(_DATA_CACHE) - cached:
            del _DATA_CACHE[key]


def split_task_data(task: Task) -> DataSplits:
    """Splits the train split into train and validation parts with the task's ``split_seed``."""
    data = load_task_data(task)
    n = data.x_train.shape[0]
    n_val = round(task.validation_fraction * n)
    if n_val < 1 or n - n_val < 1:
        raise ValueError(
            f"Task {task.name!r}: {n} training examples cannot be split with validation_fraction="
            f"{task.validation_fraction}; both parts need at least one example."
        )
    order = torch.from_numpy(np.random.default_rng(task.split_seed).permutation(n))
    val_idx, train_idx = order[:n_val], order[n_val:]
    device = torch.device(task.device)
    return DataSplits(
        x_train=data.x_train[train_idx].to(device),
        y_train=data.y_train[train_idx].to(device),
        x_val=data.x_train[val_idx].to(device),
        y_val=data.y_train[val_idx].to(device),
        x_test=data.x_test.to(device),
        y_test=data.y_test.to(device),
        num_classes=data.num_classes,
    )
