"""How a task is trained: the one place that runs inner training.

The :class:`InnerTrainer` keeps the data as tensors on the task's device and draws batches with an
:class:`EpochSampler`, so the batch size can change at every call without rebuilding a DataLoader.
It also exposes the *hyper-learning interface* that white-box agents such as Arbiter need and RL
agents never touch:

* :attr:`InnerTrainer.head` is the network's output layer, the last ``nn.Linear`` its forward calls
  (see :func:`check_output_layer`);
* :meth:`InnerTrainer.inject_before_head` replaces the head's input features ``x`` by ``fn(x)``
  while the context is open (Arbiter injects ``x + stopgrad(x) ⊙ h``);
* :meth:`InnerTrainer.penultimate_features` returns those features for any inputs;
* :meth:`InnerTrainer.sample_validation` draws fresh validation examples;
* :meth:`InnerTrainer.add_step_hook` runs a callback after every inner update;
* :meth:`InnerTrainer.evaluation_mode` holds the network in evaluation mode for a measurement.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from arbiter_env.checks import check_device, check_int
from arbiter_env.stats import GradientStatistics, gradient_statistics
from arbiter_env.tasks.datasets import ClassificationData
from arbiter_env.tasks.spec import Task
from arbiter_env.training_stats import (
    DEFAULT_MICROBATCHES,
    LinearStepRecorder,
    StepSums,
    linear_layers_of,
    microbatch_backward,
    statistics_from_steps,
)

LrScaling = Literal["none", "linear", "sqrt"]
StatisticsSource = Literal["training", "probe"]
LR_SCALING_RULES: dict[str, Callable[[float], float]] = {
    "none": lambda ratio: 1.0,
    "linear": lambda ratio: ratio,
    "sqrt": math.sqrt,
}


class EpochSampler:
    """Draws batches from a stream of epoch permutations, with a cursor.

    Every run of ``n`` consecutive samples that starts at an epoch boundary holds each example
    exactly once, whatever the batch sizes asked for; a batch that crosses a boundary takes the
    rest of one epoch and the start of the next. Each epoch's permutation is applied to the data
    once (one gather per epoch), so a batch is a contiguous slice, which is cheaper than gathering
    every batch as a ``DataLoader`` does.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
            raise ValueError("The sampler needs as many targets as inputs, and at least one.")
        self._inputs = inputs
        self._targets = targets
        self._generator = generator
        self.num_examples = inputs.shape[0]
        self.samples_drawn = 0
        self._cursor = self.num_examples  # start a fresh permutation on the first draw
        self._epoch_inputs = inputs
        self._epoch_targets = targets

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        parts_x, parts_y = [], []
        needed = batch_size
        while needed > 0:
            if self._cursor == self.num_examples:
                self._start_epoch()
            take = min(needed, self.num_examples - self._cursor)
            stop = self._cursor + take
            parts_x.append(self._epoch_inputs[self._cursor : stop])
            parts_y.append(self._epoch_targets[self._cursor : stop])
            self._cursor = stop
            needed -= take
        self.samples_drawn += batch_size
        if len(parts_x) == 1:
            return parts_x[0], parts_y[0]
        return torch.cat(parts_x), torch.cat(parts_y)

    def _start_epoch(self) -> None:
        order = torch.randperm(self.num_examples, generator=self._generator)
        order = _index_to_device(order, self._inputs.device)
        self._epoch_inputs = self._inputs[order]
        self._epoch_targets = self._targets[order]
        self._cursor = 0


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


@dataclass(frozen=True)
class IntervalResult:
    """Outcome of :meth:`InnerTrainer.train`."""

    train_loss: float
    """Mean training loss over the interval's samples (non-finite when the run diverged)."""
    updates: int
    samples: int
    diverged: bool


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
        return tuple(self.x_train.shape[1:])


_DATA_CACHE: dict[object, ClassificationData] = {}


def load_task_data(task: Task) -> ClassificationData:
    """Loads the task's data once per process (data factories may take seconds)."""
    if task.data not in _DATA_CACHE:
        data = task.data()
        if not isinstance(data, ClassificationData):
            raise TypeError(
                f"Task {task.name!r}: its data factory returned {type(data).__name__}; it must "
                "return ClassificationData (see arbiter_env.tasks.from_tensors)."
            )
        _DATA_CACHE[task.data] = data
    return _DATA_CACHE[task.data]


