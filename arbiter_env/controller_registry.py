"""Controllers by name, so that configs and the command line can ask for them.

A registry entry is a factory ``(env, **kwargs) -> controller``. Arbiter, the RL agents and the
baselines register themselves in their packages' ``__init__``; :func:`make_controller` and
:func:`list_controllers` import those packages first, so the registry is always complete.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from arbiter_env.controllers import Controller

ControllerFactory = Callable[..., Controller]

_CONTROLLERS: dict[str, ControllerFactory] = {}
_DESCRIPTIONS: dict[str, str] = {}
_ENV_DEFAULTS: dict[str, dict[str, Any]] = {}
_PROVIDERS = ("arbiter_env.agents", "arbiter_env.baselines")


def register_controller(
    name: str,
    factory: ControllerFactory,
    *,
    overwrite: bool = False,
    description: str | None = None,
    env_defaults: dict[str, Any] | None = None,
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
    """
    if name in _CONTROLLERS and not overwrite and _CONTROLLERS[name] is not factory:
        raise ValueError(f"Controller {name!r} is already registered; pass overwrite=True.")
    _CONTROLLERS[name] = factory
    if description is not None:
        _DESCRIPTIONS[name] = description
    else:
        _DESCRIPTIONS.pop(name, None)
    _ENV_DEFAULTS[name] = dict(env_defaults or {})


def controller_env_defaults(name: str) -> dict[str, Any]:
    """The env arguments registered with controller ``name`` (``{}`` for none or unknown)."""
    _load_providers()
    return dict(_ENV_DEFAULTS.get(name, {}))


def describe_controller(name: str) -> str:
    """One line about the controller registered as ``name`` (empty if it has no docstring)."""
    _load_providers()
    if name not in _CONTROLLERS:
        raise ValueError(
            f"Unknown controller {name!r}. Known controllers: {', '.join(list_controllers())}."
        )
    if name in _DESCRIPTIONS:
        return _DESCRIPTIONS[name]
    factory: Any = _CONTROLLERS[name]
    owner = getattr(factory, "__self__", None)  # a classmethod such as Baseline.factory
    source = owner if isinstance(owner, type) else getattr(factory, "func", factory)
    doc = inspect.getdoc(source) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


def make_controller(name: str, env: gym.Env, **kwargs: Any) -> Controller:
    """Builds the controller registered as ``name`` for ``env``."""
    _load_providers()
    if name not in _CONTROLLERS:
        raise ValueError(
            f"Unknown controller {name!r}. Known controllers: {', '.join(list_controllers())}."
        )
    return _CONTROLLERS[name](env, **kwargs)


def list_controllers() -> list[str]:
    """Names of all registered controllers, sorted."""
    _load_providers()
    return sorted(_CONTROLLERS)


def _load_providers() -> None:
    for module in _PROVIDERS:
        importlib.import_module(module)
