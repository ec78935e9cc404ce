"""Run Arbiter from a YAML config: build the env, run one episode per seed, print what happened.

    python -m arbiter_env.agents.run_arbiter --config configs/arbiter/standalone.yaml
    python -m arbiter_env.agents.run_arbiter --config configs/arbiter/step_schedule.yaml seeds=[0,1]

``key=value`` arguments after the config override its entries (``agent.phi_lr=1e-4``). The public
functions :func:`load_run_config`, :func:`make_env` and :func:`run_arbiter` are what other
front ends (the ``arbiter`` CLI) call.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from arbiter_env.agents.arbiter import Arbiter, ArbiterConfig, Milestone
from arbiter_env.config import load_yaml
from arbiter_env.controllers import EpisodeRecord, StepCallback, run_episode
from arbiter_env.envs.actions import ActionEncodingName
from arbiter_env.envs.batch_size import BatchSizeEnv, EnvConfig

__all__ = [
    "ArbiterRunConfig",
    "format_record",
    "load_run_config",
    "main",
    "make_env",
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