def split_task_data(task: Task) -> DataSplits:
    """Splits the train split into train and validation parts with the task's ``split_seed``."""
    data = load_task_data(task)
    n = data.x_train.shape[0]
    n_val = int(round(task.validation_fraction * n))
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


class InnerTrainer:
    """Trains a task's network with whatever batch size it is given.

    Args:
        task: The task to train.
        lr_scaling: How the learning rate follows the batch size B: ``"none"`` keeps it,
            ``"linear"`` multiplies it by B/B₀ and ``"sqrt"`` by √(B/B₀).
        base_batch_size: B₀ of the rescaling rule; defaults to ``task.batch_start``.
        statistics: Where :meth:`interval_statistics` takes the gradient statistics after an
            interval. ``"training"`` (default): from the interval's own training batches
            (:mod:`arbiter_env.training_stats`): the last full steps of an ``nn.Linear``
            network (at least ``task.probe_size`` examples), or the last full batch as
            micro-batches for other deterministic networks built of known per-example layers;
            networks with batch norm, other networks with dropout or unknown modules, and
            intervals without a usable step fall back to the probe. ``"probe"``: always a fresh probe batch (:meth:`gradient_statistics`).
    """

    def __init__(
        self,
        task: Task,
        *,
        lr_scaling: LrScaling = "none",
        base_batch_size: int | None = None,
        statistics: StatisticsSource = "training",
    ):
        if lr_scaling not in LR_SCALING_RULES:
            raise ValueError(
                f"Unknown lr_scaling {lr_scaling!r}; choose one of {sorted(LR_SCALING_RULES)}."
            )
        if statistics not in ("training", "probe"):
            raise ValueError(f"Unknown statistics {statistics!r}; use 'training' or 'probe'.")
        self.statistics: StatisticsSource = statistics
        self.task = task
        self.device = check_device(task.device, "device")
        self.data = split_task_data(task)
        self.lr_scaling: LrScaling = lr_scaling
        # `None` means the task's starting size; 0 is an error, not a request for the default.
        self.base_batch_size = (
            task.batch_start
            if base_batch_size is None
            else check_int("base_batch_size", base_batch_size, minimum=1)
        )
        self.budget = int(round(task.epochs * self.data.x_train.shape[0]))
        self._step_hooks: OrderedDict[int, StepHook] = OrderedDict()
        self.model: nn.Module | None = None
        # The batch size before the first interval, so that encodings work before reset().
        self.batch_size = task.batch_start
        self._head_name = check_output_layer(task, self.data)
        self._last_statistics: GradientStatistics | None = None

    # --- episode life cycle ---------------------------------------------------------------------

    def reset(self, seed: int) -> None:
        """Starts a new inner run: fresh initialisation, optimizer, sampler and counters.

        Every random stream of the episode (initialisation, batch order, dropout, probe batches,
        validation draws) comes from generators seeded here, never from global RNG state.
        """
        init_seed, sampler_seed, dropout_seed, probe_seed, val_seed = (
            int(s) for s in np.random.SeedSequence(seed).generate_state(5)
        )
        # nn.Module initialisers only use the global generator; fork it so that the global state
        # is restored afterwards and the initialisation depends on `seed` alone.
        with self._forked_global_rng(init_seed):
            model = self.task.model(self.data.input_shape, self.data.num_classes)
        if not isinstance(model, nn.Module):
            raise TypeError(f"Task {self.task.name!r}: the model factory must return an nn.Module.")
        self.model = model.to(self.device)
        self.head = self.model.get_submodule(self._head_name)
        self._mode_independent = mode_independent(self.model)
        self.optimizer = self.task.optimizer.build(self.model.parameters())
        self._linear_recorder: LinearStepRecorder | None = None
        self._microbatch_statistics = False
        if self.statistics == "training" and not _couples_examples(self.model):
            layers = linear_layers_of(self.model)
            if layers is not None:
                # Per-sample norms hold for any per-example forward, dropout included.
                self._linear_recorder = LinearStepRecorder(self.model, layers)
            elif self._mode_independent:
                # Micro-batches draw dropout masks differently, so only deterministic networks.
                self._microbatch_statistics = True
        self._trainable = [p for p in self.model.parameters() if p.requires_grad]
        self._last_statistics = None
        self.base_lr = self.task.optimizer.lr
        self._applied_lr: float | None = None
        self.sampler = EpochSampler(
            self.data.x_train, self.data.y_train, _cpu_generator(sampler_seed)
        )
        self._dropout_generator = _cpu_generator(dropout_seed)
        self._probe_generator = _cpu_generator(probe_seed)
        self.validation_generator = _cpu_generator(val_seed)
        self.samples_seen = 0
        self.updates = 0
        self.batch_size = self.task.batch_start

    # --- training -------------------------------------------------------------------------------

    def train(self, batch_size: int, num_samples: int) -> IntervalResult:
        """Trains on exactly ``num_samples`` samples in batches of ``batch_size``.

        The last batch is shorter when ``batch_size`` does not divide ``num_samples``. Divergence
        (a non-finite loss or parameter) is checked once at the end, which costs one device
        synchronisation per interval instead of one per update.
        """
        model = self._require_model()
        if batch_size < 1 or num_samples < 0:
            raise ValueError(
                f"Need batch_size >= 1 and num_samples >= 0, got {batch_size}, {num_samples}."
            )
        self.batch_size = batch_size
        self._apply_learning_rate()
        optimizer, sampler, hooks = self.optimizer, self.sampler, self._step_hooks
        # Detached batch losses are kept and reduced once at the end: no per-update arithmetic.
        batch_losses: list[torch.Tensor] = []
        remaining = num_samples
        dropout_seed = int(torch.randint(2**62, (), generator=self._dropout_generator))
        # A network made only of the known deterministic, mode-independent layers needs neither
        # the mode switch nor a seeded global RNG, so it skips their per-interval cost.
        random_stream = (
            contextlib.nullcontext()
            if self._mode_independent
            else self._forked_global_rng(dropout_seed)
        )
        if not self._mode_independent:
            model.train()
        recorder = self._linear_recorder
        # The statistics come from the last full batches of the interval, at least
        # task.probe_size examples where the interval has them: the steps closest to the
        # decision, and never fewer examples than the probe.
        record_from = record_to = -1
        if recorder is not None or self._microbatch_statistics:
            record_to = max(num_samples // batch_size - 1, 0) * batch_size
            steps = -(-self.task.probe_size // batch_size)
            record_from = max(record_to - (steps - 1) * batch_size, 0)
        microbatch_sums: list[StepSums] = []
        self._last_statistics = None
        if recorder is not None:
            recorder.start()
        with random_stream, contextlib.ExitStack() as cleanup:
            if recorder is not None:
                cleanup.callback(recorder.stop)  # hooks never outlive the interval
            while remaining > 0:
                size = min(batch_size, remaining)
                inputs, targets = sampler.next_batch(size)
                optimizer.zero_grad(set_to_none=True)
                offset = num_samples - remaining
                if not record_from <= offset <= record_to:
                    loss = F.cross_entropy(model(inputs), targets)
                    loss.backward()
                elif recorder is not None:
                    loss = recorder.record_step(inputs, targets)
                else:
                    loss, sums = microbatch_backward(
                        model,
                        self._trainable,
                        inputs,
                        targets,
                        self.task.probe_microbatches or DEFAULT_MICROBATCHES,
                    )
                    if sums is not None:
                        microbatch_sums.append(sums)
                optimizer.step()
                batch_losses.append(loss.detach())
                remaining -= size
                self.updates += 1
                self.samples_seen += size
                if hooks:
                    info = StepInfo(self, self.updates, size, batch_losses[-1])
                    for hook in list(hooks.values()):
                        hook(info)
        recorded = recorder.sums() if recorder is not None else None
        if microbatch_sums:
            self._last_statistics = statistics_from_steps(
                StepSums.concatenate(microbatch_sums), self.task.probe_size
            )
        updates = len(batch_losses)
        if updates == 0:
            return IntervalResult(train_loss=math.nan, updates=0, samples=0, diverged=False)
        losses = torch.stack(batch_losses)
        last_size = num_samples - batch_size * (updates - 1)  # every other batch is full
        mean_loss = (
            losses.sum() * batch_size - losses[-1] * (batch_size - last_size)
        ) / num_samples
        # One fused multi-tensor norm rather than a check per parameter tensor (hundreds of kernel
        # launches on a WRN): it is non-finite exactly when a parameter is, or overflows.
        parameter_norm = torch.nn.utils.get_total_norm(list(model.parameters()))
        # One host transfer for the loss, the divergence check and the recorded statistics.
        values = torch.cat(
            [
                torch.stack([mean_loss, parameter_norm.to(mean_loss.dtype)]),
                *([] if recorded is None else [recorded.to(mean_loss.dtype)]),
            ]
        ).tolist()
        mean_loss_value, parameter_norm_value = values[:2]
        if recorder is not None and recorded is not None:
            self._last_statistics = recorder.statistics(values[2:], self.task.probe_size)
        diverged = not (math.isfinite(mean_loss_value) and math.isfinite(parameter_norm_value))
        return IntervalResult(
            train_loss=mean_loss_value, updates=updates, samples=num_samples, diverged=diverged
        )

    # --- learning rate --------------------------------------------------------------------------

    def set_base_lr(self, lr: float) -> None:
        """Sets the learning rate at the base batch size, used from the next :meth:`train` call.

        This is the documented way for schedules (step decay, AdaBatch, Smith et al.) to change
        the learning rate; the ``lr_scaling`` rule still applies on top of it.
        """
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"The learning rate must be positive and finite, got {lr}.")
        self.base_lr = float(lr)

    def lr_for(self, batch_size: int) -> float:
        """Learning rate the trainer uses for ``batch_size`` under its rescaling rule."""
        return self.base_lr * LR_SCALING_RULES[self.lr_scaling](batch_size / self.base_batch_size)

    @property
    def current_lr(self) -> float:
        """Learning rate in the optimizer's first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _apply_learning_rate(self) -> None:
        # Written only when the target changes, so optimizers that adapt their own learning rate
        # (hypergradient descent) keep it between intervals.
        target = self.lr_for(self.batch_size)
        if target != self._applied_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = target
            self._applied_lr = target

    # --- measurements ---------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(
        self, split: Literal["validation", "test", "train"] = "validation"
    ) -> tuple[float, float]:
        """Mean cross-entropy loss and accuracy on a whole split, in evaluation mode."""
        inputs, targets = {
            "validation": (self.data.x_val, self.data.y_val),
            "test": (self.data.x_test, self.data.y_test),
            "train": (self.data.x_train, self.data.y_train),
        }[split]
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.float64)
        chunk = self.task.eval_batch_size
        with self.evaluation_mode() as model:
            for start in range(0, inputs.shape[0], chunk):
                logits = model(inputs[start : start + chunk])
                batch_targets = targets[start : start + chunk]
                loss_sum += F.cross_entropy(logits, batch_targets, reduction="sum").double()
                correct += (logits.argmax(1) == batch_targets).sum().double()
        loss, accuracy = (torch.stack([loss_sum, correct]) / inputs.shape[0]).tolist()
        return loss, accuracy

    def interval_statistics(self) -> GradientStatistics:
        """Gradient statistics of the last interval, from where ``statistics`` says.

        With ``statistics="training"``, the estimates the last :meth:`train` call gathered from
        its own batches (see :mod:`arbiter_env.training_stats`); the probe when that call could
        not gather any (before any training, batch norm or dropout networks, or intervals too
        short for two examples in a step). With ``statistics="probe"``, always the probe.
        """
        if self._last_statistics is not None:
            return self._last_statistics
        return self.gradient_statistics()

    def gradient_statistics(self) -> GradientStatistics:
        """Gradient statistics on a fresh probe batch of ``task.probe_size`` training examples.

        Exact (per-sample gradients) unless ``task.probe_microbatches`` asks for the micro-batch
        estimator.

        The probe is drawn with its own generator, so measuring never shifts the batch order. The
        network is evaluated in evaluation mode, where batch norm uses its running statistics
        and per-sample gradients are well defined.
        """
        n = self.data.x_train.shape[0]
        microbatches = self.task.probe_microbatches
        size = min(self.task.probe_size, n)
        if microbatches is not None:
            size -= size % microbatches  # only a training part smaller than the probe trims it
        index = _index_to_device(
            torch.randperm(n, generator=self._probe_generator)[:size], self.device
        )
        with self.evaluation_mode() as model:
            return gradient_statistics(
                model,
                self.data.x_train[index],
                self.data.y_train[index],
                method="auto" if microbatches is None else "microbatch",
                num_microbatches=microbatches,
            )

    # --- hyper-learning interface ---------------------------------------------------------------

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
        index = _index_to_device(index, self.device)
        return self.data.x_val[index], self.data.y_val[index]

    # --- helpers --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def evaluation_mode(self) -> Iterator[nn.Module]:
        """The network in evaluation mode inside the context, then back in its previous mode.

        Part of the hyper-learning interface: agents evaluate meta-objectives here so that they
        touch no batch-norm statistics and draw no dropout randomness. The switch (two walks
        over the modules) is skipped when the network's forward cannot depend on the mode.
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

    @contextlib.contextmanager
    def _forked_global_rng(self, seed: int) -> Iterator[None]:
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(
            devices=devices, device_type=self.device.type if devices else "cuda"
        ):
            # Not torch.manual_seed: it also queues lazy seeding of every accelerator backend and
            # records a stack trace for each, which cost milliseconds per interval.
            torch.default_generator.manual_seed(seed)
            if devices:
                torch.cuda.manual_seed(seed)
            yield


def _index_to_device(index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor of indices (drawn with a CPU generator) on ``device``, without a device sync.

    Indices are drawn on the host so that CPU and GPU runs of a seed see the same examples. A plain
    host-to-GPU copy from pageable memory blocks until every kernel queued before it has run; from
    pinned memory it is queued like a kernel, and torch keeps the pinned block alive until the copy
    is done. This matters inside the inner loop: at each epoch start, and at each of Arbiter's
    meta-steps, which draw validation examples after every inner update.
    """
    if device.type != "cuda":
        return index.to(device)
    return index.pin_memory().to(device, non_blocking=True)


def _cpu_generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


OUTPUT_LAYER_RULE = (
    "the model's output must be the output of an nn.Linear with out_features == num_classes, "
    "and that layer must be the last nn.Linear the forward pass calls (Arbiter injects its "
    "response into that layer's input)"
)


def check_output_layer(task: Task, data: DataSplits) -> str:
    """Checks the output-layer contract on a throwaway model; returns the output layer's name.

    The rule (:data:`OUTPUT_LAYER_RULE`): the network's output is computed by an ``nn.Linear``
    with ``out_features == num_classes``, and that layer is the last ``nn.Linear`` the forward
    pass calls. Registration order does not matter: the layers are traced with forward hooks on
    two training examples, in evaluation mode and without gradients, on the CPU. The model is
    built under a forked global RNG, so checking leaves the global RNG state as it was.

    Raises:
        ValueError: naming the task, what was found and the rule.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        model = task.model(data.input_shape, data.num_classes)
    if not isinstance(model, nn.Module):
        raise TypeError(f"Task {task.name!r}: the model factory must return an nn.Module.")
    names = {module: name for name, module in model.named_modules()}
    calls: list[tuple[nn.Linear, torch.Tensor]] = []

    def record(module: nn.Module, args: object, output: torch.Tensor) -> None:
        calls.append((module, output))  # type: ignore[arg-type]

    handles = [
        module.register_forward_hook(record)
        for module in model.modules()
        if isinstance(module, nn.Linear)
    ]
    try:
        model.eval()
        with torch.no_grad():
            output = model(data.x_train[:2].cpu())
    finally:
        for handle in handles:
            handle.remove()
    if not calls:
        raise ValueError(
            f"Task {task.name!r}: the forward pass calls no nn.Linear; {OUTPUT_LAYER_RULE}."
        )
    head, head_output = calls[-1]
    head_name = names[head]
    if head.out_features != data.num_classes:
        raise ValueError(
            f"Task {task.name!r}: the last nn.Linear the forward pass calls, {head_name!r}, has "
            f"out_features={head.out_features}, but the task has {data.num_classes} classes; "
            f"{OUTPUT_LAYER_RULE}."
        )
    if not (
        isinstance(output, torch.Tensor)
        and output.shape == head_output.shape
        and torch.equal(output, head_output)
    ):
        raise ValueError(
            f"Task {task.name!r}: the model's output is not the output of {head_name!r}, the last "
            f"nn.Linear its forward pass calls (something is computed after it); "
            f"{OUTPUT_LAYER_RULE}."
        )
    return head_name


# Modules whose forward is the same in training and evaluation mode and draws no random numbers.
# A network made only of these needs no eval()/train() switch around a measurement and no seeded
# global RNG while training; anything else (batch norm, dropout, custom modules that might read
# self.training or the global RNG) is switched to evaluation mode and back, and trains under the
# episode's dropout seed.
_MODE_INDEPENDENT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Sequential,
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
)


def _couples_examples(model: nn.Module) -> bool:
    """Whether a known module mixes the examples of a batch (batch norm in training mode), so
    that per-example gradients of a training step are not the per-sample losses' gradients."""
    return any(isinstance(m, nn.modules.batchnorm._NormBase) for m in model.modules())


def mode_independent(model: nn.Module | None) -> bool:
    """Whether ``model``'s forward cannot depend on ``model.training`` (known module types only)."""
    return model is not None and all(
        type(module) in _MODE_INDEPENDENT_TYPES for module in model.modules()
    )
