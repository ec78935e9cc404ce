"""Turning command-line arguments into checked task overrides, env arguments, envs and controllers."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, get_type_hints

from arbiter_env import controllers
from arbiter_env.config import ConfigError, apply_overrides, from_dict
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.envs.config import EnvConfig
from arbiter_env.tasks import Task
from arbiter_env.tasks.registry import builder_arguments

DEFAULT_TASK = "digits-mlp"


def task_overrides(items: list[str], task: str | None = None) -> dict[str, Any]:
    """``key=value`` task overrides as a dict, checked against the :class:`Task` fields' types.

    Arguments of the task's builder (``data_dir`` for the file-backed tasks) are accepted too.
    """
    overrides = apply_overrides({}, items)
    hints = get_type_hints(Task)
    names = {f.name for f in dataclasses.fields(Task)}
    builder = builder_arguments(task) if task is not None else set()
    unknown = sorted(set(overrides) - names - builder)
    if unknown:
        extra = f"; arguments of {task}: {', '.join(sorted(builder))}" if builder else ""
        raise ConfigError(
            f"Unknown task field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(names))}"
            f"{extra}."
        )
    # A throw-away dataclass with just the overridden fields lets the config module check the
    # types (and name the key) exactly as it does for config files.
    fields = [k for k in overrides if k in names]
    checker = dataclasses.make_dataclass(
        "TaskOverrides", [(k, hints[k], dataclasses.field(default=None)) for k in fields]
    )
    from_dict(checker, {k: overrides[k] for k in fields}, path="task")
    return overrides


def make_env(
    task: str,
    overrides: dict[str, Any],
    split: str | None = None,
    *,
    env_args: dict[str, Any] | None = None,
) -> Any:
    """A ``BatchSizeEnv``; a task that rejects a value raises ``ValueError`` naming the task."""
    try:
        return BatchSizeEnv(
            task,
            task_kwargs=overrides or None,
            family_split=split,  # type: ignore[arg-type]  # argparse's choices check it
            **(env_args or {}),
        )
    except TypeError as error:  # a value of the right type but of a form the task rejects
        raise ValueError(f"Task {task!r}: {error}") from None


# Set by their own options (--task, -t, --split) or not from the command line at all.
_NOT_ENV_OPTIONS = {
    "task": "use --task",
    "task_kwargs": "task fields go in -t KEY=VALUE",
    "family_split": "use --split",
    "render_mode": "the command line does not render",
}


def env_args(items: list[str]) -> dict[str, Any]:
    """``-e KEY=VALUE`` items as typed ``BatchSizeEnv`` arguments, each read once, here."""
    import difflib

    values = apply_overrides({}, items)
    for key in sorted(values.keys() & _NOT_ENV_OPTIONS.keys()):
        raise ConfigError(f"-e {key}=... is not an option: {_NOT_ENV_OPTIONS[key]}.")
    keys = [name for name in EnvConfig.field_names() if name not in _NOT_ENV_OPTIONS]
    unknown = sorted(set(values) - set(keys))
    if unknown:
        close = [m for key in unknown for m in difflib.get_close_matches(key, keys, n=1)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"Unknown env argument(s) {', '.join(unknown)}{hint}; valid: {', '.join(keys)} "
            "(task fields go in -t KEY=VALUE)."
        )
    return EnvConfig.checked(values)


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op threads for this process (0 or ``None``: torch's default)."""
    if threads is None or threads == 0:
        return
    if threads < 0:
        raise ValueError(f"--threads must be >= 0, got {threads}.")
    import torch

    torch.set_num_threads(threads)


def make_controller(name: str, env: Any, kwargs: dict[str, Any]) -> Any:
    """The registered controller ``name``; unknown keyword arguments raise ``ValueError``."""
    try:
        return controllers.make_controller(name, env, **kwargs)
    except TypeError as error:  # keyword arguments the factory does not take
        raise ValueError(f"Controller {name!r}: {error}") from None


def check_reachable(env: Any, batch_size: int, task: str) -> None:
    """Refuses a fixed batch size that the env's action encoding cannot select exactly.

    The run would otherwise train at the nearest size it can reach (128 for 100 on the default
    ladder) while its title and config say ``batch_size``.
    """
    encoding = env.unwrapped.action_encoding
    reached = encoding.settled_size(batch_size, env.unwrapped.task.batch_start)
    if reached == batch_size:
        return
    ladder = ", ".join(str(int(size)) for size in encoding.ladder)
    raise ValueError(
        f"--batch-size {batch_size} cannot be selected exactly with the {encoding.name!r} "
        f"encoding of {task} (it would train at {reached}): choose one of {ladder}, use "
        "-e action_encoding=continuous for any size in "
        f"[{encoding.batch_min}, {encoding.batch_max}], or change batch_min/batch_max with -t."
    )


def looks_like_path(argument: str) -> bool:
    """Whether ``--controller`` names a folder rather than a registered controller.

    Names win: a folder ``./cabs`` in the working directory must not shadow the ``cabs``
    controller, so only an argument that is spelled as a path is treated as one.
    """
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return (
        argument.startswith((".", "~"))
        or argument.endswith(".zip")  # an rl-zoo3 model file
        or any(sep in argument for sep in separators)
    )


def split_seeds(items: list[str]) -> tuple[list[int], list[str]]:
    """``--seeds`` values as ints; ``key=value`` items it swallowed are handed back."""
    seeds, rest = [], []
    for item in items:
        if "=" in item:
            rest.append(item)
            continue
        try:
            seeds.append(int(item))
        except ValueError:
            raise ValueError(f"--seeds: {item!r} is not an integer.") from None
    if not seeds:
        raise ValueError("--seeds: give at least one integer seed.")
    return seeds, rest
