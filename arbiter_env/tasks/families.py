"""Task families: named, seeded distributions over task settings, with held-out instances.

A :class:`TaskFamily` varies a registered base task along the settings that change which batch
size is best: the learning rate (log-uniform over a range), the momentum, the width of an MLP,
the data set (builder arguments of the base task) and the budget in epochs. An agent trained on
one fixed task learns that task's schedule; trained on a family, it has to read the situation from
the observation, and it can be evaluated on instances it has never seen.

How instances and splits are made (so that they are reproducible and never overlap):

1. The family draws ``num_instances`` *distinct* settings from ``numpy.random.default_rng(seed)``
   (the family's own seed, not the episode's). Instance ``i`` is the ``i``-th distinct draw, so the
   instance set depends only on the family's fields, identically in every process.
2. The same generator then permutes the indices; the first ``round(test_fraction · n)`` of them are
   the **test** instances, the rest the **train** instances. Indices and settings are disjoint
   between the splits by construction.
3. ``BatchSizeEnv(task=family, family_split="train")`` picks one instance of its split uniformly at
   each ``reset`` with the environment's own generator (``env.np_random``), so
   ``reset(seed=s)`` always runs the same instance and the same initialisation.

Built-in families (``list_families()``), one per network-free data set:

* ``digits-mlp-family``: digits, MLP with one hidden layer of width {32, 128, 512}, SGD with lr
  log-uniform in [0.02, 0.2] and momentum {0, 0.9}, budget {5, 10} epochs.
* ``mnist1d-mlp-family``: MNIST-1D, MLP with two hidden layers of width {64, 256, 512}, lr in
  [0.01, 0.1], momentum {0, 0.9}, budget {5, 10} epochs.
* ``synthetic-teacher-family``: teacher-network data with label noise {0.05, 0.2} and data seed
  {0, 1}, MLP with one hidden layer of width {32, 64, 128}, lr in [0.02, 0.2], momentum {0, 0.9},
  budget {5, 10} epochs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np

from arbiter_env.tasks import models
from arbiter_env.tasks.registry import list_tasks, make_task
from arbiter_env.tasks.spec import Task

FamilySplit = Literal["train", "test"]
FAMILY_SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class FamilyInstance:
    """One member of a task family: its index, split and the settings it fixes.

    Attributes:
        family: Name of the family.
        index: Position in the family's instance list (unique across both splits).
        split: ``"train"`` or ``"test"``.
        lr: Learning rate of the inner optimizer.
        momentum: Momentum of the inner SGD.
        width: Hidden width of the MLP, or ``None`` to keep the base task's model.
        epochs: Sample budget in epochs, or ``None`` to keep the base task's.
        data_kwargs: Builder arguments of the base task (which data set variant).
    """

    family: str
    index: int
    split: FamilySplit
    lr: float
    momentum: float
    width: int | None
    epochs: float | None
    data_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def name(self) -> str:
        """Name of the instance's task, e.g. ``digits-mlp-family#17``."""
        return f"{self.family}#{self.index}"

    def settings(self) -> dict[str, Any]:
        """The sampled settings as a plain dict (for ``info`` and logs)."""
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "width": self.width,
            "epochs": self.epochs,
            **{f"data.{key}": value for key, value in self.data_kwargs.items()},
        }

    def _key(self) -> tuple:
        return (
            self.lr,
            self.momentum,
            self.width,
            self.epochs,
            tuple(sorted(self.data_kwargs.items())),
        )


