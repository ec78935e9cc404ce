"""The hyper-learning interface: what white-box agents such as Arbiter see of the inner trainer.

RL agents and heuristics never need it. :class:`~arbiter_env.training.trainer.InnerTrainer`
inherits it from :class:`HyperLearningInterface`:

* :attr:`~HyperLearningInterface.head` is the network's output layer, the last ``nn.Linear`` its
  forward calls (see :func:`arbiter_env.training.network.check_output_layer`);
* :meth:`~HyperLearningInterface.inject_before_head` replaces the head's input features ``x`` by
  ``fn(x)`` while the context is open;
* :meth:`~HyperLearningInterface.penultimate_features` returns those features for any inputs, and
  :attr:`~HyperLearningInterface.feature_width` their width F;
* :meth:`~HyperLearningInterface.sample_validation` draws fresh validation examples;
* :meth:`~HyperLearningInterface.add_step_hook` runs a callback after every inner update, with a
  :class:`StepInfo`;
* :meth:`~HyperLearningInterface.evaluation_mode` holds the network in evaluation mode for a
  measurement.

Agents also read the trainer's ``data``, ``task``, ``device``, ``model`` (a new object at every
reset), ``batch_size``, ``samples_seen`` and its learning-rate rule (``lr_scaling``,
``base_batch_size``, ``current_lr``).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from arbiter_env.training.data import DataSplits
from arbiter_env.training.sampler import index_to_device

if TYPE_CHECKING:
    from arbiter_env.training.trainer import InnerTrainer


@dataclass(frozen=True)
class StepInfo:
    """What a step hook receives after each inner update."""

    trainer: InnerTrainer
    update: int
    """Number of inner updates so far in the episode, this one included."""
    batch_size: int
    """Size of the batch just used (the last batch of an interval may be shorter)."""
    loss: torch.Tensor
    """Training loss of the batch, detached; calling ``.item()`` forces a device sync."""


StepHook = Callable[[StepInfo], None]


class HyperLearningInterface:
    """The white-box methods of the inner trainer (see the module docstring)."""

    model: nn.Module | None
    """The inner network of the current episode (``None`` before the first reset)."""
    head: nn.Linear
    """The network's output layer."""
    data: DataSplits
    device: torch.device
    validation_generator: torch.Generator
    """The episode's stream of validation draws."""
    _step_hooks: OrderedDict[int, StepHook]
    _mode_independent: bool

    def add_step_hook(self, hook: StepHook) -> RemovableHandle:
        """Calls ``hook(StepInfo)`` after every inner update; ``handle.remove()`` detaches it."""
        handle = RemovableHandle(self._step_hooks)
        self._step_hooks[handle.id] = hook
        return handle

    @contextlib.contextmanager
    def inject_before_head(
        self, transform: Callable[[torch.Tensor], torch.Tensor]
    ) -> Iterator[None]:
        """Replaces the final layer's input features ``x`` by ``transform(x)`` inside the context."""
        self._require_model()
        handle = self.head.register_forward_pre_hook(lambda module, args: (transform(args[0]),))
        try:
            yield
        finally:
            handle.remove()

    def penultimate_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """The inputs of the final ``nn.Linear`` layer for ``inputs`` (with autograd intact)."""
        captured: list[torch.Tensor] = []

        def capture(features: torch.Tensor) -> torch.Tensor:
            captured.append(features)
            return features

        with self.inject_before_head(capture):
            self._require_model()(inputs)
        return captured[0]

    @property
    def feature_width(self) -> int:
        """Width F of the penultimate features."""
        return int(self.head.in_features)

    def sample_validation(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draws ``n`` validation examples, without replacement when ``n`` fits in the part.

        Uses the episode's validation generator unless ``generator`` is given.
        """
        if n < 1:
            raise ValueError(f"Asked for {n} validation examples; ask for at least one.")
        generator = generator or self.validation_generator
        available = self.data.x_val.shape[0]
        if n <= available:
            index = torch.randperm(available, generator=generator)[:n]
        else:
            index = torch.randint(available, (n,), generator=generator)
        index = index_to_device(index, self.device)
        return self.data.x_val[index], self.data.y_val[index]

    @contextlib.contextmanager
    def evaluation_mode(self) -> Iterator[nn.Module]:
        """The network in evaluation mode inside the context, then back in its previous mode.

        Agents evaluate meta-objectives here so that they touch no batch-norm statistics and draw
        no dropout randomness. The switch (two walks over the modules) is skipped when the
        network's forward cannot depend on the mode.
        """
        model = self._require_model()
        if self._mode_independent:
            yield model
            return
        was_training = model.training
        model.eval()
        try:
            yield model
        finally:
            model.train(was_training)

    def _require_model(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError("Call InnerTrainer.reset(seed) before training or measuring.")
        return self.model
