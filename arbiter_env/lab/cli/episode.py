"""``arbiter episode``: one seeded episode with a fixed batch size."""

from __future__ import annotations

import argparse

from arbiter_env.lab.cli import inputs
from arbiter_env.lab.cli.output import (
    logged_run,
    print_intervals,
    print_run_folder,
    print_summary,
    run_seeds,
)


def cmd_episode(args: argparse.Namespace) -> int:
    """``arbiter episode``: one seeded episode with a fixed batch size, then a summary."""
    env_items = [o.removeprefix("env.") for o in args.overrides if o.startswith("env.")]
    trailing = [o.removeprefix("task.") for o in args.overrides if not o.startswith("env.")]
    task_overrides = inputs.task_overrides(args.task_override + trailing, args.task)
    env_args = inputs.env_args(args.env + env_items)
    env = inputs.make_env(args.task, task_overrides, env_args=env_args)
    inputs.check_reachable(env, args.batch_size, args.task)
    controller = inputs.make_controller("fixed", env, {"batch_size": args.batch_size})
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
    with logged_run(args, config, job="episode") as (log, progress):
        records = run_seeds(
            log, progress, lambda: (env, controller), [args.seed], name="fixed", fresh=False
        )
    print_intervals(records[0])
    print_summary(records, title=f"{args.task}: fixed batch size {args.batch_size}")
    print_run_folder(log.run_dir)
    return 0
