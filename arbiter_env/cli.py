"""The ``arbiter`` command line: run, train and evaluate batch-size controllers.

::

    arbiter tasks                                    # tasks and task families
    arbiter controllers                              # registered controllers
    arbiter episode --task digits-mlp --batch-size 64 [--seed 0] [epochs=1 ...]
    arbiter train --agent ppo|arbiter --task digits-mlp [--config FILE] [key=value ...]
    arbiter evaluate --controller NAME_OR_CHECKPOINT --task digits-mlp --seeds 0 1 2 [key=value ...]

Every command that runs training writes a run folder (default ``runs/<timestamp>-<job>``) with the
resolved config, local JSONL logs and the W&B run (offline unless an API key is configured); see
``docs/logging_and_cli.md``. This module only parses and dispatches: the work happens in
:mod:`arbiter_env.runlog`, the environment, the controller registry and the agents' own
training functions.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import math
import os
import statistics
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np

from arbiter_env.config import ConfigError, apply_overrides, from_dict
from arbiter_env.runfolder import RunFolderBusy, RunFolderLock
from arbiter_env.runlog.writers import WANDB_MODES
from arbiter_env.user_code import (
    add_import_option,
    add_working_folder,
    import_modules,
    share_with_workers,
)

EXIT_USAGE = 2
DEFAULT_TASK = "digits-mlp"
DEFAULT_THREADS = 1

# Agents that `arbiter train` knows: the stable-baselines3 algorithms (trained by
# arbiter_env.agents.sb3) and Arbiter (run by arbiter_env.agents.run_arbiter).
RL_AGENTS = ("ppo", "a2c", "dqn", "sac", "td3")
AGENTS = (*RL_AGENTS, "arbiter")


# --- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``arbiter`` command."""
    parser = argparse.ArgumentParser(
        prog="arbiter",
        description="Neural-network training as an environment whose action is the batch size.",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tasks = commands.add_parser("tasks", help="list tasks and task families")
    add_import_option(tasks)
    tasks.set_defaults(handler=cmd_tasks)

    controllers = commands.add_parser("controllers", help="list registered controllers")
    add_import_option(controllers)
    controllers.set_defaults(handler=cmd_controllers)

    episode = commands.add_parser(
        "episode",
        help="run one episode with a fixed batch size",
        description="Runs one episode with a fixed batch size and prints what happened. "
        "Trailing key=value pairs override task fields (e.g. epochs=1 optimizer.lr=0.1).",
    )
    _add_task_options(episode)
    episode.add_argument("--batch-size", type=int, required=True, help="the fixed batch size")
    episode.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    episode.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="task field overrides (env.KEY=VALUE: an env argument)",
    )
    _add_run_options(episode)
    episode.set_defaults(handler=cmd_episode)

    train = commands.add_parser(
        "train",
        help="train an agent (PPO and other SB3 algorithms, or Arbiter)",
        description="Trains an agent. Trailing key=value pairs override the agent's config "
        "(dotted keys reach nested sections, e.g. hyperparams.n_steps=64 for PPO or "
        "agent.phi_lr=1e-4 for Arbiter; env.KEY=VALUE for an env argument). RL agents are then "
        "evaluated on held-out seeds. Arbiter writes a checkpoint folder, RUN_DIR/checkpoint, "
        "that evaluate and compare load.",
    )
    train.add_argument("--agent", required=True, help=f"one of {', '.join(AGENTS)}")
    _add_task_options(train, default=None)
    train.add_argument("--config", type=Path, help="YAML config file")
    train.add_argument("--seed", type=int, help="training seed")
    train.add_argument(
        "--resume",
        type=Path,
        metavar="CHECKPOINT",
        help="RL: continue training from a checkpoint folder (its model.zip is SB3's format, "
        "partly cloudpickle, so it can run code: resume only from checkpoints you trust)",
    )
    train.add_argument(
        "--no-eval", action="store_true", help="RL: skip the held-out evaluation after training"
    )
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    _add_run_options(train)
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a controller or a trained agent on seeds",
        description="Runs one episode per seed, each with a fresh controller (built anew or "
        "loaded anew from the checkpoint), so a seed's result does not depend on the seeds run "
        "before it; --shared-agent keeps one controller across the seeds instead. Trailing "
        "key=value pairs are the controller's keyword arguments (e.g. batch_size=64 for "
        "'fixed'); task.KEY=VALUE overrides a task field, env.KEY=VALUE sets an env argument.",
    )
    evaluate.add_argument(
        "--controller",
        required=True,
        metavar="NAME_OR_CHECKPOINT",
        help="a registered controller name, an RL checkpoint folder (arbiter train, or an "
        "rl-zoo3 model .zip or its folder), or an Arbiter checkpoint folder (a path: ./x, /x, "
        "a/b or x.zip; a bare name is always a controller). An arbiter train checkpoint is "
        "loaded without unpickling anything from it (its pickled entries are rebuilt from its "
        "config.yaml); an rl-zoo3 model is read with stable-baselines3's loader and its "
        "vecnormalize.pkl with pickle, which can run code: use only zoo models you trust",
    )
    evaluate.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="load an arbiter train checkpoint with stable-baselines3's own loader, which "
        "unpickles parts of model.zip (and a legacy vecnormalize.pkl) and so can run code its "
        "author put there: only for checkpoints you made or trust",
    )
    _add_task_options(evaluate, default=None)
    evaluate.add_argument(
        "--seeds", nargs="+", default=["0", "1", "2"], metavar="SEED", help="(default 0 1 2)"
    )
    evaluate.add_argument(
        "--split",
        choices=("train", "test"),
        default="test",
        help="instances of a task family to evaluate on (default: the held-out test split)",
    )
    evaluate.add_argument(
        "--learn",
        nargs="?",
        type=int,
        const=0,
        metavar="TIMESTEPS",
        help="call the controller's learn(TIMESTEPS) first: HPO baselines run their search "
        "(their own trial budget), an untrained RL agent trains in the env; the learned "
        "controller then plays every seed (implies --shared-agent)",
    )
    evaluate.add_argument(
        "--shared-agent",
        action="store_true",
        help="one controller for all seeds, in order (an online learner such as Arbiter then "
        "carries what it learned from one seed into the next)",
    )
    evaluate.add_argument("overrides", nargs="*", metavar="key=value", help="controller kwargs")
    _add_run_options(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    from arbiter_env.experiments.commands import add_comparison_subcommands  # compare, plot

    add_comparison_subcommands(commands)
    return parser


def _add_task_options(parser: argparse.ArgumentParser, default: str | None = DEFAULT_TASK) -> None:
    where = f"default {default}" if default else "default: the config's or checkpoint's"
    parser.add_argument("--task", default=default, help=f"task or task family ({where})")
    parser.add_argument(
        "-t",
        "--task-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a task field, e.g. -t epochs=1 -t optimizer.lr=0.1 (repeatable)",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment argument, e.g. -e action_encoding=continuous -e num_intervals=10 "
        "(repeatable)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        metavar="N",
        help=f"torch intra-op threads (default {DEFAULT_THREADS}: the fastest for the small "
        "built-in networks, several times faster than torch's default on a busy machine; "
        "0 keeps torch's default; raise it for large networks trained on the CPU)",
    )
    add_import_option(parser)
    parser.add_argument("--run-dir", type=Path, help="run folder (default runs/<timestamp>-<job>)")
    parser.add_argument(
        "--wandb",
        choices=WANDB_MODES,
        help="W&B mode (default: WANDB_MODE, else online if an API key is set, else offline)",
    )
    parser.add_argument("--group", help="W&B group (runs of one experiment)")
    parser.add_argument("--tag", action="append", default=[], help="W&B tag (repeatable)")


# --- entry point --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``arbiter`` command; returns the exit status (2 for bad arguments)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its message
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        # As with `python -m`: modules in the working folder are importable (--import, imports:).
        add_working_folder()
        share_with_workers(import_modules(getattr(args, "imports", None) or []))
        _set_threads(getattr(args, "threads", None))
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, RunFolderBusy) as error:  # ConfigError: ValueError
        if args.traceback:
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# --- commands -----------------------------------------------------------------------------------


