"""``arbiter benchmark``: the standard suite, scored against the oracle, with a leaderboard.

The suite is ``configs/experiments/benchmark.yaml`` (:class:`BenchmarkConfig`): built-in tasks
with and without an LR schedule (``TASK@SCHEDULE``, :mod:`arbiter_env.tasks.suite`),
test instances of every task family, fixed seeds, the fixed ladder, the ``oracle-greedy``
reference and every baseline. It runs as one comparison (:func:`~arbiter_env.lab.experiments.
run_comparison`, local processes or Ray) and then writes a leaderboard
(:mod:`arbiter_env.lab.leaderboard`).

No controller here learns across episodes (the static HPO searches and the RL agents are not in
the default suite), so no controller sees a test instance before it is evaluated on it.
"""

from __future__ import annotations

import dataclasses
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arbiter_env.config import ConfigError, load_yaml
from arbiter_env.lab.experiments.commands import add_engine_options, experiment_file
from arbiter_env.lab.experiments.config import (
    ControllerSpec,
    EngineConfig,
    ExperimentConfig,
    WandbConfig,
)
from arbiter_env.lab.experiments.files import RESULT_FILE, read_json
from arbiter_env.lab.experiments.results import load_results
from arbiter_env.lab.experiments.runner import run_comparison
from arbiter_env.lab.leaderboard import leaderboard_markdown
from arbiter_env.tasks.families import get_family
from arbiter_env.tasks.suite import SUITE_LR_SCHEDULES, family_instance_name, scheduled_task_name

SUITE_TASKS_MODULE = "arbiter_env.tasks.suite"


@dataclass
class FullRun:
    """What ``--full`` changes.

    Args:
        seeds: Evaluation seeds of the full run (default 5).
        family_instances: Test instances per family; ``None``: every one.
        tasks: Built-in tasks of the full run; empty: the default run's.
        lr_schedules: Schedules of the full run; empty: the default run's.
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    family_instances: int | None = None
    tasks: list[str] = field(default_factory=list)
    lr_schedules: list[str] = field(default_factory=list)


@dataclass
class BenchmarkConfig:
    """The benchmark suite (``configs/experiments/benchmark.yaml``).

    Args:
        name: Name of the comparison (run folder ``output_dir/NAME-TIMESTAMP``).
        description: Free text, copied into the leaderboard.
        tasks: Built-in tasks; each runs under every schedule of ``lr_schedules``.
        lr_schedules: ``constant`` (the task as registered) and presets of
            :data:`~arbiter_env.tasks.suite.SUITE_LR_SCHEDULES`.
        families: Task families whose test instances are tasks of the suite.
        family_instances: How many test instances per family the default run takes (the first
            ones, in index order); ``None``: every one.
        seeds: Evaluation seeds of the default run.
        ladder: The fixed sizes, each a controller ``fixed-B``.
        controllers: The baselines (and any other controllers) besides the ladder and the oracle.
        oracle: The upper reference of the normalised scores, a registered controller run with
            its defaults on every task and seed (``oracle-greedy``); ``None``: no oracle runs
            and the best fixed size is the upper reference.
        task_overrides: ``make_task`` field overrides for every task (none by default: the
            suite runs the tasks as registered).
        full: What ``--full`` changes (:class:`FullRun`).
        engine: Where the runs execute (``--engine`` overrides the name).
        wandb: Weights & Biases settings (disabled by default).
        output_dir: Parent folder of the run folder.
        leaderboard: The Markdown file the leaderboard is written to.
    """

    tasks: list[str]
    controllers: list[ControllerSpec]
    name: str = "benchmark"
    description: str = ""
    lr_schedules: list[str] = field(default_factory=lambda: ["constant", "cosine"])
    families: list[str] = field(default_factory=list)
    family_instances: int | None = 1
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    ladder: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128, 256, 512])
    oracle: str | None = "oracle-greedy"
    task_overrides: dict[str, Any] = field(default_factory=dict)
    full: FullRun = field(default_factory=FullRun)
    engine: EngineConfig = field(default_factory=EngineConfig)
    wandb: WandbConfig = field(default_factory=lambda: WandbConfig(mode="disabled"))
    output_dir: str = "runs/benchmark"
    leaderboard: str = "docs/benchmark.md"

    def __post_init__(self) -> None:

        valid = ("constant", *SUITE_LR_SCHEDULES)
        for schedules, key in (
            (self.lr_schedules, "lr_schedules"),
            (self.full.lr_schedules, "full.lr_schedules"),
        ):
            for schedule in schedules:
                if schedule not in valid:
                    raise ConfigError(
                        f"{key}: unknown schedule {schedule!r}; use one of {', '.join(valid)}."
                    )
        if self.family_instances is not None and self.family_instances < 1:
            raise ConfigError("family_instances must be >= 1, or null for every instance.")
        if not self.ladder or any(b < 1 for b in self.ladder):
            raise ConfigError(f"ladder must list batch sizes >= 1, got {self.ladder}.")


def load_benchmark(file: str | Path, overrides: list[str] | None = None) -> BenchmarkConfig:
    """Loads the suite's YAML file (plus ``key=value`` overrides) and checks it."""
    return load_yaml(BenchmarkConfig, file, overrides)


