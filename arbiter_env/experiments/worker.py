"""Running one :class:`~arbiter_env.experiments.plan.RunSpec` in the current process.

:func:`execute_run` is what the engines' worker processes and Ray tasks execute; it and the
``RunSpec`` it takes are pickled by module path, so both stay importable top-level names.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from arbiter_env.config import ConfigError
from arbiter_env.experiments.config import import_modules
from arbiter_env.experiments.files import RESULT_FILE, read_json, write_json
from arbiter_env.experiments.plan import RunSpec
from arbiter_env.runfolder import count_log_rows, file_digest
from arbiter_env.runlog import RunLogger
from arbiter_env.runlog.summary import mean_batch_size
from arbiter_env.workers import exit_if_driver_gone


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
    except BaseException as error:  # noqa: BLE001 - a failed run is data, not a crash
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
    from arbiter_env.env import BatchSizeEnv
    from arbiter_env.tasks import make_task

    overrides = dict(spec.task_overrides)
    task = make_task(spec.task, **overrides)
    # Wall time goes in the results table; the env leaves it out of `info` unless asked.
    return BatchSizeEnv(task, **{"record_wall_time": True, **spec.env})


def _make_controller(spec: RunSpec, env: Any) -> Any:
    from arbiter_env.controller_registry import make_controller

    return make_controller(spec.controller, env, **spec.kwargs)


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


def _train(spec: RunSpec) -> dict[str, Any]:
    """Trains a controller once per task (PPO) and saves it for the evaluation runs."""
    assert spec.model_path is not None
    started = time.perf_counter()
    _training_of(spec.controller).train(spec)
    return {"train_timesteps": spec.train_timesteps, "train_seconds": time.perf_counter() - started}


def _load_trained(spec: RunSpec, env: Any) -> Any:
    """The controller trained by this comparison's training run, ready to evaluate."""
    assert spec.model_path is not None
    return _training_of(spec.controller).load(spec, env)


class _Training(Protocol):
    """How a controller with ``train_timesteps > 0`` is trained, saved and loaded back."""

    def train(self, spec: RunSpec) -> None:
        """Trains the controller of ``spec`` and saves it at ``spec.model_path``."""
        ...

    def load(self, spec: RunSpec, env: Any) -> Any:
        """The controller saved at ``spec.model_path``, for ``env``."""
        ...


def _training_of(controller: str) -> _Training:
    """The one place that picks how a registered controller trains.

    stable-baselines3 agents train with the RL package's own ``train_rl_agent``; any other
    controller with its ``learn(total_timesteps=...)``, ``save`` and ``load``.
    """
    return _SB3Training() if is_sb3(controller) else _LearnerTraining()


class _LearnerTraining:
    """A controller that trains itself: ``learn``, ``save``, and a classmethod ``load``."""

    def train(self, spec: RunSpec) -> None:
        assert spec.model_path is not None
        env = _make_env(spec)
        env.reset(seed=spec.seed)
        controller = _make_controller(spec, env)
        if "run_dir" not in spec.kwargs and hasattr(getattr(controller, "config", None), "run_dir"):
            # A search (static HPO) keeps its study beside the model it produces.
            spec = dataclasses.replace(spec, kwargs={**spec.kwargs, "run_dir": spec.folder})
            controller = _make_controller(spec, env)
        if not hasattr(controller, "learn") or not hasattr(controller, "save"):
            raise TypeError(
                f"Controller {spec.controller!r} has train_timesteps > 0 but no learn()/save()."
            )
        with _run_logger(spec, job_type="train") as log:
            log.describe(env, controller)
            controller.learn(total_timesteps=spec.train_timesteps)
            controller.save(spec.model_path)
            log.set_summary({"train_timesteps": spec.train_timesteps})

    def load(self, spec: RunSpec, env: Any) -> Any:
        controller = _make_controller(spec, env)
        load = getattr(type(controller), "load", None)
        if load is None:
            raise TypeError(
                f"Controller {spec.controller!r} was trained but cannot load {spec.model_path}."
            )
        return load(spec.model_path, env=env)