def cmd_tasks(args: argparse.Namespace) -> int:
    """``arbiter tasks``: a table of tasks and one of task families."""
    from rich.table import Table

    from arbiter_env.tasks import (
        get_family,
        list_families,
        list_tasks,
        make_task,
        needs_data_files,
    )

    table = Table(
        title="Tasks",
        caption="data: 'built in' needs nothing; 'local files' reads files you already have "
        "from data_dir (-t data_dir=PATH, or $ARBITER_DATA_DIR, default ~/data)",
    )
    table.add_column("task", no_wrap=True)
    table.add_column("data", no_wrap=True)
    for column in ("optimizer", "lr", "momentum", "epochs", "intervals", "batch", "start"):
        table.add_column(column, justify="left" if column == "optimizer" else "right")
    for name in list_tasks():
        task = make_task(name)  # cheap: data and model are built lazily
        opt = task.optimizer
        table.add_row(
            name,
            "local files" if needs_data_files(name) else "built in",
            opt.name,
            f"{opt.lr:g}",
            f"{opt.momentum:g}" if opt.name == "sgd" else "-",
            f"{task.epochs:g}",
            str(task.num_intervals),
            f"{task.batch_min}-{task.batch_max}",
            str(task.batch_start),
        )
    _console().print(table)
    families = Table(title="Task families")
    families.add_column("family", no_wrap=True)
    for column in ("base task", "lr range", "momenta", "widths", "epochs"):
        families.add_column(column)
    for name in list_families():
        family = get_family(name)
        families.add_row(
            name,
            family.base_task,
            f"{family.lr_range[0]:g}..{family.lr_range[1]:g}",
            ", ".join(f"{m:g}" for m in family.momenta),
            ", ".join(map(str, family.widths)) or "base",
            ", ".join(f"{e:g}" for e in family.epochs) or "base",
        )
    _console().print(families)
    return 0


