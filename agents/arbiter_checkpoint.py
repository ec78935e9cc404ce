"""Arbiter checkpoints for the command line and the comparison runner.

``arbiter train --agent arbiter`` writes a checkpoint *folder*::

    RUN_DIR/checkpoint/
      arbiter.pt          the agent (Arbiter.save: φ, α, map, optimizer, generator, config)
      arbiter_run.yaml    the run config: task, task overrides and env arguments it trained with

``arbiter evaluate --controller RUN_DIR/checkpoint`` rebuilds the env from ``arbiter_run.yaml``
and starts each seed from the saved agent; in a comparison, ``controller: arbiter`` with
``kwargs: {checkpoint: PATH}`` does the same in the comparison's own env. Only the save/load
format lives here; the agent is :class:`arbiter_env.agents.arbiter.Arbiter`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym

from arbiter_env.agents.arbiter import Arbiter
from arbiter_env.config import read_config_mapping

CHECKPOINT_FILE = "arbiter.pt"
RUN_CONFIG_FILE = "arbiter_run.yaml"


def checkpoint_file(path: str | Path) -> Path:
    """The agent file of a checkpoint given as its folder or as the file itself.

    Raises:
        FileNotFoundError: naming the path and the file expected in a checkpoint folder.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"No Arbiter checkpoint at {path}: expected a file written by Arbiter.save or a "
            f"folder holding {CHECKPOINT_FILE} (arbiter train --agent arbiter writes "
            "RUN_DIR/checkpoint/)."
        )
    return path


def is_arbiter_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is an Arbiter checkpoint folder or a ``.pt`` file in one."""
    path = Path(path)
    return (path / CHECKPOINT_FILE).is_file() if path.is_dir() else path.name == CHECKPOINT_FILE


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The run config saved beside a checkpoint (``{}`` if there is none)."""
    file = checkpoint_file(path).parent / RUN_CONFIG_FILE
    return read_config_mapping(file) if file.is_file() else {}


def make_arbiter(env: gym.Env, checkpoint: str | Path | None = None, **kwargs: Any) -> Arbiter:
    """Arbiter (hyper-learning, MacLellan & Dong 2022), learning online; checkpoint=PATH loads one.

    Registry factory of ``"arbiter"``: without ``checkpoint`` a new agent with ``kwargs`` as
    :class:`ArbiterConfig` fields; with it, the saved agent (``kwargs`` are then config fields to
    change, as :meth:`Arbiter.load` takes them).
    """
    if checkpoint is None:
        return Arbiter(env, **kwargs)
    return Arbiter.load(checkpoint_file(checkpoint), env=env, **kwargs)


__all__ = [
    "CHECKPOINT_FILE",
    "RUN_CONFIG_FILE",
    "checkpoint_file",
    "is_arbiter_checkpoint",
    "make_arbiter",
    "read_run_config",
]
