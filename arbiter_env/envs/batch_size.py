"""The batch-size environment."""

from __future__ import annotations

import dataclasses
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from torch.utils.hooks import RemovableHandle

from arbiter_env.checks import check_options
from arbiter_env.config import plain
from arbiter_env.envs.actions import ActionEncoding
from arbiter_env.envs.config import EnvConfig, init_signature, single_task
from arbiter_env.envs.family_episodes import FamilyEpisodes
from arbiter_env.envs.observation import OBSERVATION_HIGH, OBSERVATION_LOW, build_observation
from arbiter_env.envs.render import RENDER_MODES, EpisodeHistory, FrameRenderer, render_ansi
from arbiter_env.envs.rewards import interval_cost, interval_reward, worst_case_cost
from arbiter_env.tasks.families import FamilySplit, TaskFamily, is_family
from arbiter_env.tasks.spec import Task
from arbiter_env.training.stats import GradientStatistics
from arbiter_env.training.trainer import InnerTrainer, IntervalResult

_NAN_STATS = GradientStatistics(
    grad_sq_norm=math.nan,
    trace_covariance=math.nan,
    noise_scale=math.nan,
    half_batch_cosine=math.nan,
    mean_grad_norm=math.nan,
    probe_size=0,
)


@dataclass(frozen=True)
class IntervalPlan:
    """The next interval (:meth:`BatchSizeEnv.plan_interval`): batch size, samples, start time."""

    batch_size: int
    num_samples: int
    started: float