def cmd_controllers(args: argparse.Namespace) -> int:
    """``arbiter controllers``: the registered controllers, one line of description each."""
    from arbiter_env.controller_registry import describe_controller, list_controllers

    names = list_controllers()
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:<{width}}  {describe_controller(name)}".rstrip())
    return 0


def cmd_episode(args: argparse.Namespace) -> int:
    """``arbiter episode``: one seeded episode with a fixed batch size, then a summary."""
    env_items = [o.removeprefix("env.") for o in args.overrides if o.startswith("env.")]
    trailing = [o.removeprefix("task.") for o in args.overrides if not o.startswith("env.")]
    task_overrides = _task_overrides(args.task_override + trailing, args.task)
    env_args = _env_args(args.env + env_items)
    env = _make_env(args.task, task_overrides, env_args=env_args)
    _check_reachable(env, args.batch_size, args.task)
    controller = _make_controller("fixed", env, {"batch_size": args.batch_size})
    config = {
        "command": "episode",
        "task": args.task,
        "task_overrides": task_overrides,
        "env": env_args,
        "controller": "fixed",
        "controller_kwargs": {"batch_size": args.batch_size},
        "seeds": [args.seed],
        "imports": args.imports,
        "threads": args.threads,
    }
    with _logged_run(args, config, job="episode") as (log, progress):
        records = _run_seeds(log, progress, env, controller, [args.seed], name="fixed")
    _print_intervals(records[0])
    _print_summary(records, title=f"{args.task}: fixed batch size {args.batch_size}")
    _print_run_folder(log.run_dir)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``arbiter evaluate``: one episode per seed of a controller or checkpoint, then a table.

    Every seed gets a fresh controller (built anew, or loaded anew from the checkpoint) unless
    ``--shared-agent`` or ``--learn`` asks for one controller across the seeds.
    """
    seeds, extra = _split_seeds(args.seeds)
    overrides = [*extra, *args.overrides]
    task_items = [o.removeprefix("task.") for o in overrides if o.startswith("task.")]
    env_items = [o.removeprefix("env.") for o in overrides if o.startswith("env.")]
    task_overrides = _task_overrides(args.task_override + task_items, args.task)
    env_args = _env_args(args.env + env_items)
    controller_kwargs = apply_overrides(
        {}, [o for o in overrides if not o.startswith(("task.", "env."))]
    )
    checkpoint = Path(args.controller).expanduser()
    if _looks_like_path(args.controller):
        if not checkpoint.exists():
            raise FileNotFoundError(
                f"--controller {args.controller}: no checkpoint folder there (a path was given: "
                "it has a separator or starts with '.', '/' or '~'; a registered controller is "
                "named without one, see `arbiter controllers`)."
            )
        build_env, load, task = _checkpoint_controller(
            checkpoint,
            args.task,
            task_overrides,
            args.split,
            controller_kwargs,
            env_args,
            trusted=args.trust_checkpoint,
        )
        name = checkpoint.name if checkpoint.name not in ("final", "") else str(checkpoint)
    else:
        if (
            args.controller in RL_AGENTS
            and args.learn is None
            and "checkpoint" not in (controller_kwargs)
        ):
            raise ValueError(
                f"--controller {args.controller} without a checkpoint would evaluate an untrained "
                f"policy. Pass a checkpoint folder (--controller runs/.../final), "
                f"checkpoint=FOLDER, or --learn TIMESTEPS to train it first."
            )
        task = args.task or DEFAULT_TASK
        family_split = args.split if _is_family(task) else None
        from arbiter_env.controller_registry import controller_env_defaults

        # The controller's env defaults (Arbiter: continuous actions) unless -e sets them.
        env_args = controller_env_defaults(args.controller) | env_args

        def build_env() -> Any:
            return _make_env(task, task_overrides, family_split, env_args=env_args)

        def load(env: Any) -> Any:
            return _make_controller(args.controller, env, controller_kwargs)

        probe = load(build_env())
        if "run_dir" not in controller_kwargs and hasattr(
            getattr(probe, "config", None), "run_dir"
        ):
            # A search keeps its study in the run folder, beside the logs of the same run.
            from arbiter_env.runlog import make_run_dir

            args.run_dir = Path(args.run_dir or make_run_dir("evaluate"))
            controller_kwargs["run_dir"] = str(args.run_dir / "hpo")
        close = getattr(probe, "close", None)
        if callable(close):
            close()  # an online learner's hooks must not outlive it
        name = args.controller

    def make() -> tuple[Any, Any]:
        # A fresh env as well as a fresh controller: what a seed gives then depends on nothing
        # run before it, exactly as in a comparison, where every run builds both.
        env = build_env()
        return env, load(env)

    shared = args.shared_agent or args.learn is not None
    split = args.split if _is_family(task) else None
    config = {
        "command": "evaluate",
        "task": task,
        "family_split": split,
        "task_overrides": task_overrides,
        "env": env_args,
        "controller": args.controller,
        "controller_kwargs": controller_kwargs,
        "seeds": seeds,
        "learn_timesteps": args.learn,
        "agent_per_seed": "shared" if shared else "fresh",
        "imports": args.imports,
        "threads": args.threads,
    }
    with _logged_run(args, config, job="evaluate") as (log, progress):
        if shared:
            env, controller = make()
            if args.learn is not None:
                learning = progress.add_task(f"{name}: learning", total=None)
                controller.learn(args.learn)
                progress.update(learning, visible=False)
            records = _run_seeds(log, progress, env, controller, seeds, name=name)
        else:
            records = _run_seeds(log, progress, None, None, seeds, name=name, make=make)
    per_seed = "one controller shared across seeds" if shared else "a fresh controller per seed"
    where = f" ({split} instances)" if split else ""
    _print_summary(records, title=f"{name} on {task}{where}; {per_seed}")
    _print_run_folder(log.run_dir)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``arbiter train``: resolve the agent's config, train with logging, summarise."""
    if args.agent not in AGENTS:
        raise ValueError(f"Unknown agent {args.agent!r}; use one of {', '.join(AGENTS)}.")
    if args.config is not None and not args.config.is_file():
        raise FileNotFoundError(f"Config file {args.config} does not exist.")
    args.file_data = _read_config_imports(args)  # imports: first, they may register the task
    if args.task is not None and not (_is_family(args.task) or args.task in _list_tasks()):
        _make_env(args.task, {})  # raises the registry's "unknown task" message
    _task_overrides(args.task_override, args.task)  # checks names and types early
    # -e KEY=VALUE and trailing env.KEY=VALUE: environment arguments, checked here.
    env_items = [o.removeprefix("env.") for o in args.overrides if o.startswith("env.")]
    args.env_args = _env_args(args.env + env_items)
    args.overrides = [o for o in args.overrides if not o.startswith("env.")]
    if args.agent == "arbiter":
        if args.resume is not None:
            raise ValueError("--resume applies to RL agents; Arbiter learns within each episode.")
        return _train_arbiter(args)
    return _train_rl(args)


