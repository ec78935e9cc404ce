"""What the ``arbiter`` commands print, and the logged, progress-barred running of episodes."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from arbiter_env.controllers import EpisodeRecord
from arbiter_env.lab.runfolder import RunFolderLock
from arbiter_env.lab.runlog import RunLogger, make_run_dir
from arbiter_env.lab.wandb_utils import wandb_review_lines


@contextlib.contextmanager
def logged_run(
    args: argparse.Namespace, config: dict[str, Any], *, job: str
) -> Iterator[tuple[Any, Any]]:
    """A :class:`RunLogger` for the command's run folder and a progress display on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    run_dir = args.run_dir or make_run_dir(job)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with (
        # One writer per run folder: a second command on the same --run-dir stops here.
        RunFolderLock(run_dir, command=f"arbiter {config.get('command', job)}"),
        RunLogger(
            run_dir, config, wandb_mode=args.wandb, group=args.group, job_type=job, tags=args.tag
        ) as log,
        Progress(*columns, TimeElapsedColumn(), console=console(stderr=True)) as progress,
    ):
        yield log, progress


def run_seeds(
    log: Any,
    progress: Any,
    make: Callable[[], tuple[Any, Any]],
    seeds: list[int],
    *,
    name: str,
    fresh: bool,
    deterministic: bool = True,
    extra: dict[str, Any] | None = None,
    notes: list[str] | None = None,
) -> list[EpisodeRecord]:
    """Runs one logged episode per seed, advancing a progress bar per interval.

    ``make()`` returns an ``(env, controller)`` pair. With ``fresh``, every seed gets a pair of
    its own, the controller closed after its episode; otherwise the one pair plays every seed.
    A controller with ``run_notes()`` says how its numbers came about (Arbiter: which of its
    two modes ran); its lines go to ``notes``, once each.
    """
    bar = progress.add_task(f"{name}: episodes (intervals)", total=None)
    records = []
    shared = None if fresh else make()
    for seed in seeds:
        env, player = make() if shared is None else shared
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
        run_notes = getattr(player, "run_notes", None)
        if notes is not None and callable(run_notes):
            notes += [line for line in run_notes() if line not in notes]
        close = getattr(player, "close", None)
        if fresh and callable(close):
            close()  # e.g. Arbiter's step hook on the env's trainer
    progress.update(bar, visible=False)
    return records


def print_intervals(record: EpisodeRecord) -> None:
    """The interval-by-interval table of one episode."""
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
            fmt(info["val_loss"]),
            fmt(info["val_accuracy"]),
            fmt(record.rewards[i]),
        )
    console().print(table)


def print_summary(records: list[EpisodeRecord], *, title: str) -> None:
    """One row per episode, and the mean ± sample standard deviation (s.d.) over several."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("seed", "return", "val loss", "val acc", "test acc", "updates", "schedule"):
        table.add_column(column, justify="left" if column == "schedule" else "right")
    for r in records:
        table.add_row(
            str(r.seed),
            fmt(r.episode_return),
            fmt(r.final_val_loss),
            fmt(r.final_val_accuracy),
            fmt(r.test_accuracy),
            str(r.total_updates),
            schedule(r.batch_sizes) + (" (diverged)" if r.diverged else ""),
        )
    if len(records) > 1:
        table.add_section()
        table.add_row(
            "mean ± s.d.",
            mean(r.episode_return for r in records),
            mean(r.final_val_loss for r in records),
            mean(r.final_val_accuracy for r in records),
            mean(r.test_accuracy for r in records),
            "",
            "",
        )
    console().print(table)


def print_training(episodes: list[dict[str, Any]], checkpoint: Path) -> None:
    """How many training episodes ran and the mean return of the last ten."""
    done = [e for e in episodes if e.get("complete")]
    returns = [e["return"] for e in done if e.get("return") is not None]
    last = returns[-10:]
    print(f"trained: {len(done)} episodes; checkpoint: {checkpoint}")
    if last:
        print(
            f"mean return of the last {len(last)} training episodes: {statistics.fmean(last):.4g}"
        )


def print_run_folder(run_dir: Path) -> None:
    """Where the run is, and the commands that browse its W&B run offline and upload it."""
    info_file = run_dir / "run.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    print(f"run folder: {run_dir}")
    if info.get("wandb_error"):
        print(f"W&B: off after an error ({info['wandb_error']}); local logs are complete")
    elif info.get("wandb_run_dir") and info.get("wandb_mode") in ("offline", "online"):
        for line in wandb_review_lines(run_dir / "wandb", 1, mode=info["wandb_mode"]):
            print(line)


def schedule(batch_sizes: list[int]) -> str:
    """Run-length form of a schedule: ``64×5 128×15``."""
    return " ".join(f"{size}×{len(list(run))}" for size, run in itertools.groupby(batch_sizes))


def fmt(value: float) -> str:
    """A number in four significant digits (``-`` for a missing or non-finite one)."""
    return f"{value:.4g}" if isinstance(value, int | float) and math.isfinite(value) else "-"


def mean(values: Any) -> str:
    """Mean ± sample standard deviation of the finite values (``-`` for none)."""
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if not finite:
        return "-"
    if len(finite) == 1:
        return fmt(finite[0])
    return f"{statistics.fmean(finite):.4g} ± {float(np.std(finite, ddof=1)):.2g}"


def console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr), 120 columns when piped."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output has no terminal width; rich would assume 80 columns and squash the tables.
    width = None if stream.isatty() else 120
    return Console(stderr=stderr, width=width)