# --- the suite as a comparison --------------------------------------------------------------------


def suite_tasks(config: BenchmarkConfig, full: bool = False) -> list[str]:
    """The suite's task names: every task under every schedule, then the family instances."""
    tasks = (config.full.tasks if full and config.full.tasks else None) or config.tasks
    schedules = (config.full.lr_schedules if full and config.full.lr_schedules else None) or (
        config.lr_schedules
    )
    names = [scheduled_task_name(t, s) for t in tasks for s in schedules]
    count = config.full.family_instances if full else config.family_instances
    for family in config.families:
        instances = sorted(get_family(family).instances("test"), key=lambda i: i.index)
        names += [
            family_instance_name(family, "test", i.index)
            for i in (instances if count is None else instances[:count])
        ]
    return names


def experiment_config(config: BenchmarkConfig, full: bool = False) -> ExperimentConfig:
    """The suite as one comparison: the ladder, the baselines and the oracle on every task."""
    ladder = [
        ControllerSpec(name=f"fixed-{b}", controller="fixed", kwargs={"batch_size": b})
        for b in config.ladder
    ]
    oracle = (
        [ControllerSpec(name=config.oracle, controller=config.oracle)]
        if config.oracle is not None
        else []
    )
    return ExperimentConfig(
        name=config.name + ("-full" if full else ""),
        description=config.description,
        tasks=suite_tasks(config, full),
        controllers=[*ladder, *config.controllers, *oracle],
        seeds=list(config.full.seeds if full else config.seeds),
        task_overrides=dict(config.task_overrides),
        imports=[SUITE_TASKS_MODULE],
        engine=config.engine,
        wandb=config.wandb,
        output_dir=config.output_dir,
    )


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` produced."""

    run_dir: Path
    leaderboard: Path
    markdown: str
    runs: int
    failed: int
    wall_time: float


def run_benchmark(
    config: BenchmarkConfig,
    *,
    full: bool = False,
    engine: str | None = None,
    ray_address: str | None = None,
    run_dir: str | Path | None = None,
    leaderboard: str | Path | None = None,
    command: str = "arbiter benchmark",
    progress: bool = True,
) -> BenchmarkResult:
    """Runs the suite (resuming ``run_dir`` if it holds it) and writes the leaderboard."""
    started = time.perf_counter()
    experiment = experiment_config(config, full)
    result = run_comparison(
        experiment,
        run_dir=run_dir,
        engine=engine,  # type: ignore[arg-type]
        ray_address=ray_address,
        progress=progress,
    )
    _, results = load_results(result.run_dir)
    wall_time = time.perf_counter() - started
    notes = []
    if config.oracle is None:
        notes.append(
            "No oracle ran (oracle: null): the upper reference of the normalised scores is the "
            "best fixed size in hindsight (rank 1 of the ladder by mean final validation loss)."
        )
    markdown = leaderboard_markdown(
        results,
        title=f"Benchmark leaderboard ({experiment.name})",
        description=config.description,
        provenance=_provenance(
            command, wall_time, experiment, result.executed, results, _runs_span(result.run_dir)
        ),
        notes=notes,
    )
    path = Path(leaderboard or config.leaderboard)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown)
    return BenchmarkResult(
        result.run_dir, path, markdown, len(result.results), result.failed, wall_time
    )


def _provenance(
    command: str,
    wall_time: float,
    experiment: ExperimentConfig,
    executed: int,
    results: list[dict[str, Any]],
    span: float,
) -> list[str]:
    commit = _git(["rev-parse", "--short", "HEAD"])
    dirty = _git(["status", "--porcelain", "--untracked-files=no"])
    episode_seconds = sum(float(r.get("wall_time", 0.0) or 0.0) for r in results)
    return [
        f"Command: `{command}`",
        f"Commit: `{commit or 'unknown'}`{' (with uncommitted changes)' if dirty else ''}",
        f"Machine: {platform.machine()}, {_cpu_count()} CPU cores, Python "
        f"{platform.python_version()}; engine `{experiment.engine.name}` with "
        f"{experiment.engine.max_workers} workers",
        f"Runs: {len(results)}, from the first start to the last finish {span / 60:.1f} min "
        f"(read from their result files); this invocation executed {executed} of them in "
        f"{wall_time / 60:.1f} min; the evaluation episodes alone took {episode_seconds / 60:.1f} "
        "min, summed over runs",
        f"Tasks: {len(experiment.tasks)}; seeds: {experiment.seeds}; controllers: "
        f"{len(experiment.controllers)}",
    ]


def _runs_span(run_dir: Path) -> float:
    """Seconds from the first run's start to the last run's end, from the saved result files."""
    starts, ends = [], []
    for path in (run_dir / "runs").glob(f"*/*/seed-*/{RESULT_FILE}"):
        result = read_json(path)
        if isinstance(result, dict) and isinstance(result.get("wall_time"), int | float):
            ends.append(path.stat().st_mtime)
            starts.append(ends[-1] - float(result["wall_time"]))
    return max(ends) - min(starts) if ends else 0.0


def _git(arguments: list[str]) -> str:
    try:
        out = subprocess.run(
            ["git", *arguments], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- command line ---------------------------------------------------------------------------------


def add_benchmark_subcommand(subparsers: Any) -> None:
    """Adds ``benchmark`` to an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "benchmark",
        help="run the standard suite and write the leaderboard",
        description="Runs configs/experiments/benchmark.yaml (every baseline, the fixed ladder "
        "and the oracle on the suite's tasks and seeds) and writes the leaderboard. An existing "
        "--run-dir resumes.",
    )
    parser.add_argument(
        "--config",
        default="benchmark",
        help="the suite's YAML file, or NAME for configs/experiments/NAME.yaml (default: benchmark)",
    )
    parser.add_argument("--full", action="store_true", help="5 seeds and every family instance.")
    add_engine_options(parser)
    parser.add_argument("--leaderboard", default=None, help="Markdown output (default: config's).")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.set_defaults(func=benchmark_command, handler=benchmark_command)


def benchmark_command(args: Any) -> int:
    """``arbiter benchmark``: 0 when every run succeeded, 1 when some failed, 2 on a bad config."""
    import shlex
    import sys

    overrides = list(args.overrides or [])
    if args.max_workers is not None:
        overrides.append(f"engine.max_workers={args.max_workers}")
    command = (
        shlex.join(["arbiter", "benchmark", *sys.argv[2:]])
        if len(sys.argv) > 1
        else "arbiter benchmark"
    )
    try:
        config = load_benchmark(experiment_file(args.config), overrides)
        if args.engine is not None:
            config = dataclasses.replace(
                config, engine=dataclasses.replace(config.engine, name=args.engine)
            )
        result = run_benchmark(
            config,
            full=args.full,
            engine=args.engine,
            ray_address=args.ray_address,
            run_dir=args.run_dir,
            leaderboard=args.leaderboard,
            command=command,
            progress=not args.no_progress,
        )
    except (ConfigError, FileNotFoundError) as error:
        print(f"arbiter benchmark: error: {error}", file=sys.stderr)
        return 2
    print(result.markdown)
    print(
        f"{result.runs} runs, {result.failed} failed, {result.wall_time / 60:.1f} min. "
        f"Leaderboard: {result.leaderboard}; runs: {result.run_dir}"
    )
    return 1 if result.failed else 0
