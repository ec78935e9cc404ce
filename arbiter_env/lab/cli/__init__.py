"""The ``arbiter`` command line: run, train and evaluate batch-size controllers.

::

    arbiter tasks                                    # tasks and task families
    arbiter controllers                              # registered controllers
    arbiter episode --task digits-mlp --batch-size 64 [--seed 0] [epochs=1 ...]
    arbiter train --agent ppo|arbiter --task digits-mlp [--config FILE] [key=value ...]
    arbiter evaluate --controller NAME_OR_CHECKPOINT --task digits-mlp --seeds 0 1 2 [key=value ...]

Every command that runs training writes a run folder (default ``runs/<timestamp>-<job>``) with the
resolved config, local JSONL logs and the W&B run (offline unless an API key is configured); see
``docs/logging_and_cli.md``. The package parses arguments (:mod:`~arbiter_env.lab.cli.parser`), turns
them into checked inputs (:mod:`~arbiter_env.lab.cli.inputs`), dispatches to one module per command,
and prints (:mod:`~arbiter_env.lab.cli.output`). How a controller trains, loads or is checked is its
registry entry's business (:mod:`arbiter_env.controllers`): no command branches on a
controller's name or kind.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from arbiter_env.lab.cli.inputs import set_threads
from arbiter_env.lab.cli.parser import build_parser
from arbiter_env.lab.runfolder import RunFolderBusy, check_run_folder
from arbiter_env.user_code import add_working_folder, import_modules, share_with_workers

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
        if getattr(args, "run_dir", None) is not None:
            check_run_folder(args.run_dir)  # before anything is imported, built or trained
        share_with_workers(import_modules(getattr(args, "imports", None) or []))
        set_threads(getattr(args, "threads", None))
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, RunFolderBusy, ModuleNotFoundError) as error:
        # ConfigError is a ValueError; a missing optional extra says how to install it.
        if args.traceback or (
            isinstance(error, ModuleNotFoundError) and error.name != "stable_baselines3"
        ):
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def console_main() -> NoReturn:
    """The ``arbiter`` executable: :func:`main`, then a prompt exit after Ctrl-C.

    After an interruption every finished run is on disk (results are written atomically and
    fsynced) and the resume command is printed; what is left is the interpreter's own teardown
    of torch and the other extension modules, which takes seconds. It is skipped then, unless
    W&B was used in this process (its exit handlers finish uploading and stop its service).
    """
    code = main()
    if code == EXIT_INTERRUPTED and "wandb" not in sys.modules:
        import multiprocessing.util

        # What multiprocessing's own exit handler does (finalizers: its queues' semaphores are
        # released, so its resource tracker has nothing to warn about), then the exit.
        multiprocessing.util._exit_function()  # type: ignore[attr-defined]
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "console_main", "main"]
