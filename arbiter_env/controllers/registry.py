"""Controllers by name, so that configs and the command line can ask for them.

A registry entry (:class:`ControllerEntry`) holds a factory ``(env, **kwargs) -> controller`` and
says everything a runner needs to know about the controller without looking at its name: its
kind (for tables and plots), the env arguments it is meant to run with, whether evaluating it
untrained is meaningless, and *how it is trained* (its :class:`~arbiter_env.controllers.learning.
Training`). Arbiter, the RL agents and the baselines register themselves in their packages'
``__init__``; the functions here import those packages first, so the registry is always complete.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from arbiter_env.controllers.base import Controller, Learner
from arbiter_env.controllers.learning import LearnerTraining, Training

ControllerFactory = Callable[..., Controller]

_ENTRIES: dict[str, ControllerEntry] = {}
_PROVIDERS = ("arbiter_env.agents", "arbiter_env.baselines")


@dataclass(frozen=True)
class ControllerEntry:
    """What the registry knows about one controller.

    Attributes:
        name: The name configs and the command line use.
        factory: ``(env, **kwargs) -> controller``.
        description: One line for ``arbiter controllers`` (``None``: the factory's docstring).
        env_defaults: ``BatchSizeEnv`` arguments the controller is meant to run with.
        kind: A family name for tables and plots (``"rl"``, ``"hpo"``, ...; ``"other"``).
        training: How the controller is trained, saved and loaded back.
        needs_training: Whether an untrained instance is meaningless to evaluate (an RL policy):
            the command line then asks for a checkpoint or ``--learn``.
        seeded: Whether the factory takes ``seed=`` for the controller's own randomness; a
            comparison then passes each episode's seed unless the run's kwargs set one.
    """

    name: str
    factory: ControllerFactory
    training: Training
    description: str | None = None
    env_defaults: dict[str, Any] = field(default_factory=dict)
    kind: str = "other"
    needs_training: bool = False
    seeded: bool = False


def register_controller(
    name: str,
    factory: ControllerFactory,
    *,
    overwrite: bool = False,
    description: str | None = None,
    env_defaults: dict[str, Any] | None = None,
    kind: str = "other",
    training: Training | None = None,
    needs_training: bool = False,
    seeded: bool = False,
) -> None:
    """Registers ``factory(env, **kwargs)`` under ``name``.

    Args:
        name: The name configs and the command line use.
        factory: ``(env, **kwargs) -> controller``; a class whose constructor takes the env first
            is a factory.
        overwrite: Replace an existing entry of the same name instead of raising.
        description: One line for ``arbiter controllers``; default: the first line of the
            factory's docstring (of the class, for a class or a classmethod).
        env_defaults: ``BatchSizeEnv`` arguments this controller is meant to run with (for
            example ``{"action_encoding": "continuous"}``); ``arbiter evaluate`` and comparisons
            use them unless the user sets those arguments.
        kind: The controller's family in reports and plots.
        training: How the controller trains; default: as a :class:`~arbiter_env.controllers.
            Learner` (``learn``, ``save``, and the class's ``load``).
        needs_training: Refuse to evaluate it untrained (without a checkpoint or ``--learn``).
        seeded: The factory takes ``seed=``; comparisons pass the episode's seed.
    """
    existing = _ENTRIES.get(name)
    if existing is not None and not overwrite and existing.factory is not factory:
        raise ValueError(f"Controller {name!r} is already registered; pass overwrite=True.")
    _ENTRIES[name] = ControllerEntry(
        name=name,
        factory=factory,
        description=description,
        env_defaults=dict(env_defaults or {}),
        kind=kind,
        training=training
        if training is not None
        else LearnerTraining(factory, _learner_class(factory)),
        needs_training=needs_training,
        seeded=seeded,
    )


def controller_entry(name: str) -> ControllerEntry:
    """The registry entry of controller ``name``.

    Raises:
        ValueError: no controller of that name is registered (the message lists them).
    """
    _load_providers()
    if name not in _ENTRIES:
        raise ValueError(
            f"Unknown controller {name!r}. Known controllers: {', '.join(list_controllers())}."
        )
    return _ENTRIES[name]


def controller_env_defaults(name: str) -> dict[str, Any]:
    """The env arguments registered with controller ``name`` (``{}`` for none or unknown)."""
    _load_providers()
    entry = _ENTRIES.get(name)
    return dict(entry.env_defaults) if entry is not None else {}


def controller_kind(name: str) -> str:
    """The kind registered with controller ``name`` (``"other"`` for none or unknown)."""
    _load_providers()
    entry = _ENTRIES.get(name)
    return entry.kind if entry is not None else "other"


def describe_controller(name: str) -> str:
    """One line about the controller registered as ``name`` (empty if it has no docstring)."""
    entry = controller_entry(name)
    if entry.description is not None:
        return entry.description
    factory: Any = entry.factory
    owner = getattr(factory, "__self__", None)  # a classmethod such as Baseline.factory
    source = owner if isinstance(owner, type) else getattr(factory, "func", factory)
    doc = inspect.getdoc(source) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


def make_controller(name: str, env: gym.Env, **kwargs: Any) -> Controller:
    """Builds the controller registered as ``name`` for ``env``."""
    return controller_entry(name).factory(env, **kwargs)


def list_controllers() -> list[str]:
    """Names of all registered controllers, sorted."""
    _load_providers()
    return sorted(_ENTRIES)


def trainable_controllers() -> list[str]:
    """Names of the controllers ``arbiter train`` can train (their training has a command)."""
    return [name for name in list_controllers() if _ENTRIES[name].training.has_command]


def _learner_class(factory: ControllerFactory) -> type | None:
    """The class a factory builds, if it is a :class:`Learner` (its ``load`` then loads)."""
    owner = getattr(factory, "__self__", None)  # a classmethod such as Baseline.factory
    cls = owner if isinstance(owner, type) else factory
    if isinstance(cls, type) and issubclass(cls, Learner):
        return cls
    return None


def _load_providers() -> None:
    for module in _PROVIDERS:
        importlib.import_module(module)
