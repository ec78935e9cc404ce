"""How a registered controller is trained, saved and loaded back: the :class:`Training` protocol.

Every registry entry carries a ``Training``. Runners never ask what kind of controller they hold:

- a comparison's training run calls ``training.train(job, log)`` and its evaluation runs
  ``training.load(job, env)``; the plan check calls ``training.check(...)``;
- ``arbiter train`` calls ``training.prepare(request)`` for the agent's resolved, checked
  :class:`TrainingPlan` and then ``plan.run(log, progress)``.

:class:`LearnerTraining` is the default: a :class:`~arbiter_env.controllers.base.Learner` trains
itself with ``learn(total_timesteps, work_dir=...)``, ``save`` and its class's ``load``. Agents with
a training procedure of their own (the stable-baselines3 agents, Arbiter's command) provide theirs
in their packages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym

from arbiter_env.config import ConfigError
from arbiter_env.controllers.base import Controller, EpisodeRecord, Learner
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.tasks import make_task

if TYPE_CHECKING:
    from arbiter_env.lab.runlog import RunLogger


@dataclass(frozen=True)
class TrainingJob:
    """One training run of a registered controller (a comparison plans one per task and entry).

    Attributes:
        controller: The registered name.
        label: The name of the contestant (for logs and messages).
        kwargs: The controller's keyword arguments.
        task: Task name.
        task_overrides: Task fields to change.
        env: ``BatchSizeEnv`` arguments, the same as the evaluation episodes'.
        seed: The training seed.
        total_timesteps: The training budget in env steps.
        work_dir: The training's own folder (logs and anything the training keeps).
        model_path: Where the trained controller is saved, and later loaded from.
    """

    controller: str
    label: str
    kwargs: dict[str, Any]
    task: str
    task_overrides: dict[str, Any]
    env: dict[str, Any]
    seed: int
    total_timesteps: int
    work_dir: Path
    model_path: Path

    def make_env(self) -> gym.Env:
        """The env of the job: its task, overrides and env arguments."""
        task = make_task(self.task, **self.task_overrides)
        return BatchSizeEnv(task, **{"record_wall_time": True, **self.env})


@dataclass(frozen=True)
class TrainRequest:
    """What ``arbiter train`` was asked: the same fields for every agent.

    Attributes:
        agent: The registered controller name.
        task: Task or family (``None``: the config's).
        task_overrides: ``KEY=VALUE`` task overrides, as typed.
        env_args: ``BatchSizeEnv`` arguments (checked names).
        seed: Training seed (``None``: the config's).
        config_file: The ``--config`` file, if any.
        file_data: Its contents (after its ``imports:`` were imported).
        overrides: Trailing ``key=value`` config overrides.
        resume: A checkpoint to continue from.
        evaluate: Whether to play held-out episodes after training.
    """

    agent: str
    task: str | None = None
    task_overrides: list[str] = field(default_factory=list)
    env_args: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    config_file: Path | None = None
    file_data: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    resume: Path | None = None
    evaluate: bool = True


@dataclass
class HeldOutEvaluation:
    """Episodes the command line plays and logs after training (with a progress bar)."""

    env: gym.Env
    controller: Controller
    seeds: list[int]
    name: str
    deterministic: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainOutcome:
    """What a training command produced, for the command line to print.

    Attributes:
        checkpoint: The saved agent.
        title: Title of the episode table.
        records: Episodes already played (and logged) during training.
        evaluation: Held-out episodes still to play, if any.
        notes: Lines printed after the table (how to use the checkpoint).
        training_episodes: Whether to print the training episodes' summary first.
    """

    checkpoint: Path
    title: str
    records: list[EpisodeRecord] = field(default_factory=list)
    evaluation: HeldOutEvaluation | None = None
    notes: list[str] = field(default_factory=list)
    training_episodes: bool = False


class TrainingPlan(Protocol):
    """A resolved and checked ``arbiter train`` run, before any folder is created."""

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config (saved as the run's ``config.yaml`` and sent to W&B)."""
        ...

    @property
    def task(self) -> str:
        """The task or family trained on."""
        ...

    @property
    def total(self) -> int:
        """Progress units of :meth:`run` (env steps or intervals)."""
        ...

    def run(self, log: RunLogger, progress: Callable[[int], None]) -> TrainOutcome:
        """Trains with logging into ``log.run_dir``; ``progress(done)`` reports progress."""
        ...

    def interrupted(self, run_dir: Path) -> Path | str | None:
        """After Ctrl-C: the checkpoint to resume from, or a line saying why there is none.

        ``None``: nothing to say (the agent cannot resume a run).
        """
        ...


class Training(Protocol):
    """How a registered controller is trained, saved and loaded back."""

    @property
    def has_command(self) -> bool:
        """Whether ``arbiter train`` can train it (:meth:`prepare` is implemented)."""
        ...

    def check(
        self, name: str, kwargs: dict[str, Any], env: gym.Env, job: TrainingJob | None
    ) -> None:
        """Checks a comparison's contestant without running it.

        Args:
            name: The registered name.
            kwargs: The contestant's keyword arguments.
            env: The env its evaluation episodes use.
            job: Its training run, or ``None`` if the comparison does not train it.

        Raises:
            ValueError: (``ConfigError`` included) settings that cannot work.
        """
        ...

    def train(self, job: TrainingJob, log: RunLogger) -> None:
        """Trains ``job`` and saves the controller at ``job.model_path``."""
        ...

    def load(self, job: TrainingJob, env: gym.Env) -> Controller:
        """The controller trained by ``job``, acting in ``env``."""
        ...

    def prepare(self, request: TrainRequest) -> TrainingPlan:
        """``arbiter train``: resolves and checks everything before a run folder exists.

        Raises:
            ValueError: (``ConfigError`` included) one message naming every problem.
        """
        ...


class LearnerTraining:
    """The default training: the controller is a :class:`Learner` and trains itself.

    Args:
        factory: The registered factory, ``(env, **kwargs) -> controller``.
        cls: The controller's class when the factory is known to build one (its ``load`` loads
            a saved controller); ``None``: the class of a controller built by the factory.
    """

    def __init__(self, factory: Callable[..., Controller], cls: type | None = None):
        self.factory = factory
        self.cls = cls

    @property
    def has_command(self) -> bool:
        """A Learner trains only inside comparisons (and ``arbiter evaluate --learn``)."""
        return False

    def check(
        self, name: str, kwargs: dict[str, Any], env: gym.Env, job: TrainingJob | None
    ) -> None:
        """Builds the controller; one that is trained must be a :class:`Learner`."""
        controller = self.factory(env, **kwargs)
        if job is not None and not isinstance(controller, Learner):
            raise ConfigError(
                f"train_timesteps is {job.total_timesteps} but {name!r} has no learn()/save(); "
                "set train_timesteps: 0."
            )

    def train(self, job: TrainingJob, log: RunLogger) -> None:
        """``learn`` in the job's env with the job's work folder, then ``save``."""
        env = job.make_env()
        env.reset(seed=job.seed)
        controller = self.factory(env, **job.kwargs)
        if not isinstance(controller, Learner):
            raise TypeError(
                f"Controller {job.controller!r} has train_timesteps > 0 but no learn()/save()."
            )
        log.describe(env, controller)
        controller.learn(job.total_timesteps, work_dir=job.work_dir)
        controller.save(job.model_path)
        log.set_summary({"train_timesteps": job.total_timesteps})

    def load(self, job: TrainingJob, env: gym.Env) -> Controller:
        """The class's ``load`` of ``job.model_path``."""
        cls = self.cls if self.cls is not None else type(self.factory(env, **job.kwargs))
        if not issubclass(cls, Learner):
            raise TypeError(
                f"Controller {job.controller!r} was trained but cannot load {job.model_path}."
            )
        return cls.load(job.model_path, env=env)

    def prepare(self, request: TrainRequest) -> TrainingPlan:
        """Not available: see :attr:`has_command`."""
        raise ValueError(
            f"{request.agent!r} is not trained by arbiter train; use arbiter evaluate --learn or "
            "a comparison with train_timesteps."
        )


def inline_value(value: Any) -> str:
    """A value as the right-hand side of a ``key=value`` override (inline YAML)."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...")
