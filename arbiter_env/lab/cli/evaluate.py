"""``arbiter evaluate``: one episode per seed of a registered controller or a saved agent."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbiter_env.agents.saved import CheckpointRequest, open_saved_agent
from arbiter_env.config import apply_overrides
from arbiter_env.controllers import controller_entry
from arbiter_env.lab.cli import inputs
from arbiter_env.lab.cli.output import (
    logged_run,
    print_run_folder,
    print_summary,
    run_seeds,
)
from arbiter_env.tasks import is_family

LEARN_FOLDER = "learn"
"""``--learn``'s work folder inside the run folder (a search keeps its study there)."""


@dataclass
class _Contestant:
    """What evaluate plays: how to build its env and controller, and its name in the tables."""

    build_env: Callable[[], Any]
    load: Callable[[Any], Any]
    task: str
    name: str
    env: dict[str, Any]
    """The env arguments, as logged in the run's config."""

    def make(self) -> tuple[Any, Any]:
        # A fresh env as well as a fresh controller: what a seed gives then depends on nothing
        # run before it, exactly as in a comparison, where every run builds both.
        env = self.build_env()
        return env, self.load(env)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``arbiter evaluate``: one episode per seed of a controller or checkpoint, then a table.

    Every seed gets a fresh controller (built anew, or loaded anew from the checkpoint) unless
    ``--shared-agent`` or ``--learn`` asks for one controller across the seeds.
    """
    seeds, extra = inputs.split_seeds(args.seeds)
    overrides = [*extra, *args.overrides]
    task_items = [o.removeprefix("task.") for o in overrides if o.startswith("task.")]
    env_items = [o.removeprefix("env.") for o in overrides if o.startswith("env.")]
    task_overrides = inputs.task_overrides(args.task_override + task_items, args.task)
    env_args = inputs.env_args(args.env + env_items)
    kwargs = apply_overrides({}, [o for o in overrides if not o.startswith(("task.", "env."))])
    if inputs.looks_like_path(args.controller):
        contestant = _saved(args, task_overrides, env_args, kwargs)
    else:
        contestant = _registered(args, task_overrides, env_args, kwargs)
    shared = args.shared_agent or args.learn is not None
    split = args.split if is_family(contestant.task) else None
    config = {
        "command": "evaluate",
        "task": contestant.task,
        "family_split": split,
        "task_overrides": task_overrides,
        "env": contestant.env,
        "controller": args.controller,
        "controller_kwargs": kwargs,
        "seeds": seeds,
        "learn_timesteps": args.learn,
        "agent_per_seed": "shared" if shared else "fresh",
        "imports": args.imports,
        "threads": args.threads,
    }
    with logged_run(args, config, job="evaluate") as (log, progress):
        make = contestant.make
        if args.learn is not None:
            make = _learned(contestant, args.learn, log.run_dir / LEARN_FOLDER, progress)
        notes: list[str] = []
        records = run_seeds(
            log, progress, make, seeds, name=contestant.name, fresh=not shared, notes=notes
        )
    per_seed = "one controller shared across seeds" if shared else "a fresh controller per seed"
    where = f" ({split} instances)" if split else ""
    print_summary(records, title=f"{contestant.name} on {contestant.task}{where}; {per_seed}")
    for line in notes:  # e.g. which of Arbiter's two modes ran
        print(line)
    print_run_folder(log.run_dir)
    return 0


def _learned(
    contestant: _Contestant, timesteps: int, work_dir: Path, progress: Any
) -> Callable[[], tuple[Any, Any]]:
    """``--learn``: one controller, trained first with ``learn(timesteps, work_dir=...)``."""
    env, controller = contestant.make()
    learning = progress.add_task(f"{contestant.name}: learning", total=None)
    controller.learn(timesteps, work_dir=work_dir)
    progress.update(learning, visible=False)
    return lambda: (env, controller)


def _registered(
    args: argparse.Namespace,
    task_overrides: dict[str, Any],
    env_args: dict[str, Any],
    kwargs: dict[str, Any],
) -> _Contestant:
    """A registered controller, with its entry's env defaults unless ``-e`` sets them."""
    entry = controller_entry(args.controller)
    if entry.needs_training and args.learn is None and "checkpoint" not in kwargs:
        raise ValueError(
            f"--controller {args.controller} without a checkpoint would evaluate an untrained "
            f"policy. Pass a checkpoint folder (--controller runs/.../final), "
            f"checkpoint=FOLDER, or --learn TIMESTEPS to train it first."
        )
    task = args.task or inputs.DEFAULT_TASK
    family_split = args.split if is_family(task) else None
    # The controller's env defaults (Arbiter: continuous actions) unless -e sets them.
    env_args = entry.env_defaults | env_args
    contestant = _Contestant(
        build_env=lambda: inputs.make_env(task, task_overrides, family_split, env_args=env_args),
        load=lambda env: inputs.make_controller(args.controller, env, kwargs),
        task=task,
        name=args.controller,
        env=env_args,
    )
    return _built_once(contestant)


def _built_once(contestant: _Contestant) -> _Contestant:
    """``contestant``, built once here so that bad arguments or a damaged checkpoint fail early.

    Early means before a run folder exists.
    """
    _, probe = contestant.make()
    close = getattr(probe, "close", None)
    if callable(close):
        close()  # an online learner's hooks must not outlive it
    return contestant


def _saved(
    args: argparse.Namespace,
    task_overrides: dict[str, Any],
    env_args: dict[str, Any],
    kwargs: dict[str, Any],
) -> _Contestant:
    """A saved agent at the path ``--controller`` names."""
    checkpoint = Path(args.controller).expanduser()
    if not checkpoint.exists():
        raise FileNotFoundError(
            f"--controller {args.controller}: no checkpoint folder there (a path was given: "
            "it has a separator or starts with '.', '/' or '~'; a registered controller is "
            "named without one, see `arbiter controllers`)."
        )
    request = CheckpointRequest(
        path=checkpoint,
        task=args.task,
        task_overrides=task_overrides,
        split=args.split,
        kwargs=kwargs,
        env_args=env_args,
        trusted=args.trust_checkpoint,
        default_task=inputs.DEFAULT_TASK,
    )
    saved = open_saved_agent(request, inputs.make_env)
    name = checkpoint.name if checkpoint.name not in ("final", "") else str(checkpoint)
    return _built_once(_Contestant(saved.build_env, saved.load, saved.task, name, env_args))