@dataclass(frozen=True)
class TaskFamily:
    """A seeded distribution over the settings of a registered base task.

    Args:
        name: Registry name of the family (must differ from every task name).
        base_task: Registered task that instances start from (``arbiter_env.list_tasks()``).
        lr_range: ``(low, high)``; the learning rate is drawn log-uniformly from it and rounded to
            three significant digits (readable names; duplicates are redrawn).
        momenta: SGD momenta to choose from, uniformly.
        widths: Hidden widths to choose from; each instance's model becomes
            ``models.mlp(hidden_sizes=(width,) * hidden_layers)``. Empty keeps the base model.
        hidden_layers: Number of hidden layers of that MLP.
        epochs: Budgets (in epochs) to choose from. Empty keeps the base task's budget.
        data_variants: Builder arguments of ``base_task`` to choose from (a data set variant per
            entry, e.g. ``{"label_noise": 0.2}``); ``({},)`` keeps the base data.
        num_instances: Number of distinct instances, train and test together.
        test_fraction: Fraction of the instances held out as the test split.
        seed: Seed of the family's own generator, which draws the instances and the split.
    """

    name: str
    base_task: str
    lr_range: tuple[float, float]
    momenta: tuple[float, ...] = (0.9,)
    widths: tuple[int, ...] = ()
    hidden_layers: int = 1
    epochs: tuple[float, ...] = ()
    data_variants: tuple[Mapping[str, Any], ...] = field(default=({},), hash=False)
    num_instances: int = 64
    test_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        low, high = self.lr_range
        if not (0 < low <= high and math.isfinite(high)):
            raise ValueError(
                f"Family {self.name!r}: lr_range must be (low, high) with 0 < low <= high, "
                f"got {self.lr_range}."
            )
        if not self.momenta or any(not 0 <= m < 1 for m in self.momenta):
            raise ValueError(
                f"Family {self.name!r}: momenta must be in [0, 1), got {self.momenta}."
            )
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.widths):
            raise ValueError(
                f"Family {self.name!r}: widths must be positive ints, got {self.widths}."
            )
        if self.hidden_layers < 1:
            raise ValueError(f"Family {self.name!r}: hidden_layers must be >= 1.")
        if any(not (e > 0 and math.isfinite(e)) for e in self.epochs):
            raise ValueError(f"Family {self.name!r}: epochs must be > 0, got {self.epochs}.")
        if not self.data_variants:
            raise ValueError(
                f"Family {self.name!r}: data_variants needs at least one entry ({{}})."
            )
        if self.num_instances < 2:
            raise ValueError(
                f"Family {self.name!r}: num_instances must be >= 2 (one train, one test)."
            )
        n_test = self.num_test
        if not 0 < self.test_fraction < 1 or n_test < 1 or n_test >= self.num_instances:
            raise ValueError(
                f"Family {self.name!r}: test_fraction={self.test_fraction} of "
                f"{self.num_instances} instances must leave at least one train and one test "
                "instance."
            )

    @property
    def num_test(self) -> int:
        """Number of test instances."""
        return round(self.test_fraction * self.num_instances)

    def instances(self, split: FamilySplit | None = None) -> tuple[FamilyInstance, ...]:
        """The instances of ``split`` (or all, by index), identical in every call and process."""
        all_instances = _draw_instances(self)
        if split is None:
            return all_instances
        if split not in FAMILY_SPLITS:
            raise ValueError(f"family_split must be 'train' or 'test', got {split!r}.")
        return tuple(instance for instance in all_instances if instance.split == split)

    def sample(self, split: FamilySplit, rng: np.random.Generator) -> FamilyInstance:
        """Draws one instance of ``split`` uniformly with ``rng`` (the environment's generator)."""
        candidates = self.instances(split)
        return candidates[int(rng.integers(len(candidates)))]

    def make_task(self, instance: FamilyInstance, **overrides: Any) -> Task:
        """Builds the :class:`Task` of ``instance``; ``overrides`` are task field overrides.

        Overrides (for example ``epochs=0.5, num_intervals=4`` for a quick test) apply to every
        instance alike and win over the sampled settings.
        """
        base = _base_task(self.base_task, tuple(sorted(instance.data_kwargs.items())))
        changes: dict[str, Any] = {
            "name": instance.name,
            "optimizer": {"lr": instance.lr, "momentum": instance.momentum},
        }
        if instance.width is not None:
            changes["model"] = partial(
                models.mlp, hidden_sizes=(instance.width,) * self.hidden_layers
            )
        if instance.epochs is not None:
            changes["epochs"] = instance.epochs
        if "optimizer" in overrides and isinstance(overrides["optimizer"], Mapping):
            changes["optimizer"] = {**changes["optimizer"], **overrides.pop("optimizer")}
        changes.update(overrides)
        return base.replace(**changes)

    def check_bounds(self, **overrides: Any) -> tuple[int, int]:
        """Checks that every instance has the same batch-size bounds and returns them.

        The action space of the environment is built from these bounds, and it may not change
        from one reset to the next.
        """
        bounds: dict[tuple[int, int], str] = {}
        for instance in self.instances():
            task = self.make_task(instance, **overrides)
            bounds.setdefault((task.batch_min, task.batch_max), instance.name)
        if len(bounds) > 1:
            raise ValueError(
                f"Family {self.name!r}: instances have different batch-size bounds "
                f"{sorted(bounds)}; a family needs one ladder (equal batch_min and batch_max), "
                "because the action space may not change between resets."
            )
        return next(iter(bounds))


