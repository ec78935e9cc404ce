"""How Arbiter trains, and the checkpoint folder it leaves: the registry's :class:`ArbiterTraining`.

In a comparison Arbiter is a :class:`~arbiter_env.controllers.Learner` like any other (``learn``,
``save``, ``Arbiter.load``). ``arbiter train --agent arbiter`` runs an :class:`ArbiterRunConfig`
(:mod:`arbiter_env.agents.run_arbiter`), one episode per seed, learning online, and writes a
checkpoint folder::

    RUN_DIR/checkpoint/
      arbiter.pt          the agent (Arbiter.save: φ, α, map, optimizer, generator, config)
      arbiter_run.yaml    the run config: task, task overrides and env arguments it trained with

``arbiter evaluate --controller RUN_DIR/checkpoint`` rebuilds the env from ``arbiter_run.yaml``
and starts each seed from the saved agent; in a comparison, ``controller: arbiter`` with
``kwargs: {checkpoint: PATH}`` (:func:`make_arbiter`) does the same in the comparison's own env.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from arbiter_env.agents.arbiter import Arbiter
from arbiter_env.agents.arbiter_diagnostics import mode_notes
from arbiter_env.agents.run_arbiter import ArbiterRunConfig, make_env, run_arbiter
from arbiter_env.config import (
    apply_overrides,
    apply_values,
    from_dict,
    plain,
    read_config_mapping,
    save_yaml,
    to_dict,
)
from arbiter_env.controllers import Controller, LearnerTraining, TrainOutcome, TrainRequest

if TYPE_CHECKING:
    from arbiter_env.lab.runlog import RunLogger

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


class ArbiterTraining(LearnerTraining):
    """Arbiter's registry training: a Learner in comparisons, a run config in ``arbiter train``."""

    has_command = True  # ``arbiter train --agent arbiter`` runs :meth:`prepare`'s plan

    def __init__(self, factory: Callable[..., Controller]) -> None:
        super().__init__(factory, Arbiter)

    def prepare(self, request: TrainRequest) -> ArbiterTrainingPlan:
        """The resolved :class:`ArbiterRunConfig` of ``arbiter train --agent arbiter``."""
        if request.resume is not None:
            raise ValueError("--resume applies to RL agents; Arbiter learns within each episode.")
        task = [f"task={request.task}"] if request.task else []
        task += [f"task_kwargs.{item}" for item in request.task_overrides]
        data = request.file_data if request.config_file is not None else {}
        data = apply_overrides(data, task)
        # ArbiterRunConfig is an EnvConfig: every env argument is one of its fields. The values
        # are typed already; they go in as data, not as strings to parse again.
        data = apply_values(data, {key: plain(v) for key, v in request.env_args.items()})
        overrides = [f"seeds=[{request.seed}]"] if request.seed is not None else []
        overrides += request.overrides
        return ArbiterTrainingPlan(from_dict(ArbiterRunConfig, apply_overrides(data, overrides)))


@dataclass
class ArbiterTrainingPlan:
    """``arbiter train --agent arbiter``: one logged episode per seed, then a checkpoint folder."""

    run_config: ArbiterRunConfig

    def __post_init__(self) -> None:
        self.env = make_env(self.run_config)  # builds (and so checks) the task and env first

    @property
    def config(self) -> dict[str, Any]:
        """The resolved run config."""
        return to_dict(self.run_config)

    @property
    def task(self) -> str:
        """The task trained on."""
        return self.run_config.task_name

    @property
    def total(self) -> int:
        """Intervals of all the seeds' episodes."""
        return len(self.run_config.seeds) * self.env.get_wrapper_attr("task").num_intervals

    def run(self, log: RunLogger, progress: Callable[[int], None]) -> TrainOutcome:
        """Plays every seed with logging and saves the agent and its run config."""
        config, env = self.run_config, self.env
        log.describe(env)  # the resolved task and env arguments, in config.yaml and wandb.config
        if config.save_path is None:
            # The checkpoint folder: the agent and the run config that rebuilds its env.
            folder = log.run_dir / "checkpoint"
            config = dataclasses.replace(config, save_path=str(folder / CHECKPOINT_FILE))
        checkpoint = Path(str(config.save_path))
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_yaml(config, checkpoint.parent / RUN_CONFIG_FILE)
        steps = 0

        def advance(record: Any, info: dict[str, Any]) -> None:
            nonlocal steps
            steps += 1
            progress(steps)

        records = run_arbiter(config, env, on_step=log.on_step(controller="arbiter", then=advance))
        for record in records:
            log.log_episode(record, controller="arbiter")
        after = (
            f"after learning {config.learn_timesteps} steps and playing every seed"
            if config.learn_timesteps > 0
            else f"the agent of the last seed, {config.seeds[-1]}"
        )
        return TrainOutcome(
            checkpoint=checkpoint.parent,
            title=f"Arbiter on {config.task}",
            records=records,
            notes=[
                f"checkpoint: {checkpoint.parent} ({after})",
                f"evaluate it with: arbiter evaluate --controller {checkpoint.parent}",
                *mode_notes(learned_timesteps=config.learn_timesteps),
            ],
        )

    def interrupted(self, run_dir: Path) -> None:
        """Arbiter cannot resume a run (it learns within each episode)."""
        return None
