"""Running one :class:`~arbiter_env.lab.experiments.plan.RunSpec` in the current process.

:func:`execute_run` is what the engines' worker processes and Ray tasks execute; it and the
``RunSpec`` it takes are pickled by module path, so both stay importable top-level names.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from arbiter_env.controllers import TrainingJob, controller_entry, make_controller, run_episode
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.lab.experiments.config import import_modules
from arbiter_env.lab.experiments.files import RESULT_FILE, read_json, write_json
from arbiter_env.lab.experiments.plan import RunSpec
from arbiter_env.lab.runfolder import count_log_rows, file_digest
from arbiter_env.lab.runlog import RunLogger
from arbiter_env.lab.runlog.summary import record_metrics
from arbiter_env.lab.workers import exit_if_driver_gone
from arbiter_env.tasks import make_task


def failed_result(spec: RunSpec, error: str | None) -> dict[str, Any]:
    """A run's result record before (or instead of) a successful episode."""
    return {
        "kind": spec.kind,
        "label": spec.label,
        "controller": spec.controller,
        "task": spec.task,
        "seed": spec.seed,
        "status": "failed",
        "error": error,
    }


def execute_run(spec: RunSpec) -> dict[str, Any]:
    """Runs one unit of work in the current process and writes its result file.

    Never raises for a failure of the run itself: the error is recorded in the result (status
    ``"failed"``), so one broken controller cannot stop a comparison. This is the function the
    local engine's worker processes and the Ray tasks execute.
    """
    started = time.perf_counter()
    result: dict[str, Any] = {
        **failed_result(spec, error=None),
        "host": os.uname().nodename if hasattr(os, "uname") else "",
    }
    # A rerun (resume after a failure) starts from an empty folder: the logger appends.
    shutil.rmtree(spec.folder, ignore_errors=True)
    Path(spec.folder).mkdir(parents=True)
    try:
        _prepare_worker(spec)
        if spec.kind == "train":
            result.update(_train(spec))
        else:
            result.update(_evaluate(spec))
        result["status"] = "ok"
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        result["error"] = f"{type(error).__name__}: {error}"
        result["traceback"] = traceback.format_exc()
    result["run_seconds"] = time.perf_counter() - started
    # What the logs held when the run finished: resume trusts the run only while they still
    # match (a second writer, a crash mid-append or an edit would change them).
    result["log_rows"] = count_log_rows(spec.log_path)
    result["log_sha256"] = file_digest(spec.log_path)
    exit_if_driver_gone()  # an orphan must not commit into a folder a resumed driver may own
    write_json(spec.result_path, result)
    return result


_WARMED_UP = False


def _warm_up() -> None:
    """Pays a fresh process's one-time costs before any timer starts.

    The first optimizer built in a process imports ``torch._dynamo`` (seconds); without this the
    first run of every worker would report an inflated wall time.
    """
    global _WARMED_UP
    if not _WARMED_UP:
        import torch

        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        _WARMED_UP = True


def _prepare_worker(spec: RunSpec) -> None:
    import torch

    # One intra-op thread: the runs already fill the cores, and a fixed thread count keeps float
    # reductions (and so the results) identical whichever engine or worker runs them.
    torch.set_num_threads(1)
    # Controllers may use the global RNGs (SB3 does); seed them per run so that a result never
    # depends on which runs a worker process happened to execute before.
    random.seed(spec.seed)
    np.random.seed(spec.seed % 2**32)  # noqa: NPY002 - seeding legacy global state on purpose
    torch.manual_seed(spec.seed)
    import_modules(spec.imports)
    # W&B's console banners would interleave with the driver's progress bar.
    os.environ.setdefault("WANDB_SILENT", "true")
    _warm_up()


def _make_env(spec: RunSpec) -> Any:

    overrides = dict(spec.task_overrides)
    task = make_task(spec.task, **overrides)
    # Wall time goes in the results table; the env leaves it out of `info` unless asked.
    return BatchSizeEnv(task, **{"record_wall_time": True, **spec.env})


def _run_logger(spec: RunSpec, job_type: str) -> RunLogger:
    """The run's logger: local JSONL in the run's folder, then W&B in the comparison's group."""
    settings = spec.wandb
    return RunLogger(
        spec.folder,
        {
            "experiment": spec.experiment,
            "label": spec.label,
            "controller": spec.controller,
            "controller_kwargs": spec.kwargs,
            "task": spec.task,
            "task_overrides": spec.task_overrides,
            "env": spec.env,
            "seed": spec.seed,
            "train_timesteps": spec.train_timesteps,
        },
        wandb_mode=settings["mode"],
        project=settings["project"],
        entity=settings["entity"],
        group=settings["group"],
        job_type=job_type,
        tags=[spec.task, spec.controller, spec.label],
        name=f"{spec.label}-{spec.task}-"
        + ("train" if spec.kind == "train" else f"seed{spec.seed}"),
    )