class BatchSizeEnv(gym.Env):
    r"""Train a neural network and choose its batch size as you go.

    ## Description

    An episode is one whole inner training run of a task (data, model, optimizer, sample budget)
    from a freshly seeded initialisation. The budget is counted in training samples (epochs × size
    of the training part), so a larger batch means fewer, cleaner updates for the same data. The
    budget is cut into ``num_intervals`` scheduling intervals of (nearly) equal size; each step
    trains one interval with the batch size the action selects. Interval ``i`` covers samples
    ``round(i·N/K)`` to ``round((i+1)·N/K)``; its last batch is shorter when the batch size does
    not divide the slice, so the budget is consumed exactly.

    ## Action Space

    One geometric ladder of batch sizes from ``batch_min`` to ``batch_max`` (by default one rung
    per doubling: 8, 16, ..., 512), encoded as chosen by ``action_encoding``:

    | encoding       | space               | meaning                                            |
    |----------------|---------------------|----------------------------------------------------|
    | ``discrete``   | ``Discrete(k)``     | index into the ladder                              |
    | ``continuous`` | ``Box(-1, 1, (1,))``| log-uniform onto ``[batch_min, batch_max]``, rounded |
    | ``relative``   | ``Discrete(3)``     | 0 halve, 1 keep, 2 double the current size (clipped) |

    ``env.encode(batch_size)`` and ``env.decode(action)`` translate both ways. An action outside
    the space raises ``ValueError``.

    ## Observation Space

    ``Box(low, high, (14,), float32)``; never NaN or infinite. A non-finite or out-of-range value
    is clipped to its bound and raises entry 13. By default (``gradient_statistics="training"``)
    the gradient statistics come from the interval's own training batches, at almost no cost:
    per-sample gradient norms of every step for ``nn.Linear`` networks, micro-batches of the last
    full batch for other per-example networks (see :mod:`arbiter_env.training.stats` for the
    estimators, their bias and variance). Entries 10 and 11 then refer to a probe of
    ``P = task.probe_size`` examples, derived from |G|² and tr(Σ). The first observation, networks
    with batch norm or dropout, and ``gradient_statistics="probe"`` measure them after each
    interval on a probe batch of ``task.probe_size`` training examples, in evaluation mode:
    exactly, from per-sample gradients, or with the micro-batch estimator when
    ``task.probe_microbatches`` is set (see :mod:`arbiter_env.training.stats`).

    | index | name                   | meaning                                         | range       |
    |-------|------------------------|-------------------------------------------------|-------------|
    | 0     | progress               | fraction of the sample budget consumed          | [0, 1]      |
    | 1     | log2_batch_size        | log2 of the batch size of the last interval     | [0, 20]     |
    | 2     | log10_lr               | log10 of the learning rate of the last interval | [-10, 2]    |
    | 3     | train_loss             | mean training loss over the last interval       | [0, 100]    |
    | 4     | val_loss               | validation loss after the interval              | [0, 100]    |
    | 5     | val_accuracy           | validation accuracy after the interval          | [0, 1]      |
    | 6     | val_log_loss_change    | log val loss now minus before the interval      | [-10, 10]   |
    | 7     | log10_grad_sq_norm     | log10 \|G\|², unbiased squared gradient norm   | [-30, 30]   |
    | 8     | log10_trace_cov        | log10 tr(Σ) of the per-sample gradients         | [-30, 30]   |
    | 9     | log10_noise_scale      | log10 B_simple = tr(Σ)/\|G\|²                  | [-30, 30]   |
    | 10    | half_batch_cosine      | cosine between the two half-probe gradients     | [-1, 1]     |
    | 11    | log10_mean_grad_norm   | log10 ‖ḡ‖ of the probe's mean gradient          | [-30, 30]   |
    | 12    | log2_probe_size        | log2 of the probe size P                        | [0, 20]     |
    | 13    | clipped                | 1 if any entry was non-finite or clipped        | {0, 1}      |

    In the first observation the training loss is the validation loss at initialisation and the
    batch size is ``task.batch_start``. ``info`` holds the raw values, the batch size and learning
    rate used, and samples and updates so far (wall time only with ``record_wall_time=True``); the
    final step adds the test loss and accuracy (the test split is used for nothing else).

    ## Rewards

    By default ``log L_val(before) − log L_val(after)``: the decrease of the log validation loss,
    so the return of an episode is the log of the total improvement. ``RewardConfig`` adds a
    final-accuracy bonus and a cost per interval in inner updates (deterministic) or in wall time
    (measured whether or not ``info`` reports it).

    **Divergence.** An interval diverges when a training loss, parameter or the validation loss is
    non-finite, or when the validation loss exceeds ``min(loss_ratio × L_0, max_loss)`` with
    ``L_0`` the validation loss at ``reset`` (``divergence``; default ``loss_ratio=10``, no
    ``max_loss``). The episode then terminates with ``info["diverged"] = True``, and the interval
    is rewarded so that the episode's return is ``log(L_0 / threshold) − worst-case update cost −
    divergence_penalty``: strictly below the return of any episode that finishes, and the same for
    a NaN as for a finite blow-up (see :mod:`arbiter_env.envs.divergence`; with a wall-time cost, which
    has no bound, or with the rule switched off, the interval is rewarded ``−divergence_penalty``).

    ## Starting State

    A fresh initialisation of the task's network, seeded from ``reset(seed=...)``, with the batch
    size at ``task.batch_start`` and the learning rate at the task's. Initialisation, batch order,
    dropout, probe and validation draws all come from generators the environment seeds, so the
    same seed and actions give a bit-identical trajectory on the CPU.

    ## Episode End

    ``terminated`` is ``True`` when the budget is spent (after ``num_intervals`` steps) or when the
    inner run diverges (``info["diverged"] = True``; see Rewards for the rule). ``truncated`` is
    always ``False``; wrap the environment in ``TimeLimit`` to cut episodes short.

    ## Arguments

    ```python
    gym.make("arbiter_env/BatchSize-v0", task="digits-mlp", action_encoding="discrete")
    BatchSizeEnv(config=EnvConfig(task="digits-mlp", num_intervals=10))
    ```

    The arguments are the fields of :class:`~arbiter_env.envs.config.EnvConfig`, given as keyword
    arguments, as ``config=EnvConfig(...)``, or both (keyword arguments win). An unknown name is an
    error that suggests the closest one.

    * ``task``: a registered task name (``arbiter_env.list_tasks()``) or a :class:`Task`, or a
      task family: a registered family name (``arbiter_env.list_families()``) or a
      :class:`TaskFamily`. A family draws one of its instances (learning rate, momentum, width,
      data, budget) at every ``reset`` with the environment's generator, so the same seed runs the
      same instance; ``reset(options={"family_instance": i})`` runs instance ``i``. ``info``
      names it (``task``, ``family``, ``family_split``, ``family_instance``,
      ``family_settings``). All instances share one batch-size ladder, so the spaces never change.
    * ``family_split``: for a family, ``"train"`` (default) or ``"test"``: which of its two
      disjoint instance sets to draw from (see :mod:`arbiter_env.tasks.families`). Must be left
      ``None`` for a single task.
    * ``task_kwargs``: passed to ``make_task``: builder arguments such as ``data_dir`` and task
      field overrides such as ``epochs`` or ``optimizer={"lr": 0.05}``. For a family, only field
      overrides; they apply to every instance and win over its sampled settings.
    * ``action_encoding``: ``"discrete"`` (default), ``"continuous"`` or ``"relative"``.
    * ``num_intervals``: scheduling intervals per episode (default: the task's, 20 for built-ins).
    * ``reward``: a :class:`~arbiter_env.envs.rewards.RewardConfig` or a dict of its fields.
    * ``divergence``: a :class:`~arbiter_env.envs.divergence.DivergenceRule` or a dict of its fields
      (``loss_ratio``, default 10; ``max_loss``, default none); ``None`` is the default rule,
      ``{"loss_ratio": None}`` leaves only non-finite values as divergence.
    * ``lr_scaling``: ``"none"`` (default), ``"linear"``, ``"sqrt"`` or ``"adascale"`` rescaling
      of the learning rate with the batch size, relative to ``base_batch_size`` (``"adascale"``:
      AdaScale's gain ``(σ² + |G|²)/(σ²/S + |G|²)``, S = B/B₀, σ² = tr(Σ)/B₀, from the latest
      gradient statistics; see ``arbiter_env.training.trainer.adascale_gain``).
    * ``base_batch_size``: the batch size at which the task's learning rate applies (default
      ``task.batch_start``).
    * ``lr_schedule``: a learning-rate schedule on the sample clock in place of the task's
      (``"constant"``, ``"step"``, ``"cosine"``, ``"wsd"``, or a
      :class:`~arbiter_env.training.lr_schedule.LrSchedule` or dict of its fields; ``-e
      lr_schedule=cosine`` or ``-e lr_schedule.decay=0.1`` on the command line), evaluated
      at every inner update and multiplied with ``lr_scaling``'s factor; observation entry 2 then
      holds the rate of the interval's last update (of the first update in the first
      observation). Default ``None``: the task's (``constant``).
    * ``ladder_size``: rungs of the discrete ladder (default: one per doubling).
    * ``record_wall_time``: put the interval's and the episode's wall-clock seconds in ``info``
      (``wall_time``, ``episode_wall_time``). Off by default: wall time is the one
      non-reproducible output, and ``info`` must be identical across runs of a seed (Gymnasium's
      ``check_env`` tests this). The ``wall_time`` reward cost works either way.
    * ``gradient_statistics``: ``"training"`` (default) or ``"probe"``: where the gradient
      statistics come from (see the observation space above).
    * ``render_mode``: ``None``, ``"ansi"`` (``render()`` returns the episode so far as text, one
      line per interval) or ``"rgb_array"`` (an ``H×W×3`` ``uint8`` image of the batch size and
      the validation loss against the samples consumed; what ``RecordVideo`` and SB3's
      ``VecVideoRecorder`` record). Rendering never changes the trajectory.

    ## Version History

    * v0: Initial version.
    """

    # Gymnasium declares `metadata` as a plain class attribute; a ClassVar here would clash.
    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 4}  # noqa: RUF012

    def __init__(
        self,
        task: str | Task | TaskFamily | None = None,
        *,
        config: EnvConfig | None = None,
        **kwargs: Any,
    ) -> None:
        """Builds the environment from ``config`` and keyword arguments (see Arguments above).

        Keyword arguments (and ``task``) override the fields of ``config``; without ``config``
        they override the defaults of :class:`EnvConfig`.
        """
        if config is not None and not isinstance(config, EnvConfig):
            raise TypeError(f"config must be an EnvConfig, got {type(config).__name__}.")
        changes = dict(kwargs) if task is None else {**kwargs, "task": task}
        base = config.env_config() if config is not None else EnvConfig()
        self.config = base.updated(changes) if changes else base
        config = self.config
        self.render_mode = config.render_mode
        self._renderer: FrameRenderer | None = None
        self.reward_config = config.reward
        self.divergence_rule = config.divergence
        self.record_wall_time = config.record_wall_time
        # Task families: the first instance of the split stands in until the first reset (it
        # fixes the spaces, which every instance shares); reset() then draws the real one.
        self.family: TaskFamily | None = None
        self._family_info: dict[str, Any] = {}
        task = self._family_stand_in(config) if is_family(config.task) else single_task(config)
        self._use_trainer(self._new_trainer(task))
        self.action_encoding = ActionEncoding(
            config.action_encoding, task.batch_min, task.batch_max, config.ladder_size
        )
        self.action_space = self.action_encoding.space
        self.observation_space = spaces.Box(OBSERVATION_LOW, OBSERVATION_HIGH, dtype=np.float32)
        self._interval = 0
        self._done = True
        self._info_sources: OrderedDict[int, Callable[[], Mapping[str, Any]]] = OrderedDict()
        self._history = self._new_history()
        self._initial_val_loss = math.nan
        self._divergence_threshold = math.inf
        self._cost_paid = 0.0
        self.last_training_time = math.nan
        """Wall-clock seconds of the last interval's training alone (not its validation or
        statistics): what a throughput model such as the ``goodput`` baseline's needs."""

    def _new_trainer(self, task: Task) -> InnerTrainer:
        return InnerTrainer(
            task,
            lr_scaling=self.config.lr_scaling,
            base_batch_size=self.config.base_batch_size,
            statistics=self.config.gradient_statistics,
        )

    def _use_trainer(self, trainer: InnerTrainer) -> None:
        """Makes ``trainer`` (and its task) the one the next intervals train with."""
        task = trainer.task
        trainer.check_task_fits()
        self.trainer = trainer
        self.task = task
        self.budget = trainer.budget
        # Interval i covers samples [boundaries[i], boundaries[i + 1]).
        self.interval_boundaries = [
            round(i * self.budget / task.num_intervals) for i in range(task.num_intervals + 1)
        ]

    # --- batch sizes ----------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, config: EnvConfig, family_split: FamilySplit | None = None
    ) -> BatchSizeEnv:
        """The environment ``config`` describes (its env fields only, if it extends ``EnvConfig``).

        Args:
            config: The environment's arguments.
            family_split: For a task family, the split to draw instances from, in place of
                ``config.family_split`` (an RL agent trains on ``"train"`` and is evaluated on
                ``"test"``); ignored for a single task.
        """
        config = config.env_config()
        if family_split is not None and is_family(config.task):
            config = dataclasses.replace(config, family_split=family_split)
        return cls(config=config)

    @property
    def batch_size(self) -> int:
        """Batch size of the last interval (``task.batch_start`` before the first step)."""
        return self.trainer.batch_size

    @property
    def ladder(self) -> np.ndarray:
        """The batch sizes of the discrete ladder."""
        return self.action_encoding.ladder

    def decode(self, action: Any) -> int:
        """Batch size that ``action`` selects from the current state."""
        encoding = self.action_encoding
        if (
            (type(action) is int or isinstance(action, np.integer))
            and encoding.name == "discrete"
            and 0 <= action < len(self.ladder)
        ):
            # A plain index (what agents and the baselines pass, or an element of SB3's action
            # array): the ladder entry, without the space's checks, which cost as much as a
            # small tensor operation.
            return int(self.ladder[action])
        return encoding.decode(action, self.batch_size)

    def encode(self, batch_size: int) -> Any:
        """Action that moves the batch size as close to ``batch_size`` as one step allows."""
        return self.action_encoding.encode(batch_size, self.batch_size)

    def add_info_source(self, source: Callable[[], Mapping[str, Any]]) -> RemovableHandle:
        """Merges ``source()`` into the ``info`` of every step; ``handle.remove()`` detaches it.

        Part of the hyper-learning interface: an agent that learns inside the interval (Arbiter)
        reports what it did there, so that every logger of the env's ``info`` records it.
        """
        handle = RemovableHandle(self._info_sources)
        self._info_sources[handle.id] = source
        return handle

    def describe(self) -> dict[str, Any]:
        """What this environment runs, as plain data (for ``config.yaml`` and ``wandb.config``).

        ``task`` holds every field of the resolved task (factories by their qualified names);
        the rest are the environment's arguments, resolved (the ladder, the budget in samples).
        """
        described: dict[str, Any] = {
            "task": plain(self.task),
            "action_encoding": self.action_encoding.name,
            "ladder": [int(b) for b in self.ladder],
            "num_intervals": self.task.num_intervals,
            "budget_samples": self.budget,
            "reward": plain(self.reward_config),
            "lr_scaling": self.trainer.lr_scaling,
            "base_batch_size": self.trainer.base_batch_size,
            "record_wall_time": self.record_wall_time,
        }
        if self.family is not None:
            described["family"] = {"name": self.family.name, "split": self.family_split}
        return described

    def set_learning_rate(self, lr: float) -> None:
        """Sets the base learning rate for the following intervals (see ``InnerTrainer.set_base_lr``)."""
        self.trainer.set_base_lr(lr)

    # --- gymnasium API --------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts a new inner training run; ``seed`` reseeds everything the episode uses."""
        check_options(options)
        super().reset(seed=seed)
        if self.family is not None:
            self._switch_family_instance(options)
        episode_seed = int(self.np_random.integers(2**63 - 1))
        self.trainer.reset(episode_seed)
        self._interval = 0
        self._done = False
        self._episode_start = time.perf_counter()
        val_loss, val_accuracy = self.trainer.evaluate("validation")
        self._val_loss = val_loss
        self._initial_val_loss = val_loss
        self._divergence_threshold = self.divergence_rule.threshold(val_loss)
        self._cost_paid = 0.0
        stats = self.trainer.gradient_statistics()
        observation = build_observation(
            progress=0.0,
            batch_size=self.trainer.batch_size,
            lr=self.trainer.lr_for(self.trainer.batch_size),
            train_loss=val_loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            val_log_loss_change=0.0,
            stats=stats,
        )
        info = self._info(
            train_loss=math.nan,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            stats=stats,
            interval_updates=0,
            interval_wall_time=0.0,
            diverged=False,
        )
        self._history = self._new_history()
        self._history.add(info)
        return observation, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Trains one interval with the batch size ``action`` selects (see the class docstring).

        Its phases in sequence; the population batches the middle one over its members.
        """
        plan = self.plan_interval(action)
        return self.finish_interval(plan, self.train_interval(plan))

    def plan_interval(self, action: Any) -> IntervalPlan:
        """Phase 1 of :meth:`step`: decodes ``action`` and sets the trainer up for the interval.

        Raises ``RuntimeError`` when the episode has ended.
        """
        if self._done:
            raise RuntimeError("The episode has ended; call reset() before step().")
        batch_size = self.decode(action)
        start, stop = self.interval_boundaries[self._interval : self._interval + 2]
        self.trainer.prepare_interval(batch_size)
        return IntervalPlan(batch_size, stop - start, time.perf_counter())

    def train_interval(self, plan: IntervalPlan) -> IntervalResult:
        """Phase 2 of :meth:`step`: trains the planned interval (the inner updates)."""
        started = time.perf_counter()
        result = self.trainer.train(plan.batch_size, plan.num_samples)
        self.last_training_time = time.perf_counter() - started
        return result

    def finish_interval(
        self,
        plan: IntervalPlan,
        result: IntervalResult,
        validation: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Phase 3 of :meth:`step`: validation, statistics, divergence, reward, observation.

        ``result`` comes from :meth:`train_interval`, or from training done elsewhere and booked
        with ``trainer.record_interval``; ``validation`` is (loss, accuracy) if measured already.
        """
        self._interval += 1
        diverged, val_loss, val_accuracy, stats = self._measure(result.diverged, validation)
        wall_time = time.perf_counter() - plan.started
        terminated = diverged or self._interval == self.task.num_intervals
        reward = self._reward(
            val_loss, val_accuracy, diverged, terminated, result.updates, wall_time
        )
        observation = build_observation(
            progress=self.trainer.samples_seen / self.budget,
            batch_size=plan.batch_size,
            lr=self.trainer.interval_lr(plan.batch_size),
            train_loss=result.train_loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            val_log_loss_change=_log_ratio(val_loss, self._val_loss),
            stats=stats,
        )
        info = self._info(
            train_loss=result.train_loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            stats=stats,
            interval_updates=result.updates,
            interval_wall_time=wall_time,
            diverged=diverged,
        )
        for source in list(self._info_sources.values()):
            info.update(source())
        if terminated:
            self._done = True
            if not diverged:
                info["test_loss"], info["test_accuracy"] = self.trainer.evaluate("test")
        self._val_loss = val_loss
        self._history.add(info, reward)
        return observation, reward, terminated, False, info

    def _measure(
        self, diverged: bool, validation: tuple[float, float] | None
    ) -> tuple[bool, float, float, GradientStatistics]:
        """After an interval: ``(diverged, val_loss, val_accuracy, statistics)``."""
        if diverged:
            return True, math.nan, math.nan, _NAN_STATS
        val_loss, val_accuracy = validation or self.trainer.evaluate("validation")
        if self.divergence_rule.exceeded(val_loss, self._initial_val_loss):
            return True, val_loss, val_accuracy, _NAN_STATS
        return False, val_loss, val_accuracy, self.trainer.interval_statistics()

    def _reward(
        self,
        val_loss: float,
        val_accuracy: float,
        diverged: bool,
        terminated: bool,
        updates: int,
        wall_time: float,
    ) -> float:
        """The interval's reward; also books the interval's cost."""
        reward = interval_reward(
            self.reward_config,
            previous_val_loss=self._val_loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            diverged=diverged,
            terminal=terminated,
            updates=updates,
            budget=self.budget,
            wall_time=wall_time,
            divergence_threshold=self._divergence_threshold,
            cost_to_charge_on_divergence=self._worst_case_cost() - self._cost_paid,
        )
        self._cost_paid += interval_cost(
            self.reward_config, updates=updates, budget=self.budget, wall_time=wall_time
        )
        return float(reward)

    def _new_history(self) -> EpisodeHistory:
        return EpisodeHistory(
            budget=self.budget,
            num_intervals=self.task.num_intervals,
            task=self.task.name,
            batch_range=(int(self.ladder[0]), int(self.ladder[-1])),
        )

    def render(self) -> str | np.ndarray | None:
        """The episode so far, as ``render_mode`` asks (see the class docstring)."""
        if self.render_mode == "ansi":
            return render_ansi(self._history)
        if self.render_mode == "rgb_array":
            if self._renderer is None:
                self._renderer = FrameRenderer()
            return self._renderer.render(self._history)
        return None

    def close(self) -> None:
        """Releases the renderer's resources."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _worst_case_cost(self) -> float:
        """The ``"updates"`` cost of the whole episode at ``batch_min`` (its largest possible)."""
        return worst_case_cost(self.reward_config, self.interval_boundaries, self.task.batch_min)

    def _info(
        self,
        *,
        train_loss: float,
        val_loss: float,
        val_accuracy: float,
        stats: GradientStatistics,
        interval_updates: int,
        interval_wall_time: float,
        diverged: bool,
    ) -> dict[str, Any]:
        info = {
            "interval": self._interval,
            "batch_size": self.trainer.batch_size,
            "lr": self.trainer.current_lr,
            "samples": self.trainer.samples_seen,
            "updates": self.trainer.updates,
            "interval_updates": interval_updates,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            **stats.as_dict(),
            "diverged": diverged,
            **self._family_info,
        }
        if self.record_wall_time:
            info["wall_time"] = interval_wall_time
            info["episode_wall_time"] = time.perf_counter() - self._episode_start
        return info

    # --- task families --------------------------------------------------------------------------

    def _family_stand_in(self, config: EnvConfig) -> Task:
        """Sets up the family of ``config.task``; returns its first instance's task."""
        self.family_episodes = FamilyEpisodes(config)
        self.family = self.family_episodes.family
        self.family_split: FamilySplit = self.family_episodes.split
        self.family_instances = self.family_episodes.instances
        self.family_instance = self.family_instances[0]
        return self.family_episodes.task(self.family_instance)

    def _switch_family_instance(self, options: dict[str, Any] | None) -> None:
        instance = self.family_episodes.choose(options, self.np_random)
        trainers = self.family_episodes.trainers
        if instance.index not in trainers:
            # The first instance drawn may be the stand-in, whose trainer __init__ built.
            stand_in = not trainers and instance.index == self.family_instance.index
            trainers[instance.index] = (
                self.trainer if stand_in else self._new_trainer(self.family_episodes.task(instance))
            )
        self.family_instance = instance
        self._use_trainer(trainers[instance.index])
        self._family_info = self.family_episodes.info(instance)


# help() and inspect.signature list every argument with its default, written from EnvConfig.
BatchSizeEnv.__init__.__signature__ = init_signature()  # type: ignore[attr-defined]


def _log_ratio(new: float, old: float) -> float:
    if not (math.isfinite(new) and math.isfinite(old)) or new <= 0 or old <= 0:
        return math.nan
    return math.log(new) - math.log(old)
