"""The driver of a comparison.

It plans the runs, skips finished ones (resume), schedules the rest on an engine with a progress
display, then writes the report.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbiter_env.config import ConfigError, save_yaml, to_dict
from arbiter_env.lab.experiments.config import (
    RESULT_KEYS,
    EngineConfig,
    EngineName,
    ExperimentConfig,
    load_experiment,
    path_component,
)
from arbiter_env.lab.experiments.engines import Outcome, make_engine
from arbiter_env.lab.experiments.files import CONFIG_FILE, RESULT_FILE, read_json, write_json
from arbiter_env.lab.experiments.plan import RunSpec, plan_runs
from arbiter_env.lab.experiments.plan_check import check_plan
from arbiter_env.lab.experiments.progress import Progress
from arbiter_env.lab.experiments.results import (
    gather_wandb_runs,
    log_wandb_summary,
    rebuild_report,
)
from arbiter_env.lab.experiments.worker import failed_result
from arbiter_env.lab.runfolder import RunFolderLock, count_log_rows, file_digest
from arbiter_env.lab.runlog import INTERVALS_FILE

if TYPE_CHECKING:
    from arbiter_env.lab.plots import FigureSize


PROGRESS_REFRESH_SECONDS = 1.0
"""How often the progress display refreshes while no run finishes (a training's timesteps)."""


@dataclass
class ComparisonResult:
    """What :func:`run_comparison` produced."""

    run_dir: Path
    results: list[dict[str, Any]]
    """One result per evaluation run (including skipped-because-finished ones)."""
    executed: int
    """Runs executed now; the others were finished before (resume)."""
    failed: int
    report: dict[str, Any]
    """Paths written by :func:`rebuild_report`."""
    wall_time: float
    wandb_runs: list[Path] = dataclasses.field(default_factory=list)
    """Every W&B run of the comparison, linked into ``run_dir/wandb`` (none when disabled)."""


def default_run_dir(config: ExperimentConfig) -> Path:
    """``<output_dir>/<name>-<YYYYmmdd-HHMMSS>``: a new folder per comparison started."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.output_dir) / f"{path_component(config.name, 'experiment')}-{stamp}"


def run_comparison(
    config: ExperimentConfig,
    run_dir: str | Path | None = None,
    engine: EngineName | None = None,
    ray_address: str | None = None,
    progress: bool = True,
    figure_size: FigureSize = "page",
) -> ComparisonResult:
    """Runs every controller of ``config`` on every task and seed, then writes the report.

    Args:
        config: The experiment.
        run_dir: Run folder; default ``output_dir/NAME-TIMESTAMP``. An existing folder of the
            same experiment resumes: finished runs are skipped.
        engine: ``"local"`` or ``"ray"``; default ``config.engine.name``.
        ray_address: Ray cluster to join; default ``config.engine.ray_address`` (None starts a
            local Ray).
        progress: Show progress (a bar in a terminal, a line per finished run otherwise).
        figure_size: ``"page"`` or ``"column"`` figures (:mod:`arbiter_env.lab.plots`).

    Returns:
        The per-run results, counts, the report's paths and the wall time.

    Raises:
        ConfigError: An unknown task or controller, or a run folder that holds a
            different experiment.
    """
    started = time.perf_counter()
    engine_config = dataclasses.replace(
        config.engine,
        name=engine or config.engine.name,
        ray_address=ray_address if ray_address is not None else config.engine.ray_address,
    )
    if engine_config.name not in ("local", "ray"):
        raise ConfigError(f"engine: {engine_config.name!r} is not 'local' or 'ray'.")
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    fresh = not run_dir.exists()
    # One writer per folder: a second comparison on it fails here, naming this one.
    try:
        with RunFolderLock(run_dir, command=f"arbiter compare ({config.name})"):
            return _run_locked(config, run_dir, engine_config, progress, started, figure_size)
    except ConfigError:
        if fresh:  # a plan that never ran leaves no folder behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _run_locked(
    config: ExperimentConfig,
    run_dir: Path,
    engine_config: EngineConfig,
    progress: bool,
    started: float,
    figure_size: FigureSize,
) -> ComparisonResult:
    config = _resolve(config, run_dir, engine_config)

    # The whole plan, before anything runs: every problem at once, in seconds.
    check_plan(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(config, run_dir / CONFIG_FILE)

    train_specs, eval_specs = plan_runs(config, run_dir)
    schedule = _Schedule.of(train_specs, eval_specs)
    slots = engine_config.max_workers if engine_config.name == "local" else engine_config.num_cpus
    display = Progress(
        schedule.total, schedule.skipped, run_dir=run_dir, enabled=progress, slots=slots
    )
    executed = _execute(schedule, engine_config, display) if schedule.total else 0

    results = [read_json(spec.result_path) for spec in eval_specs]
    results = [result if isinstance(result, dict) else {} for result in results]
    report = rebuild_report(run_dir, figure_size)
    wall_time = time.perf_counter() - started
    failed = sum(1 for r in results if r.get("status") != "ok")
    log_wandb_summary(config, run_dir, report, wall_time)
    wandb_runs = gather_wandb_runs(run_dir)
    return ComparisonResult(run_dir, results, executed, failed, report, wall_time, wandb_runs)


@dataclass
class _Schedule:
    """The runs still to execute: those ready now, and evaluations waiting for a training run."""

    ready: list[RunSpec]
    """Training runs first: they are the longest work, and evaluations wait on them."""
    waiting: dict[str, list[RunSpec]]
    """Evaluations of a controller still to be trained, by its model path."""
    skipped: int

    @property
    def total(self) -> int:
        return len(self.ready) + sum(map(len, self.waiting.values()))

    @classmethod
    def of(cls, train_specs: list[RunSpec], eval_specs: list[RunSpec]) -> _Schedule:
        """The schedule of a plan, leaving out runs that finished before (resume)."""
        finished = {spec.key: _finished_result(spec) for spec in train_specs + eval_specs}
        pending_train = [s for s in train_specs if finished[s.key] is None]
        trained_ok = {s.model_path for s in train_specs if finished[s.key] is not None}
        waiting: dict[str, list[RunSpec]] = {}
        ready: list[RunSpec] = []
        for spec in eval_specs:
            if finished[spec.key] is not None:
                continue
            if spec.model_path is not None and spec.model_path not in trained_ok:
                waiting.setdefault(spec.model_path, []).append(spec)
            else:
                ready.append(spec)
        total = len(pending_train) + sum(map(len, waiting.values())) + len(ready)
        skipped = len(train_specs) + len(eval_specs) - total
        return cls(pending_train + ready, waiting, skipped)


def _execute(schedule: _Schedule, engine_config: EngineConfig, display: Progress) -> int:
    """Runs the schedule on the engine; returns how many runs executed.

    On Ctrl-C the runs in progress are stopped at once (their folders hold no result, so a
    resume runs them again); finished runs are kept.
    """
    executed = 0
    waiting = {path: list(specs) for path, specs in schedule.waiting.items()}
    runner = make_engine(engine_config)
    try:
        in_flight: dict[Any, RunSpec] = {}
        for spec in schedule.ready:
            in_flight[runner.submit(spec)] = spec
        display.running(list(in_flight.values()))
        while in_flight:
            finished = runner.wait(list(in_flight), timeout=PROGRESS_REFRESH_SECONDS)
            display.refresh()
            for handle, outcome in finished:
                spec = in_flight.pop(handle)
                result = _as_result(spec, outcome)
                executed += 1
                display.advance(spec, result)
                if spec.kind == "train":
                    for follower in waiting.pop(str(spec.model_path), []):
                        in_flight[runner.submit(follower)] = follower
                display.running(list(in_flight.values()))
    except BaseException:  # Ctrl-C above all: stop the workers now, not after their runs
        display.close()
        runner.abort()
        raise
    display.close()
    runner.close()
    return executed


def _resolve(config: ExperimentConfig, run_dir: Path, engine: EngineConfig) -> ExperimentConfig:
    """Fixes what must stay the same on resume (the W&B group) and checks a reused folder."""
    saved_file = run_dir / CONFIG_FILE
    saved = None
    if saved_file.is_file():
        saved = load_experiment(saved_file)
        mismatched = [
            key for key in RESULT_KEYS if to_dict(config).get(key) != to_dict(saved).get(key)
        ]
        if mismatched:
            raise ConfigError(
                f"Run folder {run_dir} holds a different experiment (differs in "
                f"{', '.join(mismatched)}); choose another --run-dir to start afresh."
            )
    group = config.wandb.group or (saved.wandb.group if saved else None)
    if group is None:
        group = f"{config.name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return dataclasses.replace(
        config, engine=engine, wandb=dataclasses.replace(config.wandb, group=group)
    )


def _finished_result(spec: RunSpec) -> dict[str, Any] | None:
    """The run's result if it finished and its record is intact; ``None`` to (re)run it.

    A record that is not what this run would write (not a mapping, another task, label or seed,
    a string seed), or whose interval log no longer matches what the result recorded, is damaged:
    it is re-run with a warning rather than trusted or allowed to crash the resume.
    """
    if not spec.result_path.exists():
        return None
    result = read_json(spec.result_path)
    problem = _record_problem(result, spec)
    if problem is None and result.get("status") != "ok":
        return None  # a failed run: simply run it again
    if problem is None and spec.kind == "evaluate":
        problem = _log_problem(result, spec)
    trained = spec.model_path
    if problem is None and spec.kind == "train" and trained and not Path(trained).exists():
        problem = f"its trained model {trained} is missing"
    if problem is not None:
        warnings.warn(
            f"{spec.folder}: damaged run record ({problem}); running it again.", stacklevel=2
        )
        return None
    return result


def _record_problem(result: Any, spec: RunSpec) -> str | None:
    if not isinstance(result, dict):
        return f"{RESULT_FILE} is not a JSON object"
    expected = {"kind": spec.kind, "task": spec.task, "label": spec.label, "seed": spec.seed}
    for key, value in expected.items():
        if key not in result:
            return f"{RESULT_FILE} lacks {key!r}"
        if type(result[key]) is not type(value) or result[key] != value:
            return f"{RESULT_FILE} has {key}={result[key]!r}, expected {value!r}"
    return None


def _log_problem(result: dict[str, Any], spec: RunSpec) -> str | None:
    rows = count_log_rows(spec.log_path)
    if not spec.log_path.is_file():
        return f"{INTERVALS_FILE} is missing"
    if rows is None:
        return f"{INTERVALS_FILE} has a line that is not valid JSON"
    expected = result.get("log_rows", result.get("intervals"))
    if expected is not None and rows != expected:
        return f"{INTERVALS_FILE} has {rows} rows, the result recorded {expected}"
    digest = result.get("log_sha256")
    if digest is not None and digest != file_digest(spec.log_path):
        return f"{INTERVALS_FILE} changed after the result was written"
    return None


def _as_result(spec: RunSpec, outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, dict):
        return outcome
    # The worker died before it could write its result (killed, out of memory, ...).
    result = failed_result(spec, error=f"worker failed: {type(outcome).__name__}: {outcome}")
    write_json(spec.result_path, result)
    return result