def training_job(spec: RunSpec) -> TrainingJob:
    """The :class:`TrainingJob` of a run that trains (or loads what such a run trained)."""
    assert spec.model_path is not None
    return TrainingJob(
        controller=spec.controller,
        label=spec.label,
        kwargs=dict(spec.kwargs),
        task=spec.task,
        task_overrides=dict(spec.task_overrides),
        env=dict(spec.env),
        seed=spec.seed,
        total_timesteps=spec.train_timesteps,
        work_dir=Path(spec.folder),
        model_path=Path(spec.model_path),
    )


def _train(spec: RunSpec) -> dict[str, Any]:
    """Trains a controller once per task, as its registry entry says, and saves it."""
    started = time.perf_counter()
    with _run_logger(spec, job_type="train") as log:
        controller_entry(spec.controller).training.train(training_job(spec), log)
    return {"train_timesteps": spec.train_timesteps, "train_seconds": time.perf_counter() - started}


def _evaluate(spec: RunSpec) -> dict[str, Any]:
    """Runs one seeded episode of the controller and logs every interval."""
    env = _make_env(spec)
    controller = _evaluated_controller(spec, env)
    tracker = _IntervalTracker(spec.target_accuracy)
    handle = env.unwrapped.trainer.add_step_hook(tracker.record_hypergradient)
    with _run_logger(spec, job_type="evaluate") as log:
        log.describe(env, controller)

        def on_step(record: Any, info: dict[str, Any]) -> None:
            log.log_interval(info, reward=record.rewards[-1], extra=tracker.interval_extra(record))

        tracker.started = time.perf_counter()
        try:
            record = run_episode(env, controller, spec.seed, on_step=on_step)
        finally:
            handle.remove()
        wall_time = time.perf_counter() - tracker.started
        summary = _episode_summary(spec, record, tracker, wall_time)
        log.log_episode(record, controller=spec.label)
        log.set_summary(summary, in_run_file=False)  # result.json is the run's record
    if log.wandb_error is not None:
        summary["wandb_error"] = log.wandb_error
    return summary


def _evaluated_controller(spec: RunSpec, env: Any) -> Any:
    """The controller as built, or as trained by this comparison's training run."""
    if spec.model_path is None:
        kwargs = dict(spec.kwargs)
        if controller_entry(spec.controller).seeded:
            # Agents with their own randomness (Arbiter's φ and validation draws) take the
            # episode's seed, so that seeds vary the agent as well as the run.
            kwargs.setdefault("seed", spec.seed)
        return make_controller(spec.controller, env, **kwargs)
    train_result = read_json(Path(spec.model_path).parent / RESULT_FILE)
    if not isinstance(train_result, dict) or train_result.get("status") != "ok":
        error = (train_result if isinstance(train_result, dict) else {}).get("error", "no result")
        raise RuntimeError(f"training of {spec.label!r} on {spec.task} failed: {error}")
    return controller_entry(spec.controller).training.load(training_job(spec), env)


class _IntervalTracker:
    """Per-interval extras of an evaluation episode: elapsed time, hypergradients, target.

    SGD-HD and Adam-HD expose the latest learning-rate hypergradient; it is collected after every
    inner update so that its variance can be compared with and without batch-size adaptation.
    """

    def __init__(self, target_accuracy: float | None):
        self.target_accuracy = target_accuracy
        self.started = time.perf_counter()
        self.hypergradients: list[float] = []
        self.reached: dict[str, float] = {}
        self._logged = 0

    def record_hypergradient(self, step: Any) -> None:
        """Step hook: keeps the optimizer's latest hypergradient, if it has one."""
        value = getattr(step.trainer.optimizer, "last_hypergradient", None)
        if value is not None:
            self.hypergradients.append(float(value))

    def interval_extra(self, record: Any) -> dict[str, Any]:
        """The extra columns of the interval just finished; notes when the target is reached."""
        elapsed = time.perf_counter() - self.started
        extra: dict[str, Any] = {"elapsed": elapsed}
        interval_values = self.hypergradients[self._logged :]
        self._logged = len(self.hypergradients)
        if interval_values:
            extra["hypergradient_mean"] = float(np.mean(interval_values))
            extra["hypergradient_var"] = float(np.var(interval_values))
        target = self.target_accuracy
        if target is not None and not self.reached and record.val_accuracies[-1] >= target:
            self.reached.update(samples=record.samples[-1], seconds=elapsed)
        return extra


def _episode_summary(
    spec: RunSpec, record: Any, tracker: _IntervalTracker, wall_time: float
) -> dict[str, Any]:
    """The evaluation's result metrics: the episode's summary and this run's extras."""
    hypergradients = tracker.hypergradients
    return {
        **record_metrics(record),
        "wall_time": wall_time,
        "target_accuracy": spec.target_accuracy,
        "samples_to_target": tracker.reached.get("samples", math.nan),
        "seconds_to_target": tracker.reached.get("seconds", math.nan),
        "hypergradient_var": float(np.var(hypergradients)) if hypergradients else math.nan,
        "hypergradient_steps": len(hypergradients),
    }
