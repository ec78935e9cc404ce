"""How a task is trained: the one place that runs inner training.

The :class:`InnerTrainer` keeps the data as tensors on the task's device
(:mod:`arbiter_env.training.data`) and draws batches with an
:class:`~arbiter_env.training.sampler.EpochSampler`, so the batch size can change at every call
without rebuilding a DataLoader. It measures gradient statistics from its own training steps
or on a probe batch (:mod:`arbiter_env.training.stats`),
and exposes the *hyper-learning interface* that white-box agents such as Arbiter need and RL agents
never touch (:mod:`arbiter_env.training.hyper`).
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

from arbiter_env.checks import check_device, check_int
from arbiter_env.tasks.spec import Task
from arbiter_env.training.data import DataSplits, split_task_data
from arbiter_env.training.hyper import HyperLearningInterface, StepHook, StepInfo
from arbiter_env.training.network import (
    check_output_layer,
    couples_examples,
    linear_layers_of,
    mode_independent,
)
from arbiter_env.training.sampler import EpochSampler, cpu_generator, index_to_device
from arbiter_env.training.stats import (
    DEFAULT_MICROBATCHES,
    GradientStatistics,
    LinearStepRecorder,
    StepSums,
    gradient_statistics,
    microbatch_backward,
    statistics_from_sums,
)

LrScaling = Literal["none", "linear", "sqrt", "adascale"]
StatisticsSource = Literal["training", "probe"]
LR_SCALING_RULES: dict[str, Callable[[float], float]] = {
    "none": lambda ratio: 1.0,
    "linear": lambda ratio: ratio,
    "sqrt": math.sqrt,
}
"""The rules that depend on the batch-size ratio B/B₀ alone."""
LR_SCALING_CHOICES: tuple[str, ...] = (*LR_SCALING_RULES, "adascale")
"""Every ``lr_scaling`` rule: the ratio rules and ``"adascale"``, which also reads the statistics."""


def adascale_gain(
    scale: float, trace_covariance: float, grad_sq_norm: float, base_batch_size: int
) -> float:
    """AdaScale's gain ``r = (σ² + ‖g‖²) / (σ²/S + ‖g‖²)`` (Johnson, Agrawal, Gu & Guestrin 2020).

    ``S = B/B₀`` is the scale, ``σ² = tr(Σ)/B₀`` the variance of a gradient averaged over a batch
    of the base size and ``‖g‖² = |G|²`` the squared norm of the true gradient. ``r`` lies between
    1 (no noise: a larger batch gains nothing) and ``S`` (pure noise: the linear rule). Without a
    usable measurement (non-finite or non-positive ``tr(Σ)``) the gain is 1; a negative ``|G|²``
    estimate counts as 0.

    Args:
        scale: ``S = B/B₀``.
        trace_covariance: tr(Σ), the trace of the per-sample gradient covariance.
        grad_sq_norm: |G|², the unbiased squared norm of the mean gradient.
        base_batch_size: B₀.
    """
    if not (math.isfinite(trace_covariance) and trace_covariance > 0):
        return 1.0
    sigma_sq = trace_covariance / base_batch_size
    mean_sq = max(grad_sq_norm, 0.0) if math.isfinite(grad_sq_norm) else 0.0
    return (sigma_sq + mean_sq) / (sigma_sq / scale + mean_sq)


def recorded_offsets(batch_size: int, num_samples: int, probe_size: int) -> tuple[int, int]:
    """Sample offsets of the first and the last step of an interval whose statistics are recorded.

    The statistics come from the last full batches of the interval, at least ``probe_size``
    examples where the interval has them: the steps closest to the decision, and never fewer
    examples than the probe.
    """
    record_to = max(num_samples // batch_size - 1, 0) * batch_size
    steps = -(-probe_size // batch_size)
    return max(record_to - (steps - 1) * batch_size, 0), record_to


@dataclass(frozen=True)
class IntervalResult:
    """Outcome of :meth:`InnerTrainer.train`."""

    train_loss: float
    """Mean training loss over the interval's samples (non-finite when the run diverged)."""
    updates: int
    samples: int
    diverged: bool
    statistics: GradientStatistics | None = None
    """Gradient statistics gathered from the interval's own steps (``None``: none were)."""


