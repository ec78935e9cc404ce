"""The argument parser of the ``arbiter`` command: one function per subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from arbiter_env.lab.cli.episode import cmd_episode
from arbiter_env.lab.cli.evaluate import cmd_evaluate
from arbiter_env.lab.cli.inputs import DEFAULT_TASK
from arbiter_env.lab.cli.listing import cmd_controllers, cmd_tasks
from arbiter_env.lab.cli.train import cmd_train
from arbiter_env.lab.experiments.benchmark import add_benchmark_subcommand
from arbiter_env.lab.experiments.commands import add_comparison_subcommands  # compare, plot
from arbiter_env.lab.runlog.writers import WANDB_MODES
from arbiter_env.user_code import add_import_option

DEFAULT_THREADS = 1


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
    _add_episode(commands)
    _add_train(commands)
    _add_evaluate(commands)
    add_comparison_subcommands(commands)
    add_benchmark_subcommand(commands)
    return parser


def _add_episode(commands: Any) -> None:
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


def _add_train(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train an agent (PPO and other SB3 algorithms, or Arbiter)",
        description="Trains an agent. Trailing key=value pairs override the agent's config "
        "(dotted keys reach nested sections, e.g. hyperparams.n_steps=64 for PPO or "
        "agent.phi_lr=1e-4 for Arbiter; env.KEY=VALUE for an env argument). RL agents are then "
        "evaluated on held-out seeds. Arbiter writes a checkpoint folder, RUN_DIR/checkpoint, "
        "that evaluate and compare load.",
    )
    train.add_argument(
        "--agent",
        required=True,
        help="a controller whose registry entry can train it: an SB3 algorithm (ppo, a2c, dqn, "
        "sac, td3) or arbiter; an unknown name lists them",
    )
    _add_task_options(train, default=None)
    train.add_argument("--config", type=Path, help="YAML config file")
    train.add_argument("--seed", type=int, help="training seed")
    train.add_argument(
        "--resume",
        type=Path,
        metavar="CHECKPOINT",
        help="RL: continue training from a checkpoint folder (needs --trust-checkpoint: resuming "
        "unpickles the training state)",
    )
    _add_trust_option(train)
    train.add_argument(
        "--no-eval", action="store_true", help="RL: skip the held-out evaluation after training"
    )
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    _add_run_options(train)
    train.set_defaults(handler=cmd_train)


def _add_evaluate(commands: Any) -> None:
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
        "a/b or x.zip; a bare name is always a controller); see --trust-checkpoint",
    )
    _add_trust_option(evaluate)
    _add_task_options(evaluate, default=None)
    _add_evaluate_options(evaluate)
    evaluate.add_argument("overrides", nargs="*", metavar="key=value", help="controller kwargs")
    _add_run_options(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)


TRUST_RULE = (
    "nothing in a checkpoint is unpickled unless this flag is given, whatever the folder "
    "holds: an arbiter train checkpoint is loaded without it (model.zip's pickled entries are "
    "rebuilt from config.yaml, statistics read from vecnormalize.npz); an rl-zoo3 model, a "
    "vecnormalize.pkl and --resume need it, because unpickling runs any code the file's author "
    "put there: give it only for checkpoints you made or trust"
)


def _add_trust_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--trust-checkpoint", action="store_true", help=TRUST_RULE)


def _add_evaluate_options(evaluate: argparse.ArgumentParser) -> None:
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
        "built-in networks on a busy machine; "
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
