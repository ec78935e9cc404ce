"""``arbiter compare`` and ``arbiter plot``: argparse and the two commands' exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from arbiter_env.config import ConfigError
from arbiter_env.lab.experiments.config import load_experiment
from arbiter_env.lab.experiments.results import WANDB_FOLDER, rebuild_report
from arbiter_env.lab.experiments.runner import default_run_dir, run_comparison
from arbiter_env.lab.runfolder import RunFolderBusy
from arbiter_env.lab.wandb_utils import wandb_review_lines
from arbiter_env.user_code import add_import_option

EXIT_IO_ERROR = 74
"""Exit status when the run folder cannot be written (``EX_IOERR`` of ``sysexits.h``)."""


def add_comparison_subcommands(subparsers: Any) -> None:
    """Adds ``compare`` and ``plot`` to an ``argparse`` subparsers object."""
    compare = subparsers.add_parser(
        "compare",
        help="run controllers × tasks × seeds and write tables and plots",
        description="Runs an experiment from configs/experiments/NAME.yaml. An existing "
        "--run-dir of the same experiment resumes: finished runs are skipped.",
    )
    compare.add_argument(
        "--config",
        required=True,
        help="Experiment YAML file, or NAME for configs/experiments/NAME.yaml.",
    )
    add_engine_options(compare)
    compare.add_argument("--wandb", choices=["offline", "online", "disabled"], default=None)
    _add_figure_size(compare)
    add_import_option(compare)
    compare.add_argument(
        "overrides", nargs="*", metavar="key=value", help="Config overrides, e.g. seeds=[0,1]."
    )
    # `func` for any argparse program, `handler` for the `arbiter` command's dispatcher.
    compare.set_defaults(func=compare_command, handler=compare_command)

    plot = subparsers.add_parser(
        "plot", help="rebuild a comparison's tables and plots from its saved logs"
    )
    plot.add_argument("run_dir", metavar="RUN_FOLDER")
    _add_figure_size(plot)
    add_import_option(plot)
    plot.set_defaults(func=plot_command, handler=plot_command)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """The options of a command that runs a comparison: where it runs, its folder, its output."""
    parser.add_argument("--engine", choices=["local", "ray"], default=None)
    parser.add_argument("--ray-address", default=None, help="Join this Ray cluster.")
    parser.add_argument("--run-dir", default=None, help="Run folder (resumes if it exists).")
    parser.add_argument(
        "--max-workers", type=int, default=None, help="Processes of the local engine."
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="Print no progress (bar or per-run lines)."
    )


def _add_figure_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--figure-size",
        choices=["page", "column"],
        default="page",
        help="Figures 7 in wide with a title (page, the default) or 3.4 in wide without one "
        "(column: one column of a paper).",
    )


def experiment_file(name: str) -> Path:
    """``--config``'s file: the path given, or ``configs/experiments/NAME.yaml`` for a NAME.

    A NAME (no folder, no ``.yaml``) is looked up in ``configs/experiments/`` of the working
    folder, then of the source checkout this package runs from.

    Raises:
        FileNotFoundError: NAME is in neither folder; the message names both paths.
    """
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return path
    candidates = [
        root / "configs" / "experiments" / f"{name}.yaml"
        for root in (Path.cwd(), Path(__file__).resolve().parents[3])
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " or ".join(str(c) for c in dict.fromkeys(candidates))
    raise FileNotFoundError(
        f"--config {name}: no file {name!r}, and no experiment of that name at {tried}."
    )


def compare_command(args: argparse.Namespace) -> int:
    """``arbiter compare``: 0 when every run succeeded, 1 when some failed, 2 on a bad config."""
    overrides = list(getattr(args, "overrides", None) or [])
    if getattr(args, "wandb", None):
        overrides.append(f"wandb.mode={args.wandb}")
    if getattr(args, "max_workers", None) is not None:  # 0 is an error, not "the default"
        overrides.append(f"engine.max_workers={args.max_workers}")
    run_dir = args.run_dir
    try:
        config = load_experiment(experiment_file(args.config), overrides)
        extra = [m for m in getattr(args, "imports", None) or [] if m not in config.imports]
        if extra:  # --import on the command line: the workers import them as well
            config = dataclasses.replace(config, imports=[*config.imports, *extra])
        if run_dir is None:
            # Fixed here, so that an interruption can print the folder and the resume command.
            run_dir = str(default_run_dir(config))
        result = run_comparison(
            config,
            run_dir=run_dir,
            engine=args.engine,
            ray_address=args.ray_address,
            progress=not getattr(args, "no_progress", False),
            figure_size=getattr(args, "figure_size", "page"),
        )
    except (ConfigError, FileNotFoundError, RunFolderBusy) as error:
        print(f"arbiter compare: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only folder: the environment, not the runs
        print(
            f"arbiter compare: error: {error}. Finished runs are kept in {run_dir}; fix the "
            f"cause (free space, permissions) and resume with:\n"
            f"  {_resume_command(args, run_dir)}",
            file=sys.stderr,
        )
        return EXIT_IO_ERROR
    except KeyboardInterrupt:
        print(
            f"arbiter compare: interrupted. Finished runs are kept in {run_dir}; resume with:\n"
            f"  {_resume_command(args, run_dir)}",
            file=sys.stderr,
        )
        return 130
    print(result.report["markdown"])
    print(
        f"{len(result.results)} evaluation runs, {result.failed} failed; {result.executed} "
        f"run(s) executed now, training runs included (finished runs are skipped on resume). "
        f"{result.wall_time:.1f} s. Report: {result.run_dir}"
    )
    for line in wandb_review_lines(
        result.run_dir / WANDB_FOLDER, len(result.wandb_runs), mode=config.wandb.mode
    ):
        print(line)
    return 1 if result.failed else 0


def _resume_command(args: argparse.Namespace, run_dir: str) -> str:
    import shlex

    parts = ["arbiter", "compare", "--config", str(args.config), "--run-dir", str(run_dir)]
    if args.engine:
        parts += ["--engine", args.engine]
    if args.ray_address:
        parts += ["--ray-address", args.ray_address]
    if getattr(args, "wandb", None):
        parts += ["--wandb", args.wandb]
    if getattr(args, "max_workers", None) is not None:
        parts += ["--max-workers", str(args.max_workers)]
    parts += list(getattr(args, "overrides", None) or [])
    return shlex.join(parts)


def plot_command(args: argparse.Namespace) -> int:
    """``arbiter plot RUN_FOLDER``: rebuilds tables and plots; 2 if the folder has no results."""
    try:
        report = rebuild_report(args.run_dir, getattr(args, "figure_size", "page"))
    except (ConfigError, FileNotFoundError) as error:
        print(f"arbiter plot: error: {error}", file=sys.stderr)
        return 2
    print(report["markdown"])
    print(
        f"Wrote {report['results_csv']}, {report['results_md']} and {len(report['plots'])} plots."
    )
    return 0
