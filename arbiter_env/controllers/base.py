"""One interface for every controller: Arbiter, heuristics and stable-baselines3 models.

A :class:`Controller` follows stable-baselines3's ``predict`` protocol::

    action, state = controller.predict(observation, state=None, episode_start=True, deterministic=True)

An SB3 model is therefore already a controller, and :func:`run_episode` runs any of them in the
same way. A :class:`Learner` is a controller that also trains: ``learn`` (into a work folder),
``save`` and a classmethod ``load``. How each registered controller is trained is said by its
registry entry (:mod:`arbiter_env.controllers.registry`), never by its name.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from arbiter_env.envs.batch_size import BatchSizeEnv


@runtime_checkable
class Controller(Protocol):
    """Anything that chooses actions like a stable-baselines3 model."""

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[Any, Any]:
        """The action for ``observation`` and the next recurrent state (``None`` if stateless)."""
        ...


@runtime_checkable
class Learner(Controller, Protocol):
    """A controller that trains: ``learn`` into a work folder, ``save``, and ``load`` back.

    ``learn(total_timesteps, work_dir=...)`` trains in the controller's env; anything it keeps
    beside the model (a search's study, for example) goes in ``work_dir`` unless the controller
    was configured with a folder of its own. ``save(path)`` writes what ``cls.load(path, env)``
    needs to rebuild the trained controller for ``env``.
    """

    def learn(self, total_timesteps: int, *, work_dir: str | Path | None = None) -> Any:
        """Trains for ``total_timesteps`` env steps (or the controller's own budget)."""
        ...

    def save(self, path: str | Path) -> None:
        """Writes the trained controller to ``path``."""
        ...

    @classmethod
    def load(cls, path: str | Path, env: gym.Env) -> Controller:
        """The controller saved at ``path``, acting in ``env``."""
        ...


class BatchSizeController(abc.ABC):
    """Base class for controllers that think in batch sizes rather than actions.

    Subclasses implement :meth:`choose_batch_size` (and :meth:`on_episode_start` when they keep
    state across intervals); the base class translates the size into an action of the
    environment's encoding with ``env.encode``, so every subclass works with every encoding.

    Args:
        env: The environment the controller acts in (wrappers are allowed).
    """

    def __init__(self, env: gym.Env):
        self.env = env
        self.batch_env: BatchSizeEnv = _unwrap(env)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[Any, Any]:
        """The action of :meth:`choose_batch_size`'s size in the env's encoding."""
        if episode_start is not None and bool(np.any(episode_start)):
            self.on_episode_start(observation)
        batch_size = self.choose_batch_size(np.asarray(observation, dtype=np.float32))
        return self.batch_env.encode(int(batch_size)), state

    def learn(
        self, total_timesteps: int = 0, *, work_dir: str | Path | None = None, **kwargs: Any
    ) -> BatchSizeController:
        """Rules need no training; search-based controllers override this."""
        return self

    def on_episode_start(self, observation: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Called with the first observation of each episode; resets per-episode state."""

    @abc.abstractmethod
    def choose_batch_size(self, observation: np.ndarray) -> int:
        """The batch size for the next interval, from the latest observation."""


@dataclass
class EpisodeRecord:
    """What one episode did, interval by interval, and how it ended."""

    seed: int
    batch_sizes: list[int] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    updates: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    val_accuracies: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    diverged: bool = False
    wall_time: float = 0.0

    @property
    def episode_return(self) -> float:
        """The sum of the episode's rewards."""
        return float(sum(self.rewards))

    @property
    def final_val_loss(self) -> float:
        """The validation loss after the last interval (NaN before any)."""
        return self.val_losses[-1] if self.val_losses else math.nan

    @property
    def final_val_accuracy(self) -> float:
        """The validation accuracy after the last interval (NaN before any)."""
        return self.val_accuracies[-1] if self.val_accuracies else math.nan

    @property
    def total_updates(self) -> int:
        """Inner optimizer updates of the whole episode."""
        return self.updates[-1] if self.updates else 0


StepCallback = Callable[[EpisodeRecord, dict[str, Any]], None]


def run_episode(
    env: gym.Env,
    controller: Controller,
    seed: int,
    *,
    deterministic: bool = True,
    on_step: StepCallback | None = None,
) -> EpisodeRecord:
    """Runs one seeded episode of ``controller`` in ``env`` and records it.

    Args:
        env: A ``BatchSizeEnv``, possibly wrapped.
        controller: Any object with SB3's ``predict`` signature.
        seed: Passed to ``env.reset(seed=seed)``.
        deterministic: Passed to ``predict``.
        on_step: Called after every step with the record so far and the step's ``info``.
    """
    # Timed here too, for envs that keep wall time out of `info` (the default): from the start
    # of the reset, as the env's own `episode_wall_time`.
    started = time.perf_counter()
    observation, _ = env.reset(seed=seed)
    record = EpisodeRecord(seed=seed)
    state, episode_start, done = None, True, False
    while not done:
        action, state = controller.predict(
            observation,
            state=state,
            episode_start=np.array([episode_start]),
            deterministic=deterministic,
        )
        observation, reward, terminated, truncated, info = env.step(action)
        episode_start, done = False, terminated or truncated
        record.batch_sizes.append(int(info["batch_size"]))
        record.learning_rates.append(float(info["lr"]))
        record.samples.append(int(info["samples"]))
        record.updates.append(int(info["updates"]))
        record.val_losses.append(float(info["val_loss"]))
        record.val_accuracies.append(float(info["val_accuracy"]))
        record.rewards.append(float(reward))
        record.infos.append(info)
        record.diverged = record.diverged or bool(info["diverged"])
        record.wall_time = float(info.get("episode_wall_time", time.perf_counter() - started))
        if on_step is not None:
            on_step(record, info)
    record.test_loss = float(info.get("test_loss", math.nan))
    record.test_accuracy = float(info.get("test_accuracy", math.nan))
    return record


def evaluate(
    env: gym.Env, controller: Controller, seeds: list[int], *, deterministic: bool = True
) -> list[EpisodeRecord]:
    """Runs one episode per seed; the same seeds give every controller the same initialisations."""
    return [run_episode(env, controller, seed, deterministic=deterministic) for seed in seeds]


def _unwrap(env: gym.Env) -> BatchSizeEnv:
    inner = getattr(env, "unwrapped", env)
    if not isinstance(inner, BatchSizeEnv):
        raise TypeError(f"Expected a BatchSizeEnv (possibly wrapped), got {type(inner).__name__}.")
    return inner
