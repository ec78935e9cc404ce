"""Arbiter's runs: a YAML run config, one episode per seed, and the checkpoint folder a run leaves.

    python -m arbiter_env.agents.run_arbiter --config configs/arbiter/standalone.yaml
    python -m arbiter_env.agents.run_arbiter --config configs/arbiter/step_schedule.yaml seeds=[0,1]

``key=value`` arguments after the config override its entries (``agent.phi_lr=1e-4``).
``arbiter train --agent arbiter`` runs the same :class:`ArbiterRunConfig` through the registry's
:class:`ArbiterTraining` and writes a checkpoint folder::

    RUN_DIR/checkpoint/
      arbiter.pt          the agent (Arbiter.save: φ, α, map, optimizer, generator, config)
      arbiter_run.yaml    the run config: task, task overrides and env arguments it trained with

``arbiter evaluate --controller RUN_DIR/checkpoint`` rebuilds the env from ``arbiter_run.yaml``
and starts each seed from the saved agent. In a comparison Arbiter is a
:class:`~arbiter_env.controllers.Learner` like any other (``learn``, ``save``, ``Arbiter.load``),
and ``controller: arbiter`` with ``kwargs: {checkpoint: PATH}`` (:func:`make_arbiter`) loads a
checkpoint in the comparison's own env.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from arbiter_env.agents.arbiter import Arbiter, ArbiterConfig, Milestone
from arbiter_env.agents.arbiter_diagnostics import mode_notes
from arbiter_env.config import (
    apply_overrides,
    apply_values,
    from_dict,
    load_yaml,
    plain,
    read_config_mapping,
    save_yaml,
    to_dict,
)
from arbiter_env.controllers import (
    Controller,
    EpisodeRecord,
    LearnerTraining,
    StepCallback,
    TrainOutcome,
    TrainRequest,
    run_episode,
)
from arbiter_env.envs.actions import ActionEncodingName
from arbiter_env.envs.batch_size import BatchSizeEnv, EnvConfig

if TYPE_CHECKING:
    from arbiter_env.lab.runlog import RunLogger

__all__ = [
    "CHECKPOINT_FILE",
    "RUN_CONFIG_FILE",
    "ArbiterRunConfig",
    "ArbiterTraining",
    "checkpoint_file",
    "format_record",
    "is_arbiter_checkpoint",
    "load_run_config",
    "main",
    "make_arbiter",
    "make_env",
    "read_run_config",
    "run_arbiter",
]


@dataclass
class ArbiterRunConfig(EnvConfig):
    """One Arbiter experiment: the environment, the agent and the seeds.

    The environment's arguments are the fields of :class:`~arbiter_env.envs.config.EnvConfig`, at
    the top level of the run config (``task``, ``task_kwargs``, ``num_intervals``, ``reward``,
    ...), so every env argument can be set here; only the default of ``action_encoding``
    differs.

    Args:
        action_encoding: How Arbiter's sizes reach the env. ``continuous`` (default here) reaches
            almost every integer size; ``discrete`` rounds to the ladder; ``relative`` halves or
            doubles toward the chosen size.
        seeds: One episode per seed; each runs with a fresh agent seeded by ``agent.seed + seed``.
        learn_timesteps: Env steps of :meth:`Arbiter.learn` before the evaluation episodes; when
            positive, one agent is trained and then evaluated on every seed.
        agent: Arbiter's hyperparameters (any subset; the rest keep their defaults).
        schedule: Fixed step schedule to adjust around (empty: stand-alone scheduler).
        save_path: Where to save the agent after the last episode (optional).
        threads: Torch intra-op threads for this process (``None``: leave torch's default). One
            thread is faster for small networks on a shared or busy machine.
    """

    action_encoding: ActionEncodingName = "continuous"
    seeds: list[int] = field(default_factory=lambda: [0])
    learn_timesteps: int = 0
    agent: ArbiterConfig = field(default_factory=ArbiterConfig)
    schedule: list[Milestone] = field(default_factory=list)
    save_path: str | None = None
    threads: int | None = None


def load_run_config(
    path: str | os.PathLike, overrides: list[str] | None = None
) -> ArbiterRunConfig:
    """Reads an :class:`ArbiterRunConfig` from YAML, with ``key=value`` overrides."""
    return load_yaml(ArbiterRunConfig, Path(path), overrides)


def make_env(config: ArbiterRunConfig) -> BatchSizeEnv:
    """The environment the config describes."""
    return BatchSizeEnv(config=config.env_config())


def make_agent(config: ArbiterRunConfig, env: BatchSizeEnv, seed_offset: int = 0) -> Arbiter:
    """An Arbiter for ``env`` with the config's hyperparameters and schedule."""
    return Arbiter(
        env, config.agent, schedule=config.schedule, seed=config.agent.seed + seed_offset
    )


def run_arbiter(
    config: ArbiterRunConfig,
    env: BatchSizeEnv | None = None,
    *,
    verbose: bool = False,
    on_step: StepCallback | None = None,
) -> list[EpisodeRecord]:
    """Runs Arbiter as the config says and returns one record per seed.

    ``on_step`` is passed to :func:`run_episode`, so loggers see every interval as it ends.

    Without ``learn_timesteps`` every seed gets a fresh agent (seeded ``agent.seed + seed``), so
    each episode is an independent run of the paper's online algorithm. With ``learn_timesteps``
    one agent learns first and then plays every seed.
    """
    if config.threads is not None:
        import torch

        torch.set_num_threads(config.threads)
    env = env or make_env(config)
    records = []
    agent: Arbiter | None = None
    if config.learn_timesteps > 0:
        agent = make_agent(config, env).learn(config.learn_timesteps)
    for seed in config.seeds:
        episode_agent = agent or make_agent(config, env, seed_offset=seed)
        record = run_episode(env, episode_agent, seed, on_step=on_step)
        record.infos[-1]["arbiter_decisions"] = list(episode_agent.decisions)
        record.infos[-1]["arbiter_warmup_iterations"] = list(episode_agent.warmup_iterations)
        records.append(record)
        if verbose:
            print(format_record(record))
        if agent is None:
            episode_agent.close()
            if config.save_path is not None and seed == config.seeds[-1]:
                episode_agent.save(config.save_path)
    if agent is not None and config.save_path is not None:
        agent.save(config.save_path)
    return records


def format_record(record: EpisodeRecord) -> str:
    """A readable summary of one episode: schedule, final validation loss, test accuracy."""
    lines = [
        f"seed {record.seed}: batch sizes {record.batch_sizes}",
        f"  learning rates {[f'{lr:.3g}' for lr in record.learning_rates]}",
        f"  warm-up iterations {record.infos[-1].get('arbiter_warmup_iterations')}",
        f"  updates {record.total_updates}, final val loss {record.final_val_loss:.4f}, "
        f"test accuracy {record.test_accuracy:.4f}, diverged {record.diverged}, "
        f"wall {record.wall_time:.1f} s",
    ]
    return "\n".join(lines)


# --- the checkpoint folder and arbiter train ----------------------------------------------------

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


def main(argv: list[str] | None = None) -> list[EpisodeRecord]:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, type=Path, help="YAML run config")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seeds=[0,1]")
    args = parser.parse_args(argv)
    config = load_run_config(args.config, args.overrides)
    print(f"Arbiter on {config.task} ({config.action_encoding} actions), seeds {config.seeds}")
    records = run_arbiter(config, verbose=True)
    losses = [r.final_val_loss for r in records]
    accuracies = [r.test_accuracy for r in records]
    if len(records) > 1:
        print(
            f"mean over {len(records)} seeds: final val loss {np.mean(losses):.4f}, "
            f"test accuracy {np.mean(accuracies):.4f}"
            + ("" if all(math.isfinite(x) for x in losses) else " (some runs diverged)")
        )
    return records


if __name__ == "__main__":
    main()