def _train_rl(args: argparse.Namespace) -> int:
    """PPO and friends, through ``arbiter_env.agents.sb3``."""
    sb3 = _require("arbiter_env.agents.sb3", "training RL agents")
    from arbiter_env.agents.sb3_logging import IntervalLoggingCallback

    overrides = [f"env.task_kwargs.{item}" for item in args.task_override]
    overrides += [f"env.{key}={_inline(value)}" for key, value in args.env_args.items()]
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.config is not None:
        overrides.insert(0, f"algo={args.agent}")  # --agent wins over the file
        config = sb3.resolve_agent_config(
            args.file_data, task=args.task, overrides=[*overrides, *args.overrides]
        )
    else:
        config = sb3.load_agent_config(
            args.agent, task=args.task, overrides=[*overrides, *args.overrides]
        )
    _preflight_rl(sb3, config, args.resume)
    logged = sb3.agent_config_dict(config) | {"imports": args.imports, "threads": args.threads}
    with _logged_run(args, logged, job=f"train-{args.agent}") as (
        log,
        progress,
    ):
        if args.resume is not None and _inside(args.resume, log.run_dir):
            # Resuming in the run's own folder: drop what the interrupted run logged after the
            # checkpoint (it is trained again) and keep counting samples and episodes.
            kept = log.continue_from(sb3.checkpoint_timesteps(args.resume))
            if kept["dropped"]:
                print(
                    f"Resuming in {log.run_dir}: dropped {kept['dropped']} interval rows logged "
                    f"after the checkpoint; {kept['kept']} kept.",
                    file=sys.stderr,
                )
        bar = progress.add_task(
            f"{args.agent}: training on {config.env.task} (env steps)",
            total=config.total_timesteps,
        )
        callback = IntervalLoggingCallback(
            log,
            controller=args.agent,
            forward_sb3_logger=True,
            progress=lambda steps: progress.update(bar, completed=steps),
        )
        try:
            checkpoint = sb3.train_rl_agent(
                config, log.run_dir, callbacks=[callback], resume_from=args.resume
            )
        except KeyboardInterrupt:
            _print_resume_hint(args, log.run_dir, sb3.latest_checkpoint(log.run_dir))
            raise
        progress.update(bar, visible=False)
        training = list(log.episodes)
        records = []
        if not args.no_eval:
            env = config.env.make("test")
            controller = sb3.load_rl_controller(checkpoint, env, device=config.device)
            records = _run_seeds(
                log,
                progress,
                env,
                controller,
                config.evaluation.seeds(),
                name=f"{args.agent}-eval",
                deterministic=config.evaluation.deterministic,
                extra={"phase": "eval"},
            )
    _print_training(training, checkpoint)
    if records:
        held_out = "held-out seeds" + (" and test instances" if _is_family(config.env.task) else "")
        _print_summary(records, title=f"{args.agent} on {config.env.task}, {held_out}")
    _print_run_folder(log.run_dir)
    return 0


