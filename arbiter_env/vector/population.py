"""A population of inner networks trained in lockstep: one batched step for N environments.

On the small networks of the built-in tasks a tensor operation's fixed overhead outweighs its
arithmetic, so training N networks with batched operations costs little more than training one
(``benchmarks/population_throughput.py`` measures how much). :class:`Population` holds N
:class:`~arbiter_env.envs.batch_size.BatchSizeEnv` members (one task, or one task family; each member its
own seed, batch size, optimizer state, observation, reward and termination); as an SB3 ``VecEnv``
it is :class:`arbiter_env.agents.population_vec_env.PopulationEnv` (there, as stable-baselines3
is needed only by the RL agents)::

    from stable_baselines3 import PPO
    from arbiter_env.agents.population_vec_env import make_population_env

    PPO("MlpPolicy", make_population_env("digits-mlp", n_envs=16)).learn(10_000)

``gymnasium.make_vec("arbiter_env/BatchSize-v0", num_envs=16, vectorization_mode=
"vector_entry_point")`` gives the same population as a ``gymnasium.vector.VectorEnv``
(:class:`PopulationVectorEnv`).

**How.** A population step is the single env's step, phase by phase, for every member:
``BatchSizeEnv.plan_interval``, then the training, then ``BatchSizeEnv.finish_interval``. Only
the training is batched: members whose network is the built-in ReLU MLP and whose optimizer is
``torch.optim.SGD`` (momentum, Nesterov, weight decay) are grouped by architecture and batch
size; a group's parameters and momentum buffers are stacked, trained for the interval with one
batched forward, backward and SGD update per step (:mod:`arbiter_env.vector.groups`,
:mod:`arbiter_env.vector.batched`), written back into the members' own modules and optimizer states,
and booked on their trainers (``InnerTrainer.record_interval``). Their validation loss is
measured batched too. Every other member (other networks or optimizers) trains its interval
with ``BatchSizeEnv.train_interval``, one after the other.

**Task families.** With a family (``Population("digits-mlp-family", 16, family_split="test")``)
every member draws its instance at each reset with its own generator, exactly as a single env
does (``options={"family_instance": i}`` picks one). Members on instances of the same
architecture that take the same batch size are trained in one group, whatever their learning
rate, momentum or budget. Instances that share a data set share one copy of it.

**Memory.** The stacked tensors are allocated and freed at every step; by default the
population raises glibc's ``malloc`` thresholds for the process so that they come back from the
heap instead of fresh pages (:mod:`arbiter_env.vector.allocator`; ``tune_allocator=False`` leaves the
allocator alone).

**Equivalence with the single env.** Everything but the batched training and validation is the
single env's own code, on the same seeds: the same instance, the same examples in the same
order, the same initialisation, the same statistics estimator on the same steps. Members
stepped one by one are single envs. On the CPU, batched members get the single env's
parameters, observations, rewards and ``info`` bit for bit; ``tests/vector/test_population.py`` checks
this over whole episodes. On CUDA, cuBLAS may round batched and single products differently, and
observations agree to 1e-3 (``tests/test_cuda.py``).
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

from arbiter_env.checks import check_int, check_options
from arbiter_env.envs.batch_size import BatchSizeEnv, IntervalPlan
from arbiter_env.tasks.spec import Task
from arbiter_env.training.data import DataSplits
from arbiter_env.training.network import relu_mlp_layers
from arbiter_env.training.trainer import InnerTrainer, IntervalResult
from arbiter_env.vector.allocator import keep_freed_memory
from arbiter_env.vector.batched import SgdSettings, mlp_evaluate
from arbiter_env.vector.groups import MemberGroup

StepResult = tuple[np.ndarray, float, bool, bool, dict[str, Any]]


class Population:
    """N ``BatchSizeEnv`` members of one task or task family whose inner training runs batched.

    Args:
        task: A task name, a :class:`~arbiter_env.tasks.Task`, or a task family (its name or
            :class:`~arbiter_env.tasks.families.TaskFamily`; ``family_split`` picks the split).
        n_envs: Number of members N, a positive integer.
        tune_allocator: Keep freed memory in the process
            (:func:`arbiter_env.vector.allocator.keep_freed_memory`: glibc's ``mallopt``, process-wide),
            so that the stacked tensors do not take page faults at every step.
        **env_kwargs: Passed to every member's ``BatchSizeEnv`` (``task_kwargs``,
            ``family_split``, ``action_encoding``, ``num_intervals``, ``reward``, ...).
    """

    def __init__(
        self,
        task: Any = "digits-mlp",
        n_envs: int = 16,
        *,
        tune_allocator: bool = True,
        **env_kwargs: Any,
    ):
        n_envs = check_int("n_envs", n_envs, minimum=1)
        if tune_allocator:
            keep_freed_memory()
        first = BatchSizeEnv(task, **env_kwargs)
        self.family = first.family
        if self.family is None:  # the task is resolved once; the members take it as it is
            others = [
                BatchSizeEnv(
                    first.task, **{k: v for k, v in env_kwargs.items() if k != "task_kwargs"}
                )
                for _ in range(n_envs - 1)
            ]
        else:  # each member draws its own instances
            others = [BatchSizeEnv(task, **env_kwargs) for _ in range(n_envs - 1)]
        self.envs = [first, *others]
        self.n_envs = n_envs
        self.task = first.task
        self._shapes: dict[int, tuple[Task, tuple | None]] = {}
        self._shared_data: dict[tuple, DataSplits] = {}

    @property
    def batched(self) -> bool:
        """Whether the first member's task trains batched (else its members step one by one)."""
        return self._batched_shapes(self.envs[0].trainer) is not None

    # --- members --------------------------------------------------------------------------------

    def reset_member(
        self, index: int, seed: int | None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Resets member ``index`` as ``BatchSizeEnv.reset(seed=seed, options=options)`` does."""
        env = self.envs[index]
        observation, info = env.reset(seed=seed, options=options)
        trainer = env.trainer
        task = trainer.task
        key = (task.data, task.split_seed, task.validation_fraction, str(task.device))
        shared = self._shared_data.setdefault(key, trainer.data)
        if trainer.data is not shared:  # one copy of the data for all members
            trainer.share_data(shared)
        return observation, info

    def _batched_shapes(self, trainer: InnerTrainer) -> tuple | None:
        """The parameter shapes of a task the batched path trains; ``None`` for other tasks."""
        task = trainer.task
        known = self._shapes.get(id(task))
        if known is None or known[0] is not task:
            with torch.random.fork_rng():  # build a network without touching the global RNG
                model = task.model(trainer.data.input_shape, trainer.data.num_classes)
            optimizer = task.optimizer
            batched = (
                optimizer.name == "sgd"
                and optimizer.factory is None
                # The batched step applies one rate per member and interval, not one per update.
                and task.lr_schedule.is_constant
                and relu_mlp_layers(model) is not None
            )
            shapes = tuple(tuple(p.shape) for p in model.parameters())
            known = (task, shapes if batched else None)
            self._shapes[id(task)] = known  # the task is kept, so its id stays unique
        return known[1]

    # --- one interval for every member ----------------------------------------------------------

    def step(self, actions: Any, members: Sequence[int] | None = None) -> list[StepResult]:
        """Steps members with their actions; returns each one's ``BatchSizeEnv.step`` result.

        Args:
            actions: One action per stepped member.
            members: The indices of the members to step (default: all, in order).
        """
        indices = list(range(self.n_envs)) if members is None else list(members)
        actions = member_actions(actions, len(indices))
        plans = [self.envs[i].plan_interval(a) for i, a in zip(indices, actions, strict=True)]
        results: dict[int, IntervalResult] = {}
        for group in self._groups(indices, plans):
            results |= group.train()
        for index, result in results.items():
            self.envs[index].trainer.record_interval(result)
        validation = self._validation(list(results))
        outcomes = []
        for index, plan in zip(indices, plans, strict=True):
            env = self.envs[index]
            if index in results:
                outcomes.append(env.finish_interval(plan, results[index], validation[index]))
            else:
                outcomes.append(env.finish_interval(plan, env.train_interval(plan)))
        return outcomes

    def _groups(self, indices: Sequence[int], plans: list[IntervalPlan]) -> list[MemberGroup]:
        """The members that train batched, grouped by architecture and batch size.

        Members of a group may differ in the interval's length and in learning rate and the
        other SGD settings (instances of a family); see :mod:`.population_group`.
        """
        groups: dict[tuple, MemberGroup] = {}
        for index, plan in zip(indices, plans, strict=True):
            trainer = self.envs[index].trainer
            shapes = self._batched_shapes(trainer)
            if shapes is not None:
                key = (shapes, plan.batch_size, trainer.task.probe_size)
                group = groups.setdefault(key, MemberGroup(plan.batch_size))
                group.add(index, trainer, plan.num_samples, _sgd_settings(trainer))
        for group in groups.values():
            group.order()
        return list(groups.values())

    def _validation(self, members: list[int]) -> dict[int, tuple[float, float]]:
        """Validation loss and accuracy of batched members, in one pass per architecture."""
        groups: dict[tuple, list[int]] = {}
        for index in members:
            trainer = self.envs[index].trainer
            key = (self._batched_shapes(trainer), id(trainer.data), trainer.task.eval_batch_size)
            groups.setdefault(key, []).append(index)
        validation: dict[int, tuple[float, float]] = {}
        with torch.no_grad():
            for (_, _, chunk_size), indices in groups.items():
                trainers = [self.envs[i].trainer for i in indices]
                params = [
                    torch.stack(column)
                    for column in zip(*(t.trainable_parameters for t in trainers), strict=True)
                ]
                data = trainers[0].data
                pairs = mlp_evaluate(params, data.x_val, data.y_val, chunk_size)
                validation.update(zip(indices, pairs, strict=True))
        return validation


def _sgd_settings(trainer: InnerTrainer) -> SgdSettings:
    """The SGD settings of ``trainer``'s next interval (after ``plan_interval``)."""
    group = trainer.optimizer.param_groups[0]
    return SgdSettings(
        lr=trainer.current_lr,
        momentum=group["momentum"],
        dampening=group["dampening"],
        weight_decay=group["weight_decay"],
        nesterov=group["nesterov"],
    )


def member_actions(actions: Any, count: int) -> list[Any]:
    """``actions`` as a list of one action per member; ``ValueError`` when it is not that."""
    listed = None
    if actions is not None and not isinstance(actions, str | bytes | dict):
        with contextlib.suppress(TypeError):  # not iterable (a number, a 0-d array)
            listed = list(actions)
    if listed is None or len(listed) != count:
        raise ValueError(f"step() needs {count} actions, one per member; got {actions!r}.")
    return listed


def member_seeds(seed: Any, count: int) -> list[int | None]:
    """Each member's seed: ``None``, one integer (member i gets ``seed + i``) or one per member."""
    if seed is None:
        return [None] * count
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool | np.bool_):
        return [int(seed) + i for i in range(count)]
    if isinstance(seed, list | tuple | np.ndarray):
        if len(seed) != count:
            raise ValueError(
                f"reset(seed=...) got {len(seed)} seeds for {count} members; pass one per "
                "member, one integer (member i gets seed + i) or None."
            )
        return [None if s is None else check_int(f"seed[{i}]", s) for i, s in enumerate(seed)]
    raise ValueError(
        f"reset(seed=...) takes None, an integer or a list of {count} seeds; got {seed!r}."
    )


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
        self.num_envs = num_envs = self.population.n_envs
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
        """Resets every member; ``seed=s`` seeds member i with ``s + i``, a list one each."""
        seeds = member_seeds(seed, self.num_envs)
        check_options(options)
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
        actions = member_actions(actions, self.num_envs)
        rewards = np.zeros(self.num_envs)
        terminations = np.zeros(self.num_envs, dtype=bool)
        truncations = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        stepping = [i for i in range(self.num_envs) if not self._needs_reset[i]]
        for index in np.flatnonzero(self._needs_reset).tolist():
            observation, info = self.population.reset_member(index, None)
            self._observations[index] = observation
            infos = self._add_info(infos, info, index)
        if stepping:
            # Members being reset this step are stepped nowhere: run the rest as a population.
            outcomes = self.population.step([actions[i] for i in stepping], stepping)
            for index, (observation, reward, terminated, truncated, info) in zip(
                stepping, outcomes, strict=True
            ):
                self._observations[index] = observation
                rewards[index], terminations[index], truncations[index] = (
                    reward,
                    terminated,
                    truncated,
                )
                infos = self._add_info(infos, info, index)
        self._needs_reset = terminations | truncations
        return self._observations.copy(), rewards, terminations, truncations, infos