@functools.cache
def _draw_instances(family: TaskFamily) -> tuple[FamilyInstance, ...]:
    rng = np.random.default_rng(family.seed)
    low, high = family.lr_range
    drawn: list[FamilyInstance] = []
    seen: set[tuple] = set()
    attempts = 0
    while len(drawn) < family.num_instances:
        attempts += 1
        if attempts > 100 * family.num_instances:
            raise ValueError(
                f"Family {family.name!r}: could not draw {family.num_instances} distinct "
                "instances; widen lr_range or lower num_instances."
            )
        lr = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        instance = FamilyInstance(
            family=family.name,
            index=len(drawn),
            split="train",
            lr=float(f"{lr:.3g}"),
            momentum=float(family.momenta[rng.integers(len(family.momenta))]),
            width=int(family.widths[rng.integers(len(family.widths))]) if family.widths else None,
            epochs=float(family.epochs[rng.integers(len(family.epochs))])
            if family.epochs
            else None,
            data_kwargs=dict(family.data_variants[rng.integers(len(family.data_variants))]),
        )
        if instance._key() not in seen:
            seen.add(instance._key())
            drawn.append(instance)
    test_indices = set(rng.permutation(family.num_instances)[: family.num_test].tolist())
    return tuple(
        FamilyInstance(**{**instance.__dict__, "split": "test"})
        if instance.index in test_indices
        else instance
        for instance in drawn
    )


@functools.cache
def _base_task(name: str, data_items: tuple[tuple[str, Any], ...]) -> Task:
    # One base Task per (task, data variant) and process: its `data` factory is then one object,
    # so the trainer's per-process data cache (keyed by that object) loads each data set once.
    return make_task(name, **dict(data_items))


# --- registry -----------------------------------------------------------------------------------

_FAMILIES: dict[str, TaskFamily] = {}


def register_family(family: TaskFamily, *, overwrite: bool = False) -> None:
    """Registers ``family`` under ``family.name``, so ``BatchSizeEnv(task=name)`` accepts it."""
    if not isinstance(family, TaskFamily):
        raise TypeError(f"Register a TaskFamily, got {type(family).__name__}.")
    if family.name in list_tasks():
        raise ValueError(
            f"{family.name!r} is already a task name; a family needs a name of its own."
        )
    if family.base_task not in list_tasks():
        raise ValueError(
            f"Family {family.name!r}: unknown base task {family.base_task!r}; register it first."
        )
    if family.name in _FAMILIES and not overwrite:
        raise ValueError(
            f"Family {family.name!r} is already registered; pass overwrite=True to replace it."
        )
    _FAMILIES[family.name] = family


def get_family(name: str) -> TaskFamily:
    """The registered family ``name``."""
    if name not in _FAMILIES:
        raise ValueError(f"Unknown task family {name!r}. Families: {', '.join(list_families())}.")
    return _FAMILIES[name]


def is_family(name: object) -> bool:
    """Whether ``name`` is a :class:`TaskFamily` or the name of a registered one."""
    return isinstance(name, TaskFamily) or (isinstance(name, str) and name in _FAMILIES)


def list_families() -> list[str]:
    """Names of all registered families, sorted."""
    return sorted(_FAMILIES)


# --- built-in families --------------------------------------------------------------------------

register_family(
    TaskFamily(
        name="digits-mlp-family",
        base_task="digits-mlp",
        lr_range=(0.02, 0.2),
        momenta=(0.0, 0.9),
        widths=(32, 128, 512),
        epochs=(5.0, 10.0),
    )
)
register_family(
    TaskFamily(
        name="mnist1d-mlp-family",
        base_task="mnist1d-mlp",
        lr_range=(0.01, 0.1),
        momenta=(0.0, 0.9),
        widths=(64, 256, 512),
        hidden_layers=2,
        epochs=(5.0, 10.0),
    )
)
register_family(
    TaskFamily(
        name="synthetic-teacher-family",
        base_task="synthetic-teacher",
        lr_range=(0.02, 0.2),
        momenta=(0.0, 0.9),
        widths=(32, 64, 128),
        epochs=(5.0, 10.0),
        data_variants=(
            {"label_noise": 0.05, "data_seed": 0},
            {"label_noise": 0.2, "data_seed": 0},
            {"label_noise": 0.05, "data_seed": 1},
            {"label_noise": 0.2, "data_seed": 1},
        ),
    )
)