def _preflight_rl(sb3: Any, config: Any, resume: Path | None) -> None:
    """Everything ``arbiter train`` can check before it creates a run folder, all at once.

    The training and evaluation environments are built (task overrides, env settings, data
    files), the algorithm is checked against their action spaces, and the checkpoint to resume
    from must exist and hold the same algorithm. One line per problem, exit status 2.
    """
    problems: list[str] = []
    if resume is not None:
        try:
            saved = sb3.load_checkpoint_config(resume)
            if saved.algo != config.algo:
                problems.append(f"--resume {resume}: it holds a {saved.algo!r} agent.")
        except (FileNotFoundError, ValueError) as error:
            problems.append(f"--resume {resume}: {_first_line(error)}")
    for split in ("train", "test"):
        try:
            env = config.env.make(split)
        except (ValueError, TypeError, FileNotFoundError) as error:
            problems.append(f"env ({split}): {_first_line(error)}")
            continue
        try:
            sb3.check_action_space(config.algo, env.action_space)
        except ValueError as error:
            problems.append(f"{config.algo}: {_first_line(error)}")
        if not _is_family(config.env.task):
            break  # one task: the evaluation env is built the same way
    problems = list(dict.fromkeys(problems))
    if problems:
        raise ConfigError(
            f"{len(problems)} problem(s), nothing was run:\n"
            + "\n".join(f"  {problem}" for problem in problems)
        )


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


def _print_resume_hint(args: argparse.Namespace, run_dir: Path, checkpoint: Path | None) -> None:
    """After an interruption: where the run is and the exact command that continues it."""
    import shlex

    if checkpoint is None:
        print(
            f"Interrupted before the first checkpoint; nothing to resume in {run_dir}. Set "
            "checkpoint_every=N to save checkpoints during training.",
            file=sys.stderr,
        )
        return
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
        command += ["-e", f"{key}={_inline(value)}"]
    for module in getattr(args, "imports", None) or []:
        command += ["--import", module]
    if getattr(args, "threads", None) is not None:
        command += ["--threads", str(args.threads)]
    command += ["--run-dir", str(run_dir), "--resume", str(checkpoint)]
    if args.no_eval:
        command.append("--no-eval")
    if args.wandb:
        command += ["--wandb", args.wandb]
    command += list(args.overrides)
    print(
        f"Interrupted. The run folder is {run_dir}; its latest checkpoint is {checkpoint}. "
        f"Resume with:\n  {shlex.join(command)}",
        file=sys.stderr,
    )


def _train_arbiter(args: argparse.Namespace) -> int:
    """Arbiter, through ``arbiter_env.agents.run_arbiter``."""
    runner = _require("arbiter_env.agents.run_arbiter", "running Arbiter")
    from arbiter_env.agents.arbiter_checkpoint import CHECKPOINT_FILE, RUN_CONFIG_FILE
    from arbiter_env.config import save_yaml, to_dict

    overrides = [f"task={args.task}"] if args.task else []
    overrides += [f"task_kwargs.{item}" for item in args.task_override]
    unsupported = sorted(set(args.env_args) - set(_ARBITER_ENV_KEYS))
    if unsupported:
        raise ConfigError(
            f"Arbiter's run config takes the env arguments {', '.join(_ARBITER_ENV_KEYS)}; "
            f"got {', '.join(unsupported)}."
        )
    overrides += [f"{key}={_inline(value)}" for key, value in args.env_args.items()]
    if args.seed is not None:
        overrides.append(f"seeds=[{args.seed}]")
    overrides += args.overrides
    data = args.file_data if args.config is not None else {}
    config = from_dict(runner.ArbiterRunConfig, apply_overrides(data, overrides))
    env = runner.make_env(config)
    logged = to_dict(config) | {"imports": args.imports, "threads": args.threads}
    with _logged_run(args, logged, job="train-arbiter") as (log, progress):
        log.describe(env)  # the resolved task and env arguments, in config.yaml and wandb.config
        if config.save_path is None:
            # The checkpoint folder: the agent and the run config that rebuilds its env.
            folder = log.run_dir / "checkpoint"
            folder.mkdir(parents=True, exist_ok=True)
            config = dataclasses.replace(config, save_path=str(folder / CHECKPOINT_FILE))
        checkpoint = Path(config.save_path)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_yaml(config, checkpoint.parent / RUN_CONFIG_FILE)
        total = len(config.seeds) * env.unwrapped.task.num_intervals
        bar = progress.add_task(f"arbiter: episodes on {config.task} (intervals)", total=total)
        on_step = log.on_step(controller="arbiter", then=lambda r, i: progress.advance(bar))
        records = runner.run_arbiter(config, env, on_step=on_step)
        progress.update(bar, completed=total, visible=False)
        for record in records:
            log.log_episode(record, controller="arbiter")
    _print_summary(records, title=f"Arbiter on {config.task}")
    after = (
        f"after learning {config.learn_timesteps} steps and playing every seed"
        if config.learn_timesteps > 0
        else f"the agent of the last seed, {config.seeds[-1]}"
    )
    print(f"checkpoint: {checkpoint.parent} ({after})")
    print(f"evaluate it with: arbiter evaluate --controller {checkpoint.parent}")
    _print_run_folder(log.run_dir)
    return 0


