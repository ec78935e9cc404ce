"""User code on the command line and in worker processes: ``--import MODULE`` and ``imports:``.

A user registers tasks and controllers in a module of their own (``register_task``,
``register_controller``) and names it with ``--import MODULE`` on any ``arbiter`` command or
under ``imports:`` in a YAML config. Three things make that work everywhere:

* the working folder is importable, as it is with ``python -m`` (the ``arbiter`` console script
  would otherwise see only its own folder on ``sys.path``);
* the modules are imported before the command builds anything, so their names exist;
* the module names are shared with worker processes: a comparison passes them to its runs
  (:class:`~arbiter_env.lab.experiments.plan.RunSpec`), and the environment variable
  :data:`IMPORTS_ENV_VAR` (``ARBITER_IMPORTS``, comma-separated) carries them to the workers of
  stable-baselines3's ``SubprocVecEnv`` that ``arbiter train`` starts, whose env factory imports
  them before it builds an env. Importing :mod:`arbiter_env` does not read the variable.

In worker processes that other code starts (rl-zoo3's ``--vec-env subproc``, your own
``SubprocVecEnv``), name a task with its module, ``"my_tasks:my-task"``: the worker imports
``my_tasks`` to find it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Iterable

IMPORTS_ENV_VAR = "ARBITER_IMPORTS"


class UserImportError(ImportError, ValueError):
    """A user module named by ``--import``, ``imports:`` or ``ARBITER_IMPORTS`` failed to import.

    A ``ValueError`` too, so that the command line reports it as a usage error (exit status 2).
    """


def add_working_folder() -> str:
    """Puts the absolute working folder first on ``sys.path`` (as ``python -m`` does); returns it.

    Absolute, so that a process started elsewhere (a Ray worker) resolves the same folder.
    """
    folder = os.getcwd()
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return folder


def import_modules(modules: Iterable[str], *, source: str = "--import") -> list[str]:
    """Imports ``modules`` (working folder importable); returns their names.

    Raises:
        UserImportError: naming the module, where it was asked for, and what to check.
    """
    names = [m.strip() for m in modules if m and m.strip()]
    if names:
        add_working_folder()
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise UserImportError(
                f"{source}: cannot import {name!r} ({error}). Is {name.replace('.', '/')}.py in "
                f"the working folder {os.getcwd()} or on PYTHONPATH?"
            ) from error
        except KeyboardInterrupt:
            raise
        # SystemExit too: a module that calls sys.exit() while being imported would otherwise
        # end the command with its status, having done nothing.
        except (Exception, SystemExit) as error:
            raise UserImportError(
                f"{source}: importing {name!r} failed: {_last_line(error)}"
            ) from error
    return names


def _last_line(error: BaseException) -> str:
    """The last line of ``error``'s report, with the place of a syntax error."""
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r}) while being imported."
    line = traceback.format_exception_only(type(error), error)[-1].strip()
    if isinstance(error, SyntaxError) and error.filename:
        return f"{line} ({error.filename}, line {error.lineno})"
    return line


def share_with_workers(modules: Iterable[str]) -> None:
    """Adds ``modules`` to :data:`IMPORTS_ENV_VAR`, so worker processes import them too."""
    current = [m for m in os.environ.get(IMPORTS_ENV_VAR, "").split(",") if m.strip()]
    merged = list(dict.fromkeys([*current, *(m.strip() for m in modules if m.strip())]))
    if merged:
        os.environ[IMPORTS_ENV_VAR] = ",".join(merged)
        add_working_folder()
        # Processes that start a fresh interpreter without multiprocessing's sys.path hand-over.
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if os.getcwd() not in paths:
            os.environ["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *paths])


def add_import_option(parser: argparse.ArgumentParser) -> None:
    """Adds the repeatable ``--import MODULE`` option (``args.imports``) to a command's parser."""
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (repeatable): your tasks and controllers; the working folder "
        "is importable, and worker processes import it too",
    )


def import_from_environment() -> list[str]:
    """Imports the modules named in :data:`IMPORTS_ENV_VAR`; worker entry points call it first."""
    modules = os.environ.get(IMPORTS_ENV_VAR, "").split(",")
    return import_modules(modules, source=f"the environment variable {IMPORTS_ENV_VAR}")


__all__ = [
    "IMPORTS_ENV_VAR",
    "UserImportError",
    "add_import_option",
    "add_working_folder",
    "import_from_environment",
    "import_modules",
    "share_with_workers",
]
