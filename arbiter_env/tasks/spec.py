"""What is trained: a task is data + model + optimizer + budget, described by a frozen dataclass.

A :class:`Task` holds *factories* rather than built objects, so that one task description can build
any number of freshly seeded episodes and can be pickled into subprocess workers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from arbiter_env.checks import check_int, check_real, require
from arbiter_env.tasks.datasets import ClassificationData
from arbiter_env.training import hypergradient
from arbiter_env.training.lr_schedule import LrSchedule

DataFactory = Callable[[], ClassificationData]
"""Returns the train/test data of a task. Called once per process and cached by the task."""

ModelFactory = Callable[[tuple[int, ...], int], nn.Module]
"""``(input_shape, num_classes) -> model`` whose output is that of the last ``nn.Linear`` its forward calls."""

OptimizerFactory = Callable[[Iterable[nn.Parameter], "OptimizerConfig"], torch.optim.Optimizer]
"""``(parameters, config) -> optimizer``; used when ``OptimizerConfig.name`` is ``"custom"``."""


@dataclass(frozen=True)
class OptimizerConfig:
    """The inner optimizer and its hyperparameters.

    Args:
        name: ``"sgd"`` (with optional momentum, Nesterov and weight decay), ``"adam"``,
            ``"sgd-hd"`` / ``"adam-hd"`` (the same with hypergradient descent of the learning
            rate, :mod:`arbiter_env.training.hypergradient`), or ``"custom"`` together with ``factory``.
        lr: Learning rate at the base batch size (see ``BatchSizeEnv(lr_scaling=...)``).
        momentum: SGD momentum; ignored by Adam.
        weight_decay: L2 penalty passed to the optimizer.
        nesterov: Nesterov momentum for SGD.
        betas: Adam's moment coefficients.
        hypergradient_lr: β, the learning rate of the learning rate, for ``"sgd-hd"`` and
            ``"adam-hd"``; ``None`` takes the paper's value for the chosen optimizer (1e-3 for
            SGD-HD, 1e-7 for Adam-HD). Ignored by the other optimizers.
        factory: ``(parameters, config) -> torch.optim.Optimizer`` for any other optimizer. The
            optimizer must keep its learning rate in ``param_groups[i]["lr"]`` so that the trainer
            can rescale it.
    """

    name: Literal["sgd", "adam", "sgd-hd", "adam-hd", "custom"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    factory: OptimizerFactory | None = None
    hypergradient_lr: float | None = None

    def __post_init__(self) -> None:
        for name in ("lr", "momentum", "weight_decay"):
            check_real(f"optimizer.{name}", getattr(self, name))
        if self.hypergradient_lr is not None:
            check_real("optimizer.hypergradient_lr", self.hypergradient_lr)
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"optimizer.nesterov must be true or false, got {self.nesterov!r}.")
        if self.name not in ("sgd", "adam", "sgd-hd", "adam-hd", "custom"):
            raise ValueError(
                f"Unknown optimizer {self.name!r}: use 'sgd', 'adam', 'sgd-hd', 'adam-hd', or "
                "'custom' with a factory."
            )
        if (self.name == "custom") != (self.factory is not None):
            raise ValueError("Pass `factory` exactly when the optimizer name is 'custom'.")
        require(self.lr > 0 and math.isfinite(self.lr), f"lr must be positive, got {self.lr}.")
        require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}.")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}.")
        require(
            self.hypergradient_lr is None
            or (math.isfinite(self.hypergradient_lr) and self.hypergradient_lr >= 0),
            f"hypergradient_lr must be finite and >= 0 (or None for the paper's default), got "
            f"{self.hypergradient_lr}.",
        )

    def build(self, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        """Creates the optimizer over ``parameters``."""
        if self.name == "sgd":
            return torch.optim.SGD(
                parameters,
                lr=self.lr,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                nesterov=self.nesterov,
            )
        if self.name == "adam":
            return torch.optim.Adam(
                parameters, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay
            )
        if self.name in ("sgd-hd", "adam-hd"):
            beta = (
                {} if self.hypergradient_lr is None else {"hypergradient_lr": self.hypergradient_lr}
            )
            if self.name == "sgd-hd":
                return hypergradient.SGDHD(
                    parameters,
                    lr=self.lr,
                    momentum=self.momentum,
                    weight_decay=self.weight_decay,
                    nesterov=self.nesterov,
                    **beta,
                )
            return hypergradient.AdamHD(
                parameters, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay, **beta
            )
        assert self.factory is not None
        return self.factory(parameters, self)


@dataclass(frozen=True)
class Task:
    """A complete description of one inner training problem.

    The budget is counted in training samples: ``epochs`` passes over the training part of the
    train split (the rest is held out for validation). It is divided into ``num_intervals``
    scheduling intervals; the environment takes one step per interval.

    Args:
        name: Name shown in logs and used by the task registry.
        data: Factory returning the :class:`ClassificationData` (called once per process).
        model: Factory ``(input_shape, num_classes) -> nn.Module``. Its output must be the output
            of the last ``nn.Linear`` its forward pass calls, with ``num_classes`` outputs (the
            layer the hyper-learning interface hooks; checked when an environment is built).
        optimizer: Inner optimizer settings.
        epochs: Sample budget in epochs of the training part; may be fractional.
        num_intervals: Number of scheduling intervals (environment steps) per episode.
        batch_min: Smallest batch size an agent may choose.
        batch_max: Largest batch size an agent may choose.
        batch_start: Batch size used before the first decision, reported in the first observation.
        validation_fraction: Fraction of the train split held out for validation (paper: 0.2).
        split_seed: Seed of the fixed train/validation split. It is part of the task, not of the
            episode, so that every episode and controller is validated on the same examples.
        probe_size: Number of training examples used for the per-interval gradient statistics.
        probe_microbatches: ``None`` (default) measures the statistics exactly, from per-sample
            gradients. An even number M that divides ``probe_size`` uses the cheaper micro-batch
            estimator instead (M backward passes, ``M - 1`` degrees of freedom for tr(Σ); see
            :mod:`arbiter_env.training.stats`). Worth it on a CPU for large convolutional networks.
        eval_batch_size: Chunk size for evaluating validation and test losses.
        device: Torch device for data, model and statistics (``"cpu"``, ``"cuda"``, ...).
        lr_schedule: The learning-rate schedule on the sample clock
            (:class:`~arbiter_env.training.lr_schedule.LrSchedule`, or its name, or a mapping of
            its fields). Default ``constant``: the optimizer's ``lr`` throughout. Not with
            ``sgd-hd`` / ``adam-hd``, which adapt the learning rate themselves.
    """

    name: str
    data: DataFactory
    model: ModelFactory
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    epochs: float = 10.0
    num_intervals: int = 20
    batch_min: int = 8
    batch_max: int = 512
    batch_start: int = 128
    validation_fraction: float = 0.2
    split_seed: int = 0
    probe_size: int = 64
    probe_microbatches: int | None = None
    eval_batch_size: int = 4096
    device: str = "cpu"
    lr_schedule: LrSchedule = field(default_factory=LrSchedule)

    def __post_init__(self) -> None:
        require(bool(self.name), "A task needs a non-empty name.")
        object.__setattr__(self, "lr_schedule", LrSchedule.from_value(self.lr_schedule))
        require(
            self.lr_schedule.is_constant or self.optimizer.name not in ("sgd-hd", "adam-hd"),
            f"lr_schedule {self.lr_schedule.name!r} cannot drive {self.optimizer.name!r}, which "
            "adapts its own learning rate; use lr_schedule 'constant' or the plain optimizer.",
        )
        # Types first, so that "1" or 8.5 is named here rather than failing (or being
        # truncated) somewhere inside the trainer.
        check_real("epochs", self.epochs)
        check_real("validation_fraction", self.validation_fraction)
        for name, minimum in (
            ("num_intervals", 1),
            ("batch_min", None),
            ("batch_max", None),
            ("batch_start", None),
            ("split_seed", None),
            ("probe_size", 4),
            ("eval_batch_size", 1),
        ):
            check_int(name, getattr(self, name), minimum)
        if not isinstance(self.device, str | torch.device):
            raise ValueError(f"device must be a string such as 'cpu', got {self.device!r}.")
        require(callable(self.data), "Task.data must be a callable returning ClassificationData.")
        require(callable(self.model), "Task.model must be a callable (input_shape, classes).")
        require(
            self.epochs > 0 and math.isfinite(self.epochs),
            f"epochs must be > 0, got {self.epochs}.",
        )
        require(
            1 <= self.batch_min <= self.batch_start <= self.batch_max,
            "Need 1 <= batch_min <= batch_start <= batch_max, got "
            f"{self.batch_min}, {self.batch_start}, {self.batch_max}.",
        )
        require(
            0 < self.validation_fraction < 1,
            f"validation_fraction must be in (0, 1), got {self.validation_fraction}.",
        )
        microbatches = self.probe_microbatches
        require(
            microbatches is None
            or (
                isinstance(microbatches, int)
                and microbatches >= 2
                and microbatches % 2 == 0
                and self.probe_size % microbatches == 0
            ),
            f"probe_microbatches must be None (exact statistics) or an even number >= 2 that "
            f"divides probe_size={self.probe_size}, got {microbatches!r}.",
        )
        try:
            torch.device(self.device)
        except RuntimeError as error:
            raise ValueError(f"Invalid device {self.device!r}: {error}") from None

    def replace(self, **changes: object) -> Task:
        """Returns a copy with some fields changed, validated again (``dataclasses.replace``).

        ``optimizer`` may be given as a dict of :class:`OptimizerConfig` fields to change.
        ``lr_schedule`` may be a name, or a dict: with a ``name``, a new schedule; without
        one, fields of the task's schedule to change.
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(
                f"Unknown task field(s) {sorted(unknown)}; valid fields: "
                f"{[f.name for f in dataclasses.fields(self)]}."
            )
        optimizer = changes.get("optimizer")
        if isinstance(optimizer, dict):
            valid = [f.name for f in dataclasses.fields(self.optimizer)]
            wrong = sorted(set(optimizer) - set(valid))
            if wrong:
                raise ValueError(f"Unknown optimizer field(s) {wrong}; valid fields: {valid}.")
            changes["optimizer"] = dataclasses.replace(self.optimizer, **optimizer)
        schedule = changes.get("lr_schedule")
        if isinstance(schedule, dict) and "name" not in schedule:
            changes["lr_schedule"] = LrSchedule.from_value(
                {**dataclasses.asdict(self.lr_schedule), **schedule}
            )
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