# ArbiterRunConfig's environment fields (the rest of the env's arguments keep their defaults).
_ARBITER_ENV_KEYS = ("action_encoding", "num_intervals", "lr_scaling")


def _read_config_imports(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--config`` YAML as a mapping, after importing the modules of its ``imports:``."""
    import yaml

    if args.config is None:
        return {}
    data = yaml.safe_load(args.config.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{args.config}: the top level must be a mapping of keys to values.")
    modules = data.pop("imports", None) or []
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError(f"{args.config}: imports: expected a list of module names.")
    share_with_workers(import_modules(modules, source=f"{args.config}: imports"))
    args.imports = list(dict.fromkeys([*args.imports, *modules]))
    return data


def _inline(value: Any) -> str:
    """A value as the right-hand side of a ``key=value`` override."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...")


# --- helpers: building things -------------------------------------------------------------------


def _list_tasks() -> list[str]:
    from arbiter_env.tasks import list_tasks

    return list_tasks()


def _is_family(task: str) -> bool:
    from arbiter_env.tasks import is_family

    return is_family(task)


def _task_overrides(items: list[str], task: str | None = None) -> dict[str, Any]:
    """``key=value`` task overrides as a dict, checked against the :class:`Task` fields' types.

    Arguments of the task's builder (``data_dir`` for the file-backed tasks) are accepted too.
    """
    from arbiter_env.tasks import Task
    from arbiter_env.tasks.registry import builder_arguments

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


def _make_env(
    task: str,
    task_overrides: dict[str, Any],
    split: str | None = None,
    *,
    env_args: dict[str, Any] | None = None,
) -> Any:
    from arbiter_env.env import BatchSizeEnv

    try:
        return BatchSizeEnv(
            task, task_kwargs=task_overrides or None, family_split=split, **(env_args or {})
        )
    except TypeError as error:  # a value of the right type but of a form the task rejects
        raise ValueError(f"Task {task!r}: {error}") from None


def _env_keys() -> list[str]:
    """The ``BatchSizeEnv`` arguments that ``-e KEY=VALUE`` may set."""
    import inspect

    from arbiter_env.env import BatchSizeEnv

    fixed = {"self", "task", "task_kwargs", "family_split", "render_mode"}
    parameters = inspect.signature(BatchSizeEnv.__init__).parameters
    return [name for name in parameters if name not in fixed]


def _env_args(items: list[str]) -> dict[str, Any]:
    """``-e KEY=VALUE`` items as ``BatchSizeEnv`` keyword arguments, with their names checked."""
    env_args = apply_overrides({}, items)
    keys = _env_keys()
    unknown = sorted(set(env_args) - set(keys))
    if unknown:
        raise ConfigError(
            f"Unknown env argument(s) {', '.join(unknown)}; valid: {', '.join(keys)} "
            "(task fields go in -t KEY=VALUE)."
        )
    return env_args


