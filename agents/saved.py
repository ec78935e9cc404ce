"""Opening a saved agent for evaluation, whichever agent saved it.

``arbiter evaluate --controller PATH`` hands the path here: an Arbiter checkpoint folder
(``arbiter train --agent arbiter``), an RL checkpoint folder (``arbiter train --agent ppo``), or a
model saved by rl-zoo3 (a ``.zip``, with the zoo's ``vecnormalize.pkl`` beside it if any). Each
comes back as a :class:`SavedAgent`: how to build the env it was trained in and how to load it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbiter_env.agents.arbiter_learning import (
    is_arbiter_checkpoint,
    make_arbiter,
    read_run_config,
)
from arbiter_env.config import ConfigError
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.envs.config import EnvConfig
from arbiter_env.tasks import is_family
from arbiter_env.tasks.families import FamilySplit

EnvBuilder = Callable[..., Any]
"""``(task, task_overrides, family_split, *, env_args) -> env`` (the command line's)."""
ENV_KEYS = tuple(
    f.name
    for f in dataclasses.fields(EnvConfig)
    if f.name not in ("task", "task_kwargs", "family_split", "render_mode")
)
"""The env arguments a saved Arbiter or zoo run carries besides the task."""


@dataclass
class SavedAgent:
    """A saved agent, ready to be evaluated.

    ``build_env()`` makes a new env like its training env, ``load(env)`` a new controller from the
    checkpoint, acting in that env.
    """

    build_env: Callable[[], Any]
    load: Callable[[Any], Any]
    task: str


@dataclass
class CheckpointRequest:
    """What the command line says about the evaluation of a saved agent.

    Attributes:
        path: The checkpoint.
        task: Task to evaluate on (``None``: the checkpoint's).
        task_overrides: Task fields to change.
        split: Task family split of the evaluation instances.
        kwargs: Controller arguments (Arbiter only; RL checkpoints take none).
        env_args: Env arguments to change.
        trusted: Load an RL checkpoint with SB3's own (unpickling) loader; without it an rl-zoo3
            model (which has no other loader) is refused.
        default_task: The task when neither the request nor the checkpoint names one.
    """

    path: Path
    task: str | None
    task_overrides: dict[str, Any]
    split: FamilySplit
    kwargs: dict[str, Any]
    env_args: dict[str, Any]
    trusted: bool = False
    default_task: str = "digits-mlp"


def open_saved_agent(request: CheckpointRequest, make_env: EnvBuilder) -> SavedAgent:
    """The saved agent at ``request.path``, with its env built like its training env."""
    if is_arbiter_checkpoint(request.path):
        return _arbiter(request, make_env)
    from arbiter_env.agents import require_sb3, zoo

    require_sb3("Loading RL checkpoints")
    if request.kwargs:
        raise ValueError(
            f"A checkpoint takes no controller arguments; got {sorted(request.kwargs)}."
        )
    if zoo.is_zoo_model(request.path):
        return _zoo(request, make_env)
    return _rl(request)


def _arbiter(request: CheckpointRequest, make_env: EnvBuilder) -> SavedAgent:

    saved = read_run_config(request.path)
    task = request.task or saved.get("task", request.default_task)
    saved_env = {k: saved[k] for k in ENV_KEYS if saved.get(k) is not None}
    task_kwargs = {**(saved.get("task_kwargs") or {}), **request.task_overrides}
    env_args = {**saved_env, **request.env_args}
    return SavedAgent(
        lambda: make_env(task, task_kwargs, env_args=env_args),
        lambda env: make_arbiter(env, checkpoint=request.path, **request.kwargs),
        task,
    )


def _zoo(request: CheckpointRequest, make_env: EnvBuilder) -> SavedAgent:
    """The env as the zoo built it: its ``--env-kwargs``, under the command line's settings."""
    from arbiter_env.agents import zoo

    zoo.require_trust(request.path, request.trusted)  # before a run folder or env is made
    trained = dict(zoo.read_zoo_args(request.path).get("env_kwargs") or {})
    task = request.task or trained.pop("task", None) or request.default_task
    task_overrides = {**(trained.pop("task_kwargs", None) or {}), **request.task_overrides}
    env_args = {k: v for k, v in trained.items() if k in ENV_KEYS} | request.env_args
    family_split = request.split if is_family(task) else None
    return SavedAgent(
        lambda: make_env(task, task_overrides, family_split, env_args=env_args),
        lambda env: zoo.load_zoo_controller(request.path, env, trusted=request.trusted),
        task,
    )


def _rl(request: CheckpointRequest) -> SavedAgent:
    from arbiter_env.agents.sb3 import load_checkpoint_config, load_rl_controller
    from arbiter_env.agents.sb3.controller import require_trust_for_pickles

    saved = load_checkpoint_config(request.path)
    require_trust_for_pickles(request.path, request.trusted)  # before a run folder is made
    env_fields = {f.name for f in dataclasses.fields(saved.env)}
    unsupported = sorted(set(request.env_args) - env_fields)
    if unsupported:
        raise ConfigError(
            f"An RL checkpoint's env takes {', '.join(sorted(env_fields))}; got "
            f"{', '.join(unsupported)}."
        )
    env_config = dataclasses.replace(
        saved.env,
        task=request.task or saved.env.task,
        task_kwargs={**saved.env.task_kwargs, **request.task_overrides},
        **request.env_args,
    )
    return SavedAgent(
        lambda: BatchSizeEnv.from_config(env_config, request.split),
        lambda env: load_rl_controller(
            request.path, env, device=saved.device, trusted=request.trusted
        ),
        env_config.task_name,
    )
