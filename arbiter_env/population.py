"""A population of inner networks trained in lockstep: one batched step for N environments.

On the small networks of the built-in tasks a tensor operation's fixed overhead outweighs its
arithmetic, so training N networks with batched operations costs little more than training one
(``benchmarks/RESULTS.md``, "the population env", measures how much). :class:`Population` holds N copies of :class:`~arbiter_env.env.BatchSizeEnv` (one
task, or one task family; each member its own seed, batch size, optimizer state, observation,
reward and termination) whose inner training runs batched; as an SB3 ``VecEnv`` it is
:class:`arbiter_env.agents.population_vec_env.PopulationEnv` (there, as stable-baselines3 is
needed only by the RL agents)::

    from stable_baselines3 import PPO
    from arbiter_env.agents.population_vec_env import make_population_env

    PPO("MlpPolicy", make_population_env("digits-mlp", n_envs=16)).learn(10_000)

``gymnasium.make_vec("arbiter_env/BatchSize-v0", num_envs=16, vectorization_mode=
"vector_entry_point")`` gives the same population as a ``gymnasium.vector.VectorEnv``
(:class:`PopulationVectorEnv`).

**How.** Each member is a real ``BatchSizeEnv`` with its own :class:`~arbiter_env.training.trainer.
InnerTrainer` (model, ``torch.optim.SGD``, sampler, generators), reset exactly as a single env is.
For an interval, members are grouped by architecture and batch size; a group's parameters and
momentum buffers are stacked (as ``torch.func.stack_module_state`` does), trained for the
interval's steps with one batched forward, backward and SGD update per step
(:mod:`arbiter_env.population_group`, :mod:`arbiter_env.batched`), and written back into the
members' own modules and optimizer states. Each member's ``BatchSizeEnv.step`` then runs as
usual with the interval's training already done, so validation, statistics, observation,
reward, termination and ``info`` come from the same code as a single env. Batch sizes are
grouped, not padded: padding every member to the largest size in the population would multiply
the arithmetic and change the members' trajectories.

**Task families.** With a family (``Population("digits-mlp-family", 16, family_split="test")``)
every member is a ``BatchSizeEnv`` of the family and draws its instance at each reset with its
own generator, exactly as a single env does (``options={"family_instance": i}`` picks one).
Members on instances of the same architecture (the same MLP width) that take the same batch
size are trained in one group, whatever their learning rate, momentum or budget: members of
shorter intervals leave the stack's tail when their samples are done, and the SGD update runs
once per setting on consecutive slices. Instances that share a data set share one copy of it.

**Padding hidden widths (``group_by``).** Under a policy's early, nearly uniform actions the 16
members of ``digits-mlp-family`` (widths 32, 128, 512) spread over about 11 (width, size)
groups an interval, and a group's step costs about the same fixed overhead whatever it trains.
``group_by="padded"`` also trains MLPs that differ only in hidden widths (same depth, input and
output) in one stack, zero-padded to the group's largest width
(:func:`~arbiter_env.batched.stack_padded`), where a cost model says it pays
(:func:`~arbiter_env.population_group.merge_padded`: small batch sizes merge, large ones keep
their widths, since padding a width-32 member to 512 multiplies its arithmetic by 16). With
ReLU, a zero hidden unit has zero activations and gets zero gradients, so SGD (momentum, weight
decay, Nesterov) keeps it exactly zero, and it adds exact zeros to the losses and to the
gradient statistics (per-sample norms, |G|², tr(Σ)); the real parameters follow the same
arithmetic, but a product over a padded inner dimension is blocked differently and may round
differently in the last bits, so members agree with single envs to 1e-5 relative on the first
intervals, not bit for bit (``tests/test_population.py``), and drift apart further as chaotic
training goes on. ``group_by="architecture"`` keeps one group per architecture and bit-identity.
Populations of one architecture (any single task) are the same under both. The default is
``"architecture"``, chosen by measurement (:attr:`Population.default_group_by`).

Two batched paths compute the step's loss and gradients (:class:`~arbiter_env.batched.
Architecture`): ``"mlp"`` for the built-in MLP (a hand-written backward pass built of autograd's
own kernels) and ``"func"`` for any other deterministic per-example network (``torch.func``).
``path="auto"`` takes ``"mlp"`` where it applies. Networks with batch norm, dropout or modules
of unknown behaviour, and optimizers other than SGD (with momentum, Nesterov, weight decay) are
not supported and raise an error that says so.

**Memory.** The stacked tensors (a few hundred KiB to a few MiB) are allocated and freed at
every step; by default the population raises glibc's ``malloc`` thresholds for the process so
that they come back from the heap instead of fresh pages (:mod:`arbiter_env.allocator`;
``tune_allocator=False`` leaves the allocator alone).

**Equivalence with the single env.** Everything but the training arithmetic is the single env's
own code, on the same seeds: the same instance, the same examples in the same order, the same
initialisation, the same statistics estimator on the same steps. On the CPU the ``"mlp"`` path
gives every member the single env's observations, rewards and parameters bit for bit (with
``group_by="architecture"``, or where no widths are padded). The
``"func"`` path batches small matrix products, which ``bmm`` rounds differently from ``mm``, and
sums the per-sample statistics in another order; its observations agree with the single env's to
1e-5 relative on the first intervals (``tests/test_population.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

from arbiter_env.allocator import keep_freed_memory
from arbiter_env.batched import Architecture, SgdSettings, mlp_evaluate
from arbiter_env.env import BatchSizeEnv
from arbiter_env.population_group import MemberGroup, MemberResults, merge_padded
from arbiter_env.tasks.spec import Task
from arbiter_env.training.data import DataSplits
from arbiter_env.training.network import mode_independent
from arbiter_env.training.sampler import EpochSampler
from arbiter_env.training.stats import GradientStatistics
from arbiter_env.training.step_stats import DEFAULT_MICROBATCHES
from arbiter_env.training.trainer import InnerTrainer, IntervalResult

PopulationPath = Literal["auto", "mlp", "func"]
GroupBy = Literal["architecture", "padded"]


class Population:
    """N ``BatchSizeEnv`` members of one task or task family whose inner training runs batched.

    Args:
        task: A task name, a :class:`~arbiter_env.tasks.Task`, or a task family (its name or
            :class:`~arbiter_env.tasks.families.TaskFamily`; ``family_split`` picks the split).
        n_envs: Number of members N.
        path: ``"auto"``, ``"mlp"`` or ``"func"`` (see the module docstring).
        group_by: ``"architecture"`` (members of one architecture train together: bit for bit
            the single env's numbers) or ``"padded"`` (MLPs of one family that differ only in
            hidden width also train together, zero-padded to the group's largest width: the
            same numbers up to float rounding). ``None`` takes :attr:`default_group_by`.
        tune_allocator: Keep freed memory in the process
            (:func:`arbiter_env.allocator.keep_freed_memory`: glibc's ``mallopt``, process-wide),
            so that the stacked tensors do not take page faults at every step.
        **env_kwargs: Passed to every member's ``BatchSizeEnv`` (``task_kwargs``,
            ``family_split``, ``action_encoding``, ``num_intervals``, ``reward``, ...).
    """

    default_group_by: GroupBy = "architecture"
    """The grouping of populations built without ``group_by`` (see the module docstring).

    ``"architecture"``, chosen by measurement: on ``digits-mlp-family`` (N=16, random actions,
    one thread, the shared 2-core CPU) ``"padded"`` cut the groups per interval from about 11
    to 9, but its speed-up stayed within the machine's noise: +15% (median of 5 interleaved
    rounds of 20 vector steps, load ~3.5), +1% (``benchmarks/population_throughput.py``, 4
    rounds), -9% (8 rounds at load ~1), and +12% for PPO alone (4,096 steps, two runs each),
    while the exact grouping keeps the single env's numbers bit for bit."""

    def __init__(
        self,
        task: Any = "digits-mlp",
        n_envs: int = 16,
        *,
        path: PopulationPath = "auto",
        group_by: GroupBy | None = None,
        tune_allocator: bool = True,
        **env_kwargs: Any,
    ):
        if not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}.")
        if path not in ("auto", "mlp", "func"):
            raise ValueError(f"Unknown path {path!r}; use 'auto', 'mlp' or 'func'.")
        group_by = self.default_group_by if group_by is None else group_by
        if group_by not in ("architecture", "padded"):
            raise ValueError(f"Unknown group_by {group_by!r}; use 'architecture' or 'padded'.")
        self.group_by: GroupBy = group_by
        if tune_allocator:
            keep_freed_memory()
        first = BatchSizeEnv(task, **env_kwargs)
        self.family = first.family
        if self.family is None:  # the task is resolved once; the members take it as it is
            others = [
                BatchSizeEnv(first.task, **_without(env_kwargs, "task_kwargs"))
                for _ in range(n_envs - 1)
            ]
        else:  # each member draws its own instances
            others = [BatchSizeEnv(task, **env_kwargs) for _ in range(n_envs - 1)]
        self.envs = [first, *others]
        self.n_envs = n_envs
        self.task = first.task
        self._path_request: PopulationPath = path
        self._architectures: dict[int, tuple[Task, Architecture]] = {}
        self._shared_data: dict[tuple, DataSplits] = {}
        self._check_optimizer(first.task)
        self.path = self._architecture(first.trainer).path
        for env in self.envs:
            self._share_data(env.trainer)  # one copy of the data for all members

    # --- members --------------------------------------------------------------------------------

    def reset_member(
        self, index: int, seed: int | None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Resets member ``index`` as ``BatchSizeEnv.reset(seed=seed, options=options)`` does."""
        env = self.envs[index]
        observation, info = env.reset(seed=seed, options=options)
        trainer = env.trainer
        if not mode_independent(trainer.model):
            raise ValueError(
                f"Task {trainer.task.name!r}: the population env supports networks of known "
                "deterministic, per-example layers only (no batch norm, dropout or custom "
                "modules); use single envs for this one."
            )
        self._check_optimizer(trainer.task)
        self._architecture(trainer)  # a network path='mlp' cannot train fails here
        self._share_data(trainer)
        return observation, info

    def _check_optimizer(self, task: Task) -> None:
        optimizer = task.optimizer
        if optimizer.name != "sgd" or optimizer.factory is not None:
            raise ValueError(
                f"The population env trains with batched SGD; task {task.name!r} uses "
                f"{optimizer.name!r}. Use single envs (DummyVecEnv) for other optimizers."
            )
        if not task.lr_schedule.is_constant:
            # Its batched step applies one rate per member and interval, not one per update.
            raise ValueError(
                f"The population env trains at one learning rate per interval; task {task.name!r} "
                f"has lr_schedule {task.lr_schedule.name!r}. Use single envs (DummyVecEnv) for "
                "scheduled learning rates."
            )

    def _architecture(self, trainer: InnerTrainer) -> Architecture:
        """The batched path and structure of ``trainer``'s task, built once per task."""
        task = trainer.task
        known = self._architectures.get(id(task))
        if known is None or known[0] is not task:
            with torch.random.fork_rng():  # build a network without touching the global RNG
                model = task.model(trainer.data.input_shape, trainer.data.num_classes)
            units = task.probe_microbatches or DEFAULT_MICROBATCHES
            known = (task, Architecture.of(model, self._path_request, units))
            self._architectures[id(task)] = known  # the task is kept, so its id stays unique
        return known[1]

    def _share_data(self, trainer: InnerTrainer) -> None:
        """Points ``trainer`` at the population's copy of its data (built from the same split)."""
        task = trainer.task
        key = (task.data, task.split_seed, task.validation_fraction, str(task.device))
        shared = self._shared_data.setdefault(key, trainer.data)
        if trainer.data is shared:
            return
        trainer.data = shared
        sampler = getattr(trainer, "sampler", None)
        if sampler is not None:  # just reset, nothing drawn yet: the same stream on the copy
            trainer.sampler = EpochSampler(shared.x_train, shared.y_train, sampler._generator)

    # --- one interval for every member ----------------------------------------------------------

    def step(self, actions: Sequence[Any]) -> list[tuple[np.ndarray, float, bool, bool, dict]]:
        """Steps every member with its action; returns each member's ``env.step`` result."""
        if len(actions) != self.n_envs:
            raise ValueError(f"Expected {self.n_envs} actions, got {len(actions)}.")
        results: MemberResults = {}
        for group in self._plan(actions):
            results |= group.train()
        validation = self._validation()
        outcomes = []
        for index, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            result, statistics = results[index]
            with _trained(env.trainer, result, statistics, validation.get(index)):
                outcomes.append(env.step(action))
        return outcomes

    def _plan(self, actions: Sequence[Any]) -> list[MemberGroup]:
        """Groups the members that can be trained together this interval.

        A group shares the architecture and the batch size: one batched forward and backward
        pass per step. Its members may differ in the interval's length and in learning rate and
        the other SGD settings (instances of a family); see :mod:`.population_group`.
        """
        groups: dict[tuple, MemberGroup] = {}
        for index, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            if env._done:
                raise RuntimeError(f"Member {index}'s episode has ended; reset it first.")
            batch_size = env.decode(action)
            start, stop = env.interval_boundaries[env._interval : env._interval + 2]
            trainer = env.trainer
            trainer.batch_size = batch_size
            trainer._apply_learning_rate()
            param_group = trainer.optimizer.param_groups[0]
            settings = SgdSettings(
                lr=trainer.current_lr,
                momentum=param_group["momentum"],
                dampening=param_group["dampening"],
                weight_decay=param_group["weight_decay"],
                nesterov=param_group["nesterov"],
            )
            architecture = self._architecture(trainer)
            key = (architecture.key, batch_size, trainer.task.probe_size)
            group = groups.setdefault(key, MemberGroup(architecture, batch_size))
            group.add(index, trainer, stop - start, settings)
        planned = list(groups.values())
        if self.group_by == "padded":
            planned = merge_padded(planned)
        for group in planned:
            group.order()
        return planned

    def _validation(self) -> dict[int, tuple[float, float]]:
        """Validation loss and accuracy of the "mlp" members, in one batched pass per group."""
        groups: dict[tuple, list[int]] = {}
        for index, env in enumerate(self.envs):
            architecture = self._architecture(env.trainer)
            if architecture.path == "mlp":
                # One pass over the validation set per interval: not padded (no steps to save).
                key = (architecture.key, id(env.trainer.data), env.trainer.task.eval_batch_size)
                groups.setdefault(key, []).append(index)
        validation: dict[int, tuple[float, float]] = {}
        with torch.no_grad():
            for (_, _, chunk_size), members in groups.items():
                trainers = [self.envs[i].trainer for i in members]
                params = [
                    torch.stack(column)
                    for column in zip(*(t._trainable for t in trainers), strict=True)
                ]
                data = trainers[0].data
                pairs = mlp_evaluate(params, data.x_val, data.y_val, chunk_size)
                validation.update(zip(members, pairs, strict=True))
        return validation


@contextmanager
def _trained(
    trainer: InnerTrainer,
    result: IntervalResult,
    statistics: GradientStatistics | None,
    validation: tuple[float, float] | None,
) -> Iterator[None]:
    """Lets ``BatchSizeEnv.step`` find the interval trained (and validated) already.

    ``train`` and ``evaluate`` are replaced on the instance for the duration of the step only.
    """
    trainer._last_statistics = statistics
    attributes = vars(trainer)
    attributes["train"] = _replay(trainer, result)
    if validation is not None:
        attributes["evaluate"] = _evaluated(trainer, validation)
    try:
        yield
    finally:
        attributes.pop("train")
        attributes.pop("evaluate", None)


def _replay(trainer: InnerTrainer, result: IntervalResult) -> Callable[[int, int], IntervalResult]:
    def train(batch_size: int, num_samples: int) -> IntervalResult:
        assert batch_size == trainer.batch_size and num_samples == result.samples
        return result

    return train


def _evaluated(
    trainer: InnerTrainer, validation: tuple[float, float]
) -> Callable[..., tuple[float, float]]:
    evaluate = trainer.evaluate

    def replay(split: Literal["validation", "test", "train"] = "validation") -> tuple[float, float]:
        return validation if split == "validation" else evaluate(split)

    return replay


def _without(kwargs: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k != key}


# --- gymnasium.vector ---------------------------------------------------------------------------


class PopulationVectorEnv(gym.vector.VectorEnv):
    """The population as a ``gymnasium.vector.VectorEnv`` (autoreset on the next step).

    ``gymnasium.make_vec("arbiter_env/BatchSize-v0", num_envs=N,
    vectorization_mode="vector_entry_point", task=...)`` builds one. ``reset(seed=s)`` seeds
    member i with ``s + i``. ``infos`` is a dict of arrays with ``_key`` masks, as Gymnasium's
    own vector envs return it.
    """

    def __init__(self, num_envs: int = 16, task: Any = "digits-mlp", **kwargs: Any):
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}
        self.population = Population(task, num_envs, **kwargs)
        first = self.population.envs[0]
        self.num_envs = num_envs
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(first.observation_space, num_envs)
        self.action_space = batch_space(first.action_space, num_envs)
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self._observations = np.zeros(
            (num_envs, *(first.observation_space.shape or ())), np.float32
        )

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Resets every member; ``seed=s`` seeds member i with ``s + i``."""
        seeds = (
            [None if seed is None else seed + i for i in range(self.num_envs)]
            if seed is None or isinstance(seed, int)
            else list(seed)
        )
        infos: dict[str, Any] = {}
        for index, member_seed in enumerate(seeds):
            observation, info = self.population.reset_member(index, member_seed, options)
            self._observations[index] = observation
            infos = self._add_info(infos, info, index)
        self._needs_reset[:] = False
        return self._observations.copy(), infos

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Steps every member; members whose episode ended last step are reset instead."""
        actions = list(actions)
        rewards = np.zeros(self.num_envs)
        terminations = np.zeros(self.num_envs, dtype=bool)
        truncations = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        stepping = [i for i in range(self.num_envs) if not self._needs_reset[i]]
        for index in np.flatnonzero(self._needs_reset):
            observation, info = self.population.reset_member(int(index), None)
            self._observations[index] = observation
            infos = self._add_info(infos, info, int(index))
        if stepping:
            # Members being reset this step are stepped nowhere: run the rest as a population.
            outcomes = _step_subset(self.population, stepping, actions)
            for index, (observation, reward, terminated, truncated, info) in outcomes:
                self._observations[index] = observation
                rewards[index], terminations[index], truncations[index] = (
                    reward,
                    terminated,
                    truncated,
                )
                infos = self._add_info(infos, info, index)
        self._needs_reset = terminations | truncations
        return self._observations.copy(), rewards, terminations, truncations, infos


def _step_subset(population: Population, indices: list[int], actions: list[Any]):
    if len(indices) == population.n_envs:
        return list(enumerate(population.step(actions)))
    full = population.n_envs
    envs = population.envs
    try:
        population.envs = [envs[i] for i in indices]
        population.n_envs = len(indices)
        outcomes = population.step([actions[i] for i in indices])
    finally:
        population.envs, population.n_envs = envs, full
    return list(zip(indices, outcomes, strict=True))


def __getattr__(name: str) -> Any:
    # The SB3 VecEnv adapter moved to the agents (stable-baselines3 is needed only there); old
    # imports from this module still find it, importing stable-baselines3 only then.
    if name in ("PopulationEnv", "make_population_env"):
        from arbiter_env.agents import population_vec_env

        return getattr(population_vec_env, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
