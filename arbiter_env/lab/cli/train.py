"""``arbiter train``: every agent through its registry entry's training, one path for all."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from arbiter_env.config import ConfigError, check_config_file, plain, read_config_mapping
from arbiter_env.controllers import (
    TrainRequest,
    controller_entry,
    inline_value,
    trainable_controllers,
)
from arbiter_env.lab.cli import inputs
from arbiter_env.lab.cli.output import (
    logged_run,
    print_run_folder,
    print_summary,
    print_training,
    run_seeds,
)
from arbiter_env.tasks import is_family, list_tasks
from arbiter_env.user_code import import_modules, share_with_workers


def cmd_train(args: argparse.Namespace) -> int:
    """``arbiter train``: resolve the agent's config, train with logging, summarise."""
    agents = trainable_controllers()
    if args.agent not in agents:
        raise ValueError(f"Unknown agent {args.agent!r}; use one of {', '.join(agents)}.")
    plan = controller_entry(args.agent).training.prepare(_request(args))
    logged = plan.config | {"imports": args.imports, "threads": args.threads}
    with logged_run(args, logged, job=f"train-{args.agent}") as (log, progress):
        bar = progress.add_task(f"{args.agent}: training on {plan.task}", total=plan.total)
        try:
            outcome = plan.run(log, lambda done: progress.update(bar, completed=done))
        except KeyboardInterrupt:
            _print_resume_hint(args, log.run_dir, plan.interrupted(log.run_dir))
            raise
        progress.update(bar, completed=plan.total, visible=False)
        training = list(log.episodes)
        records = list(outcome.records)
        held_out = outcome.evaluation
        if held_out is not None:
            records += run_seeds(
                log,
                progress,
                lambda: (held_out.env, held_out.controller),
                held_out.seeds,
                name=held_out.name,
                fresh=False,
                deterministic=held_out.deterministic,
                extra=held_out.extra,
            )
    if outcome.training_episodes:
        print_training(training, outcome.checkpoint)
    if records:
        print_summary(records, title=outcome.title)
    for line in outcome.notes:
        print(line)
    print_run_folder(log.run_dir)
    return 0


def _request(args: argparse.Namespace) -> TrainRequest:
    """The checked command line as a :class:`TrainRequest` (the config's imports imported)."""
    if args.config is not None:
        check_config_file(args.config)
    if args.resume is not None and not args.trust_checkpoint:
        raise ValueError(
            f"--resume {args.resume}: resuming unpickles the checkpoint's training state, which "
            "runs any code its author put there; add --trust-checkpoint if you made or trust it."
        )
    file_data = _read_config_imports(args)  # imports: first, they may register the task
    if args.task is not None and not (is_family(args.task) or args.task in list_tasks()):
        inputs.make_env(args.task, {})  # raises the registry's "unknown task" message
    inputs.task_overrides(args.task_override, args.task)  # checks names and types early
    # -e KEY=VALUE and trailing env.KEY=VALUE: environment arguments, checked here.
    env_items = [o.removeprefix("env.") for o in args.overrides if o.startswith("env.")]
    args.env_args = inputs.env_args(args.env + env_items)
    args.overrides = [o for o in args.overrides if not o.startswith("env.")]
    return TrainRequest(
        agent=args.agent,
        task=args.task,
        task_overrides=list(args.task_override),
        env_args=args.env_args,
        seed=args.seed,
        config_file=args.config,
        file_data=file_data,
        overrides=list(args.overrides),
        resume=args.resume,
        evaluate=not args.no_eval,
    )


def _read_config_imports(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--config`` YAML as a mapping, after importing the modules of its ``imports:``."""
    if args.config is None:
        return {}
    data = read_config_mapping(args.config)
    modules = data.pop("imports", None) or []
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError(f"{args.config}: imports: expected a list of module names.")
    share_with_workers(import_modules(modules, source=f"{args.config}: imports"))
    args.imports = list(dict.fromkeys([*args.imports, *modules]))
    return data


def _print_resume_hint(args: argparse.Namespace, run_dir: Path, resume: Path | str | None) -> None:
    """After an interruption: where the run is and the exact command that continues it."""
    if resume is None:
        return
    if isinstance(resume, str):
        print(resume, file=sys.stderr)
        return
    print(
        f"Interrupted. The run folder is {run_dir}; its latest checkpoint is {resume}. "
        f"Resume with:\n  {shlex.join(_resume_command(args, run_dir, resume))}",
        file=sys.stderr,
    )


def _resume_command(args: argparse.Namespace, run_dir: Path, checkpoint: Path) -> list[str]:
    """The command line that continues this run from ``checkpoint``."""
    command = ["arbiter", "train", "--agent", args.agent]
    if args.task:
        command += ["--task", args.task]
    if args.config is not None:
        command += ["--config", str(args.config)]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    for item in args.task_override:
        command += ["-t", item]
    for key, value in (getattr(args, "env_args", None) or {}).items():
        command += ["-e", f"{key}={inline_value(plain(value))}"]
    for module in getattr(args, "imports", None) or []:
        command += ["--import", module]
    if getattr(args, "threads", None) is not None:
        command += ["--threads", str(args.threads)]
    command += ["--run-dir", str(run_dir), "--resume", str(checkpoint), "--trust-checkpoint"]
    if args.no_eval:
        command.append("--no-eval")
    if args.wandb:
        command += ["--wandb", args.wandb]
    return command + list(args.overrides)