class _SB3Training:
    """A stable-baselines3 agent, trained on the same task, overrides and env as the evaluation."""

    def train(self, spec: RunSpec) -> None:
        from arbiter_env.agents.sb3 import train_rl_agent
        from arbiter_env.agents.sb3_logging import IntervalLoggingCallback

        config = sb3_training_config(spec)
        with _run_logger(spec, job_type="train") as log:
            final = train_rl_agent(
                config, spec.folder, callbacks=[IntervalLoggingCallback(log, controller=spec.label)]
            )
            log.set_summary({"train_timesteps": spec.train_timesteps, "checkpoint": str(final)})
        assert spec.model_path is not None and Path(final) == Path(spec.model_path)

    def load(self, spec: RunSpec, env: Any) -> Any:
        from arbiter_env.controller_registry import make_controller

        kwargs = {k: v for k, v in spec.kwargs.items() if k not in ("config", "overrides")}
        return make_controller(spec.controller, env, checkpoint=spec.model_path, **kwargs)


def is_sb3(controller: str) -> bool:
    """Whether ``controller`` is a stable-baselines3 algorithm (trained by the RL package)."""
    try:
        from arbiter_env.agents.sb3 import ALGORITHMS
    except ImportError:
        return False
    return controller in ALGORITHMS


def sb3_training_config(spec: RunSpec) -> Any:
    """The resolved ``AgentConfig`` a training run of an SB3 controller uses (checked, not run).

    Raises:
        ConfigError: settings the RL training cannot take, or a bad agent config.
    """
    from arbiter_env.agents.sb3 import load_agent_config

    unknown = sorted(set(spec.kwargs) - {"config", "overrides"})
    if unknown:
        raise ConfigError(
            f"{spec.label}: kwargs {unknown} are not used to train an SB3 agent here; use "
            "kwargs.config (an agent YAML) and kwargs.overrides (key=value strings)."
        )
    # The same task, overrides and env settings as the evaluation episodes; the comparison's
    # budget and seed (typed values); then the entry's own key=value overrides.
    settings = {
        "total_timesteps": spec.train_timesteps,
        "seed": spec.seed,
        "env.task_kwargs": spec.task_overrides,
        **{f"env.{key}": value for key, value in spec.env.items()},
    }
    return load_agent_config(
        spec.kwargs.get("config", spec.controller),
        task=spec.task,
        settings=settings,
        overrides=list(spec.kwargs.get("overrides", [])),
    )


def _evaluate(spec: RunSpec) -> dict[str, Any]:
    """Runs one seeded episode of the controller and logs every interval."""
    from arbiter_env.controllers import run_episode

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
        log.set_summary(summary)
    if log.wandb_error is not None:
        summary["wandb_error"] = log.wandb_error
    return summary


def _evaluated_controller(spec: RunSpec, env: Any) -> Any:
    """The controller as built, or as trained by this comparison's training run."""
    if spec.model_path is None:
        return _make_controller(spec, env)
    train_result = read_json(Path(spec.model_path).parent / RESULT_FILE)
    if not isinstance(train_result, dict) or train_result.get("status") != "ok":
        error = (train_result if isinstance(train_result, dict) else {}).get("error", "no result")
        raise RuntimeError(f"training of {spec.label!r} on {spec.task} failed: {error}")
    return _load_trained(spec, env)


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
    """The evaluation's result metrics."""
    hypergradients = tracker.hypergradients
    return {
        "final_val_loss": record.final_val_loss,
        "final_val_accuracy": record.val_accuracies[-1] if record.val_accuracies else math.nan,
        "test_loss": record.test_loss,
        "test_accuracy": record.test_accuracy,
        "samples": record.samples[-1] if record.samples else 0,
        "updates": record.total_updates,
        "wall_time": wall_time,
        "diverged": record.diverged,
        "episode_return": record.episode_return,
        "intervals": len(record.batch_sizes),
        "mean_batch_size": _mean_batch_size(record),
        "target_accuracy": spec.target_accuracy,
        "samples_to_target": tracker.reached.get("samples", math.nan),
        "seconds_to_target": tracker.reached.get("seconds", math.nan),
        "hypergradient_var": float(np.var(hypergradients)) if hypergradients else math.nan,
        "hypergradient_steps": len(hypergradients),
    }


def _mean_batch_size(record: Any) -> float:
    """Sample-weighted mean batch size of the episode (NaN if it trained on nothing)."""
    mean = mean_batch_size(record.batch_sizes, record.samples)
    return math.nan if mean is None else mean