class InnerTrainer(HyperLearningInterface):
    """Trains a task's network with whatever batch size it is given.

    Args:
        task: The task to train.
        lr_scaling: How the learning rate follows the batch size B: ``"none"`` keeps it,
            ``"linear"`` multiplies it by B/B₀, ``"sqrt"`` by √(B/B₀) and ``"adascale"`` by
            AdaScale's gain :func:`adascale_gain` at S = B/B₀, from the latest gradient
            statistics the trainer measured (the last interval's, or the probe at reset).
        base_batch_size: B₀ of the rescaling rule; defaults to ``task.batch_start``.
        statistics: Where :meth:`interval_statistics` takes the gradient statistics after an
            interval. ``"training"`` (default): from the interval's own training batches
            (:mod:`arbiter_env.training.stats.steps`): the last full steps of an ``nn.Linear``
            network (at least ``task.probe_size`` examples), or the last full batch as
            micro-batches for other deterministic networks built of known per-example layers;
            networks with batch norm, other networks with dropout or unknown modules, and
            intervals without a usable step fall back to the probe. ``"probe"``: always a fresh
            probe batch (:meth:`gradient_statistics`).
    """

    def __init__(
        self,
        task: Task,
        *,
        lr_scaling: LrScaling = "none",
        base_batch_size: int | None = None,
        statistics: StatisticsSource = "training",
    ):
        if lr_scaling not in LR_SCALING_CHOICES:
            raise ValueError(
                f"Unknown lr_scaling {lr_scaling!r}; choose one of {sorted(LR_SCALING_CHOICES)}."
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
        self.budget = round(task.epochs * self.data.x_train.shape[0])
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
        head = self.model.get_submodule(self._head_name)
        if not isinstance(head, nn.Linear):  # the factory built another network than at __init__
            raise TypeError(
                f"Task {self.task.name!r}: the model's {self._head_name!r} is no longer an "
                "nn.Linear; the model factory must build the same architecture every time."
            )
        self.head = head
        self._mode_independent = mode_independent(self.model)
        self.optimizer = self.task.optimizer.build(self.model.parameters())
        self._choose_statistics_path(self.model)
        self.trainable_parameters = [p for p in self.model.parameters() if p.requires_grad]
        self._last_statistics = None
        self._gain_statistics: GradientStatistics | None = None
        self.base_lr = self.task.optimizer.lr
        self._applied_lr: float | None = None
        self.sampler = EpochSampler(
            self.data.x_train, self.data.y_train, cpu_generator(sampler_seed)
        )
        self._dropout_generator = cpu_generator(dropout_seed)
        self._probe_generator = cpu_generator(probe_seed)
        self.validation_generator = cpu_generator(val_seed)
        self.samples_seen = 0
        self.updates = 0
        self.batch_size = self.task.batch_start

    def _choose_statistics_path(self, model: nn.Module) -> None:
        """Where ``statistics="training"`` takes its numbers from, for this network."""
        self._linear_recorder: LinearStepRecorder | None = None
        self._microbatch_statistics = False
        if self.statistics == "training" and not couples_examples(model):
            layers = linear_layers_of(model)
            if layers is not None:
                # Per-sample norms hold for any per-example forward, dropout included.
                self._linear_recorder = LinearStepRecorder(model, layers)
            elif self._mode_independent:
                # Micro-batches draw dropout masks differently, so only deterministic networks.
                self._microbatch_statistics = True

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
        self.prepare_interval(batch_size)
        # A network made only of the known deterministic, mode-independent layers needs neither
        # the mode switch nor a seeded global RNG (nor its seed, which nothing else reads), so
        # it skips their per-interval cost.
        random_stream = (
            contextlib.nullcontext()
            if self._mode_independent
            else self._forked_global_rng(
                int(torch.randint(2**62, (), generator=self._dropout_generator))
            )
        )
        if not self._mode_independent:
            model.train()
        recorder = self._linear_recorder
        self._last_statistics = None
        if recorder is not None:
            recorder.start()
        with random_stream, contextlib.ExitStack() as cleanup:
            if recorder is not None:
                cleanup.callback(recorder.stop)  # hooks never outlive the interval
            batch_losses, microbatch_sums = self._run_steps(model, batch_size, num_samples)
        recorded = recorder.sums() if recorder is not None else None
        if microbatch_sums:
            self._last_statistics = statistics_from_sums(
                StepSums.concatenate(microbatch_sums), self.task.probe_size
            )
        return self._finish_interval(model, batch_losses, batch_size, num_samples, recorded)

    def _run_steps(
        self, model: nn.Module, batch_size: int, num_samples: int
    ) -> tuple[list[torch.Tensor], list[StepSums]]:
        """The interval's inner updates; returns the detached batch losses and recorded sums."""
        record_from, record_to = (
            recorded_offsets(batch_size, num_samples, self.task.probe_size)
            if self._linear_recorder is not None or self._microbatch_statistics
            else (-1, -1)  # nothing recorded
        )
        optimizer, sampler, hooks = self.optimizer, self.sampler, self._step_hooks
        # A constant schedule leaves the rate _apply_learning_rate wrote for the whole interval.
        scheduled = not self.task.lr_schedule.is_constant
        # Detached batch losses are kept and reduced once at the end: no per-update arithmetic.
        batch_losses: list[torch.Tensor] = []
        microbatch_sums: list[StepSums] = []
        remaining = num_samples
        while remaining > 0:
            size = min(batch_size, remaining)
            inputs, targets = sampler.next_batch(size)
            optimizer.zero_grad(set_to_none=True)
            if scheduled:  # the interval's size sets the scaling, the batch's middle the clock
                self._write_lr(self.lr_for(batch_size, self.samples_seen, batch_samples=size))
            offset = num_samples - remaining
            if not record_from <= offset <= record_to:
                loss = F.cross_entropy(model(inputs), targets)
                loss.backward()
            else:
                loss = self._recorded_step(model, inputs, targets, microbatch_sums)
            optimizer.step()
            batch_losses.append(loss.detach())
            remaining -= size
            self.updates += 1
            self.samples_seen += size
            if hooks:
                info = StepInfo(self, self.updates, size, batch_losses[-1])
                for hook in list(hooks.values()):
                    hook(info)
        return batch_losses, microbatch_sums

    def _recorded_step(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        microbatch_sums: list[StepSums],
    ) -> torch.Tensor:
        """Forward and backward pass of a step whose gradient statistics are recorded."""
        if self._linear_recorder is not None:
            return self._linear_recorder.record_step(inputs, targets)
        loss, sums = microbatch_backward(
            model,
            self.trainable_parameters,
            inputs,
            targets,
            self.task.probe_microbatches or DEFAULT_MICROBATCHES,
        )
        if sums is not None:
            microbatch_sums.append(sums)
        return loss

    def _finish_interval(
        self,
        model: nn.Module,
        batch_losses: list[torch.Tensor],
        batch_size: int,
        num_samples: int,
        recorded: torch.Tensor | None,
    ) -> IntervalResult:
        """The interval's mean loss and divergence check, and the Linear recorder's statistics."""
        updates = len(batch_losses)
        if updates == 0:
            return IntervalResult(train_loss=math.nan, updates=0, samples=0, diverged=False)
        losses = torch.stack(batch_losses)
        last_size = num_samples - batch_size * (updates - 1)  # every other batch is full
        mean_loss = (
            losses.sum() * batch_size - losses[-1] * (batch_size - last_size)
        ) / num_samples
        # One fused multi-tensor norm per parameter rather than a check per element (hundreds of
        # kernel launches on a WRN): a norm is non-finite exactly when its tensor is, or
        # overflows. Only finiteness matters, so the per-tensor norms are not reduced further.
        norms = torch._foreach_norm(list(model.parameters()))
        # One host transfer for the loss, the divergence check and the recorded statistics.
        values = torch.cat(
            [
                mean_loss.reshape(1),
                torch.stack(norms).to(mean_loss.dtype),
                *([] if recorded is None else [recorded.to(mean_loss.dtype)]),
            ]
        ).tolist()
        mean_loss_value = values[0]
        checked = 1 + len(norms)
        if self._linear_recorder is not None and recorded is not None:
            self._last_statistics = self._linear_recorder.statistics(
                values[checked:], self.task.probe_size
            )
        diverged = not all(math.isfinite(v) for v in values[:checked])
        return IntervalResult(
            train_loss=mean_loss_value,
            updates=updates,
            samples=num_samples,
            diverged=diverged,
            statistics=self._last_statistics,
        )

    def prepare_interval(self, batch_size: int) -> None:
        """Takes ``batch_size`` for the next interval and applies its learning rate.

        :meth:`train` calls it; so does a caller that trains the interval elsewhere (the
        population's batched step), before it reads the optimizer's settings.
        """
        self.batch_size = batch_size
        self._apply_learning_rate()

    def record_interval(self, result: IntervalResult) -> None:
        """Books an interval trained elsewhere on this trainer's parameters and optimizer state.

        The population's batched step trains its members' intervals outside :meth:`train`; this
        counts the interval's samples and updates and keeps its statistics, as :meth:`train`
        does for its own intervals.
        """
        self.updates += result.updates
        self.samples_seen += result.samples
        self._last_statistics = result.statistics

    def share_data(self, data: DataSplits) -> None:
        """Trains on ``data``, an equal copy of this trainer's splits, from now on.

        The population keeps one copy of each data set for all its members. Called right after
        :meth:`reset` (before anything is drawn), the batch order stays what it would have been.
        """
        self.data = data
        self.sampler = self.sampler.with_data(data.x_train, data.y_train)

    # --- learning rate --------------------------------------------------------------------------

    def set_base_lr(self, lr: float) -> None:
        """Sets the learning rate at the base batch size, used from the next :meth:`train` call.

        This is the documented way for schedules (step decay, AdaBatch, Smith et al.) to change
        the learning rate; the ``lr_scaling`` rule still applies on top of it.
        """
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"The learning rate must be positive and finite, got {lr}.")
        self.base_lr = float(lr)

    def lr_for(
        self, batch_size: int, samples_seen: int | None = None, batch_samples: int | None = None
    ) -> float:
        """Learning rate of an update at ``batch_size`` that starts after ``samples_seen`` samples.

        The base rate, times the rescaling rule's factor for ``batch_size``, times the task's
        ``lr_schedule`` factor at the middle of the update's batch on the sample clock
        (:mod:`arbiter_env.training.lr_schedule`). ``samples_seen`` defaults to the samples
        trained so far (the rate the next update at ``batch_size`` would use);
        ``batch_samples``, the batch's length, to ``batch_size`` (an interval's short last
        batch is shorter, and keeps the interval's scaling).
        """
        lr = self.base_lr * self.scaling_factor(batch_size)
        schedule = self.task.lr_schedule
        if schedule.is_constant:
            return lr
        start = self.samples_seen if samples_seen is None else samples_seen
        middle = start + (batch_size if batch_samples is None else batch_samples) / 2
        return lr * schedule.factor(middle / self.budget)

    def scaling_factor(self, batch_size: int) -> float:
        """The ``lr_scaling`` rule's factor on the base rate for ``batch_size``."""
        ratio = batch_size / self.base_batch_size
        if self.lr_scaling != "adascale":
            return LR_SCALING_RULES[self.lr_scaling](ratio)
        stats = self._gain_statistics
        if stats is None:
            return 1.0
        return adascale_gain(
            ratio, stats.trace_covariance, stats.grad_sq_norm, self.base_batch_size
        )

    def interval_lr(self, batch_size: int) -> float:
        """The learning rate the observation reports after an interval at ``batch_size``.

        The rate of the interval's last update: its one rate under a constant schedule, the
        scheduled rate of its last batch otherwise (``lr_for`` before any training).
        """
        if self._applied_lr is None:  # before any training
            return self.lr_for(batch_size)
        return self._applied_lr

    def check_task_fits(self) -> None:
        """Raises ``ValueError`` unless the task's ladder fits its data and its intervals its budget."""
        task = self.task
        num_train = int(self.data.x_train.shape[0])
        if task.batch_max > num_train:
            # A batch of more examples than the training part holds would repeat examples, and
            # info would report a batch size the run never really had.
            raise ValueError(
                f"Task {task.name!r}: batch_max {task.batch_max} is above the {num_train} "
                f"examples of its training part; set batch_max <= {num_train} "
                f"(task_kwargs={{'batch_max': ...}}, or -t batch_max=...)."
            )
        if self.budget < task.num_intervals:
            raise ValueError(
                f"Task {task.name!r}: a budget of {self.budget} samples cannot fill "
                f"{task.num_intervals} intervals; raise epochs or lower num_intervals."
            )

    @property
    def current_lr(self) -> float:
        """Learning rate in the optimizer's first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _apply_learning_rate(self) -> None:
        # Written only when the target changes, so optimizers that adapt their own learning rate
        # (hypergradient descent) keep it between intervals.
        target = self.lr_for(self.batch_size)
        if target != self._applied_lr:
            self._write_lr(target)

    def _write_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._applied_lr = lr

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
        chunk = self.task.eval_batch_size
        count = inputs.shape[0]
        if count <= chunk:
            # One chunk (every built-in task's validation part): the same numbers as the loop
            # below, with half its tensor operations: 0.0 + x is x, stack promotes the loss to
            # float64 exactly, and Python divides doubles as torch does.
            with self.evaluation_mode() as model:
                logits = model(inputs)
                loss = F.cross_entropy(logits, targets, reduction="sum")
                correct_count = (logits.argmax(1) == targets).sum().double()
            loss_sum, correct_sum = torch.stack([loss, correct_count]).tolist()
            return loss_sum / count, correct_sum / count
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.float64)
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
        its own batches (see :mod:`arbiter_env.training.stats.steps`); the probe when that call could
        not gather any (before any training, batch norm or dropout networks, or intervals too
        short for two examples in a step). With ``statistics="probe"``, always the probe.
        """
        if self._last_statistics is not None:
            self._gain_statistics = self._last_statistics
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
        index = index_to_device(
            torch.randperm(n, generator=self._probe_generator)[:size], self.device
        )
        with self.evaluation_mode() as model:
            stats = gradient_statistics(
                model,
                self.data.x_train[index],
                self.data.y_train[index],
                method="auto" if microbatches is None else "microbatch",
                num_microbatches=microbatches,
            )
        self._gain_statistics = stats  # the latest measurement, for lr_scaling="adascale"
        return stats

    # --- helpers --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _forked_global_rng(self, seed: int) -> Iterator[None]:
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(
            devices=devices, device_type=self.device.type if devices else "cuda"
        ):
            # Not torch.manual_seed: it also queues lazy seeding of every accelerator backend and
            # records a stack trace for each, far slower than seeding one generator.
            torch.default_generator.manual_seed(seed)
            if devices:
                torch.cuda.manual_seed(seed)
            yield