def _set_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op threads for this process (0 or ``None``: torch's default)."""
    if threads is None or threads == 0:
        return
    if threads < 0:
        raise ValueError(f"--threads must be >= 0, got {threads}.")
    import torch

    torch.set_num_threads(threads)


def _make_controller(name: str, env: Any, kwargs: dict[str, Any]) -> Any:
    from arbiter_env.controller_registry import make_controller

    try:
        return make_controller(name, env, **kwargs)
    except TypeError as error:  # keyword arguments the factory does not take
        raise ValueError(f"Controller {name!r}: {error}") from None


def _checkpoint_controller(
    checkpoint: Path,
    task: str | None,
    task_overrides: dict[str, Any],
    split: str,
    kwargs: dict[str, Any],
    env_args: dict[str, Any],
    *,
    trusted: bool = False,
) -> tuple[Any, Any, str]:
    """A saved agent: ``(build_env, load, task)``, the env built like its training env.

    ``build_env()`` makes a new env, ``load(env)`` a new controller from the checkpoint.

    Arbiter checkpoint folders (``arbiter train --agent arbiter``), RL checkpoint folders
    (``arbiter train --agent ppo``) and models saved by rl-zoo3 (a ``.zip``, with the zoo's
    ``vecnormalize.pkl`` beside it if any).
    """
    from arbiter_env.agents.arbiter_checkpoint import (
        is_arbiter_checkpoint,
        make_arbiter,
        read_run_config,
    )

    if is_arbiter_checkpoint(checkpoint):
        saved = read_run_config(checkpoint)
        task = task or saved.get("task", DEFAULT_TASK)
        saved_env = {k: saved[k] for k in _ARBITER_ENV_KEYS if saved.get(k) is not None}
        task_kwargs = {**(saved.get("task_kwargs") or {}), **task_overrides}
        return (
            lambda: _make_env(task, task_kwargs, env_args={**saved_env, **env_args}),
            lambda env: make_arbiter(env, checkpoint=checkpoint, **kwargs),
            task,
        )
    sb3 = _require("arbiter_env.agents.sb3", "loading RL checkpoints")
    if kwargs:
        raise ValueError(f"A checkpoint takes no controller arguments; got {sorted(kwargs)}.")
    from arbiter_env.agents import zoo

    if zoo.is_zoo_model(checkpoint):
        # The env as the zoo built it: its --env-kwargs, under the command line's settings.
        trained = dict(zoo.read_zoo_args(checkpoint).get("env_kwargs") or {})
        task = task or trained.pop("task", None) or DEFAULT_TASK
        task_overrides = {**(trained.pop("task_kwargs", None) or {}), **task_overrides}
        keys = _env_keys()
        env_args = {k: v for k, v in trained.items() if k in keys} | env_args
        family_split = split if _is_family(task) else None
        return (
            lambda: _make_env(task, task_overrides, family_split, env_args=env_args),
            lambda env: zoo.load_zoo_controller(checkpoint, env),
            task,
        )
    saved = sb3.load_checkpoint_config(checkpoint)
    env_fields = {f.name for f in dataclasses.fields(saved.env)}
    unsupported = sorted(set(env_args) - env_fields)
    if unsupported:
        raise ConfigError(
            f"An RL checkpoint's env takes {', '.join(sorted(env_fields))}; got "
            f"{', '.join(unsupported)}."
        )
    env_config = dataclasses.replace(
        saved.env,
        task=task or saved.env.task,
        task_kwargs={**saved.env.task_kwargs, **task_overrides},
        **env_args,
    )
    return (
        lambda: env_config.make(split),
        lambda env: sb3.load_rl_controller(checkpoint, env, device=saved.device, trusted=trusted),
        env_config.task,
    )


def _check_reachable(env: Any, batch_size: int, task: str) -> None:
    """Refuses a fixed batch size that the env's action encoding cannot select exactly.

    The run would otherwise train at the nearest size it can reach (128 for 100 on the default
    ladder) while its title and config say ``batch_size``.
    """
    encoding = env.unwrapped.action_encoding
    current, reached = int(env.unwrapped.task.batch_start), None
    for _ in range(64):  # relative encoding: one halving or doubling per step
        reached = encoding.decode(encoding.encode(batch_size, current), current)
        if reached == current:
            break
        current = reached
    if reached == batch_size:
        return
    ladder = ", ".join(str(int(size)) for size in encoding.ladder)
    raise ValueError(
        f"--batch-size {batch_size} cannot be selected exactly with the {encoding.name!r} "
        f"encoding of {task} (it would train at {reached}): choose one of {ladder}, use "
        "-e action_encoding=continuous for any size in "
        f"[{encoding.batch_min}, {encoding.batch_max}], or change batch_min/batch_max with -t."
    )


def _looks_like_path(argument: str) -> bool:
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


def _require(module: str, purpose: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] == "stable_baselines3":
            raise ValueError(
                f"{purpose} needs stable-baselines3, which is not installed; install the RL "
                "extra: pip install 'arbiter-env[rl]'"
            ) from None
        if error.name != module:
            raise
        raise ValueError(f"{purpose} is not available: {module} is not installed.") from None


def _split_seeds(items: list[str]) -> tuple[list[int], list[str]]:
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


# --- helpers: running and printing --------------------------------------------------------------


@contextlib.contextmanager
def _logged_run(
    args: argparse.Namespace, config: dict[str, Any], *, job: str
) -> Iterator[tuple[Any, Any]]:
    """A :class:`RunLogger` for the command's run folder and a progress display on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from arbiter_env.runlog import RunLogger, make_run_dir

    run_dir = args.run_dir or make_run_dir(job)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with (
        # One writer per run folder: a second command on the same --run-dir stops here.
        RunFolderLock(run_dir, command=f"arbiter {config.get('command', job)}"),
        RunLogger(
            run_dir, config, wandb_mode=args.wandb, group=args.group, job_type=job, tags=args.tag
        ) as log,
        Progress(*columns, TimeElapsedColumn(), console=_console(stderr=True)) as progress,
    ):
        yield log, progress


def _run_seeds(
    log: Any,
    progress: Any,
    env: Any,
    controller: Any,
    seeds: list[int],
    *,
    name: str,
    deterministic: bool = True,
    extra: dict[str, Any] | None = None,
    make: Any = None,
) -> list[Any]:
    """Runs one logged episode per seed, advancing a progress bar per interval.

    With ``make`` (a ``() -> (env, controller)``), every seed gets an env and a controller of
    its own, the controller closed after its episode; otherwise ``controller`` plays every seed
    in ``env`` in turn.
    """
    bar = progress.add_task(f"{name}: episodes (intervals)", total=None)
    records = []
    for seed in seeds:
        if make is not None:
            env, player = make()
        else:
            player = controller
        intervals = env.unwrapped.task.num_intervals
        progress.update(bar, total=intervals * len(seeds))
        progress.update(bar, description=f"{name}: seed {seed} (intervals)")
        records.append(
            log.run_episode(
                env,
                player,
                seed,
                controller_name=name,
                deterministic=deterministic,
                on_step=lambda record, info: progress.advance(bar),
                extra=extra,
            )
        )
        close = getattr(player, "close", None)
        if make is not None and callable(close):
            close()  # e.g. Arbiter's step hook on the env's trainer
    progress.update(bar, visible=False)
    return records


def _print_intervals(record: Any) -> None:
    from rich.table import Table

    table = Table(title=f"Seed {record.seed}: interval by interval")
    for column in ("interval", "samples", "batch", "lr", "val loss", "val acc", "reward"):
        table.add_column(column, justify="right")
    for i, info in enumerate(record.infos):
        table.add_row(
            str(info["interval"]),
            str(info["samples"]),
            str(info["batch_size"]),
            f"{info['lr']:.3g}",
            _fmt(info["val_loss"]),
            _fmt(info["val_accuracy"]),
            _fmt(record.rewards[i]),
        )
    _console().print(table)


def _print_summary(records: list[Any], *, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in ("seed", "return", "val loss", "val acc", "test acc", "updates", "schedule"):
        table.add_column(column, justify="left" if column == "schedule" else "right")
    for r in records:
        table.add_row(
            str(r.seed),
            _fmt(r.episode_return),
            _fmt(r.final_val_loss),
            _fmt(r.val_accuracies[-1] if r.val_accuracies else math.nan),
            _fmt(r.test_accuracy),
            str(r.total_updates),
            _schedule(r.batch_sizes) + (" (diverged)" if r.diverged else ""),
        )
    if len(records) > 1:
        table.add_section()
        table.add_row(
            "mean",
            _mean(r.episode_return for r in records),
            _mean(r.final_val_loss for r in records),
            _mean(r.val_accuracies[-1] for r in records if r.val_accuracies),
            _mean(r.test_accuracy for r in records),
            "",
            "",
        )
    _console().print(table)


def _print_training(episodes: list[dict[str, Any]], checkpoint: Path) -> None:
    done = [e for e in episodes if e.get("complete")]
    returns = [e["return"] for e in done if e.get("return") is not None]
    last = returns[-10:]
    print(f"trained: {len(done)} episodes; checkpoint: {checkpoint}")
    if last:
        print(
            f"mean return of the last {len(last)} training episodes: {statistics.fmean(last):.4g}"
        )


def _print_run_folder(run_dir: Path) -> None:
    import json

    info_file = run_dir / "run.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    print(f"run folder: {run_dir}")
    if info.get("wandb_error"):
        print(f"W&B: off after an error ({info['wandb_error']}); local logs are complete")
    elif info.get("wandb_mode") == "offline" and info.get("wandb_run_dir"):
        print(f"W&B: offline run; upload with: wandb sync {info['wandb_run_dir']}")


def _schedule(batch_sizes: list[int]) -> str:
    """Run-length form of a schedule: ``64×5 128×15``."""
    parts: list[str] = []
    for size in batch_sizes:
        if parts and parts[-1].split("×")[0] == str(size):
            count = int(parts[-1].split("×")[1]) + 1
            parts[-1] = f"{size}×{count}"
        else:
            parts.append(f"{size}×1")
    return " ".join(parts)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) and math.isfinite(value) else "-"


def _mean(values: Any) -> str:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if not finite:
        return "-"
    if len(finite) == 1:
        return _fmt(finite[0])
    return f"{statistics.fmean(finite):.4g} ± {float(np.std(finite, ddof=1)):.2g}"


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output has no terminal width; rich would assume 80 columns and squash the tables.
    width = None if stream.isatty() else 120
    return Console(stderr=stderr, width=width)


if __name__ == "__main__":
    sys.exit(main())
