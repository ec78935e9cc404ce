"""What a run ran, for its config: the task and controller labels, the resolved env and controller."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from arbiter_env.config import plain
from arbiter_env.controllers import controller_kind


def config_labels(config: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The task and controller names a run's config states, for its default group and tags."""
    env = config.get("env")
    if not isinstance(env, Mapping):
        env = {}
    task = config.get("task") or env.get("task")
    # A name, never a mapping (Arbiter's run config has a `controller` section).
    names = (config.get(key) for key in ("controller", "algo", "agent"))
    controller = next((name for name in names if isinstance(name, str) and name), None)
    return (str(task) if isinstance(task, str) and task else None, controller)


def kind_tag(controller: str | None) -> str | None:
    """``kind:KIND`` for a registered controller name (fixed, schedule, adaptive, rl, ...)."""
    if not controller:
        return None

    return f"kind:{controller_kind(controller)}"


def describe_env(env: Any) -> dict[str, Any] | None:
    """The env's :meth:`BatchSizeEnv.describe` (through wrappers, or a VecEnv's first env)."""
    if env is None:
        return None
    if hasattr(env, "env_method"):  # a SB3 VecEnv: ask its first environment
        return env.env_method("describe", indices=[0])[0]
    unwrapped = getattr(env, "unwrapped", env)
    describe = getattr(unwrapped, "describe", None)
    if not callable(describe):
        return None
    described = dict(describe())
    # Every argument of the env's typed config (gradient statistics, divergence rule, ...):
    # all of them can change results.
    config = getattr(unwrapped, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        for field in dataclasses.fields(config):
            described.setdefault(field.name, plain(getattr(config, field.name)))
    return described


def describe_controller(controller: Any) -> dict[str, Any] | None:
    """The controller's class and its config dataclass or SB3 hyperparameters, as plain data."""
    if controller is None:
        return None
    described: dict[str, Any] = {"class": plain(type(controller))}
    config = getattr(controller, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        described["config"] = plain(config)
    for key in ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda"):
        value = getattr(controller, key, None)  # SB3 algorithms
        if isinstance(value, bool | int | float | str):
            described.setdefault("hyperparams", {})[key] = value
    return described
