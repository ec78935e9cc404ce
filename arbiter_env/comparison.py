"""The comparison runner: every controller on every task and seed, on equal terms.

An experiment is a YAML file under ``configs/experiments/`` loaded into :class:`ExperimentConfig`.
:func:`run_comparison` expands it into *runs* (controller × task × seed), executes each run in a
separate process (``engine="local"``) or as a Ray task (``engine="ray"``), and writes a run folder::

    RUN_DIR/
      config.yaml                       the resolved experiment (what ran, exactly)
      runs/TASK/LABEL/seed-S/           one folder per run, written by arbiter_env.logging.RunLogger:
        result.json                     status, metrics, the error if it failed
        intervals.jsonl                 one line per scheduling interval
        episodes.jsonl, run.json, wandb/
      models/TASK/LABEL/                a controller trained by this comparison (PPO): model.zip,
                                        result.json, its training logs
      results.csv, results.md           mean ± standard error over seeds, per task and controller,
                                        then IQM and P(improvement) across tasks (arbiter_env.report)
      aggregates.json                   those aggregates with their bootstrap CIs (strict JSON)
      runs.csv                          one row per run
      plots/TASK/*.png, *.pdf           batch size and validation loss against samples, test accuracy
      plots/performance_profile.*       run-score distribution across tasks and seeds
      wandb/                            W&B runs (offline by default), one group per comparison

Every controller sees the same seeds, the same task and the same sample budget; a seed fixes the
inner network's initialisation, batch order and probes (``BatchSizeEnv.reset(seed=...)``), so two
controllers on one seed start from the same network. Runs are deterministic on the CPU: both
engines give the same numbers, except for wall-clock times.

A run that raises is recorded as failed (its error goes into the table) and the others carry on.
Rerunning with the same ``run_dir`` resumes: runs whose result file records success are skipped;
failed and missing runs run again. :func:`rebuild_report` rebuilds the tables and plots from the
saved files alone (``arbiter plot RUN_DIR``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import io
import json
import math
import os
import random
import re
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from arbiter_env.config import ConfigError, load_yaml, save_yaml, to_dict
from arbiter_env.logging import INTERVALS_FILE, RunLogger, wandb_init_timeout
from arbiter_env.report import aggregate, dumps_strict, markdown_table, summarize
from arbiter_env.runfolder import (
    RunFolderBusy,
    RunFolderLock,
    atomic_write_text,
    count_log_rows,
    file_digest,
)
from arbiter_env.user_code import add_import_option

EngineName = Literal["local", "ray"]
WandbMode = Literal["offline", "online", "disabled"]

CONFIG_FILE = "config.yaml"
RESULT_FILE = "result.json"
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
RUNS_CSV = "runs.csv"
AGGREGATES_JSON = "aggregates.json"

EXIT_IO_ERROR = 74
"""Exit status when the run folder cannot be written (``EX_IOERR`` of ``sysexits.h``)."""

_LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


# --- configuration ------------------------------------------------------------------------------


@dataclass
class ControllerSpec:
    """One contestant: a registered controller under a label of its own.

    Args:
        name: Label shown in tables, plots and file names (letters, digits, ``._+-``); unique.
        controller: Registered controller name (``arbiter controllers`` lists them).
        kwargs: Keyword arguments for the controller's factory.
        train_timesteps: When > 0, the controller is trained first with
            ``learn(total_timesteps=...)`` once per task, saved under ``models/`` and then
            evaluated on the experiment's seeds (PPO). 0: evaluated as built; online learners
            such as Arbiter learn inside the episode.
        train_seed: Seed of that training (the env's and the global RNGs'); distinct from the
            evaluation seeds by default, so that no evaluation episode was seen in training.
        env: ``BatchSizeEnv`` arguments for this controller only (for example
            ``action_encoding: continuous`` for SAC), on top of the experiment's ``env``. They
            may change how actions are encoded, never the task or its budget.
    """

    name: str
    controller: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    train_timesteps: int = 0
    train_seed: int = 12345
    env: dict[str, Any] = field(default_factory=dict)


@dataclass
class EngineConfig:
    """Where the runs execute.

    Args:
        name: ``"local"``: a pool of ``max_workers`` processes on this machine; ``"ray"``: Ray
            tasks, on the cluster at ``ray_address`` or on a local Ray started with ``num_cpus``.
        max_workers: Processes of the local engine.
        ray_address: Address of an existing Ray cluster (``ray://...`` or ``HOST:PORT``). With a
            remote cluster the run folder must be on a file system that every node sees.
        num_cpus: CPUs of the local Ray started when no address is given.
    """

    name: EngineName = "local"
    max_workers: int = 2
    ray_address: str | None = None
    num_cpus: int = 2


@dataclass
class WandbConfig:
    """Weights & Biases settings. Offline by default: runs land in ``RUN_DIR/wandb``.

    Args:
        mode: ``"offline"`` (upload later with ``wandb sync``), ``"online"`` or ``"disabled"``.
        project: W&B project.
        entity: W&B entity (team or user); ``None`` uses the default.
        group: Group holding all runs of this comparison; default ``NAME-TIMESTAMP``, fixed in
            the saved config so that a resumed comparison stays in its group.
    """

    mode: WandbMode = "offline"
    project: str = "arbiter-env"
    entity: str | None = None
    group: str | None = None


@dataclass
class ExperimentConfig:
    """A comparison: controllers × tasks × seeds, with identical seeds and budgets.

    Args:
        name: Experiment name; the default run folder is ``output_dir/NAME-TIMESTAMP``.
        description: Free text, copied into the report.
        tasks: Registered task names (``arbiter tasks``).
        controllers: The contestants, see :class:`ControllerSpec`.
        seeds: Evaluation seeds; every controller runs every seed on every task.
        task_overrides: ``make_task`` keyword arguments for every task: builder arguments such as
            ``data_dir`` and field overrides such as ``epochs`` or ``optimizer: {lr: 0.05}``.
        env: ``BatchSizeEnv`` arguments shared by all controllers (``num_intervals``,
            ``lr_scaling``, ``reward``, ...).
        target_accuracy: Validation accuracy for the time-to-target columns; ``None`` omits them.
        imports: Modules imported in every worker before it builds anything, so that controllers
            and tasks registered by user code exist there too.
        engine: Where runs execute, see :class:`EngineConfig`.
        wandb: Weights & Biases settings, see :class:`WandbConfig`.
        output_dir: Parent folder of the default run folder.
    """

    name: str
    tasks: list[str]
    controllers: list[ControllerSpec]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    description: str = ""
    task_overrides: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    target_accuracy: float | None = None
    imports: list[str] = field(default_factory=list)
    engine: EngineConfig = field(default_factory=EngineConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    output_dir: str = "runs/comparisons"

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("tasks: list at least one task.")
        if not self.controllers:
            raise ConfigError("controllers: list at least one controller.")
        if not self.seeds:
            raise ConfigError("seeds: list at least one seed.")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: {self.seeds} repeats a seed.")
        labels = [spec.name for spec in self.controllers]
        for index, label in enumerate(labels):
            if not _LABEL_PATTERN.match(label):
                raise ConfigError(
                    f"controllers[{index}].name: {label!r} must start with a letter or digit and "
                    "use only letters, digits and ._+- (it names files)."
                )
            if labels.count(label) > 1:
                raise ConfigError(f"controllers[{index}].name: the label {label!r} is used twice.")
        for index, spec in enumerate(self.controllers):
            if spec.train_timesteps < 0:
                raise ConfigError(f"controllers[{index}].train_timesteps must be >= 0.")
        if self.engine.max_workers < 1:
            raise ConfigError("engine.max_workers must be >= 1.")
        if self.engine.num_cpus < 1:
            raise ConfigError("engine.num_cpus must be >= 1.")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise ConfigError(f"target_accuracy must be in (0, 1], got {self.target_accuracy}.")


def load_experiment(file: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Loads ``configs/experiments/NAME.yaml`` (plus ``key=value`` overrides) and checks it.

    Raises:
        ConfigError: naming the unknown key, the wrong type, or the unknown task or controller.
    """
    config = load_yaml(ExperimentConfig, file, overrides)
    return config


def validate_names(config: ExperimentConfig) -> None:
    """Checks that every task and controller the experiment names exists.

    Runs in the driver before anything starts, so a typo fails in a second, not after the
    other runs. Modules in ``config.imports`` are imported first (they may register names).
    """
    from arbiter_env.controller_registry import list_controllers
    from arbiter_env.tasks import list_tasks

    _import_modules(config.imports)
    tasks, controllers = list_tasks(), list_controllers()
    for index, task in enumerate(config.tasks):
        if task not in tasks:
            raise ConfigError(f"tasks[{index}]: unknown task {task!r}; known: {', '.join(tasks)}.")
    for index, spec in enumerate(config.controllers):
        if spec.controller not in controllers:
            raise ConfigError(
                f"controllers[{index}].controller: unknown controller {spec.controller!r}; "
                f"known: {', '.join(controllers)}."
            )


# --- runs ---------------------------------------------------------------------------------------


@dataclass
class RunSpec:
    """One unit of work: train a controller (``kind="train"``) or evaluate it on one seed.

    Plain data, so that it pickles into a worker process or a Ray task unchanged.
    """

    kind: Literal["train", "evaluate"]
    label: str
    controller: str
    kwargs: dict[str, Any]
    task: str
    seed: int
    task_overrides: dict[str, Any]
    env: dict[str, Any]
    imports: list[str]
    target_accuracy: float | None
    folder: str
    """The run's own folder (result.json and the logger's files)."""
    model_path: str | None
    """Where the trained controller is saved (training) or loaded from (evaluation)."""
    train_timesteps: int
    wandb: dict[str, Any]
    experiment: str

    @property
    def result_path(self) -> Path:
        return Path(self.folder) / RESULT_FILE

    @property
    def log_path(self) -> Path:
        return Path(self.folder) / INTERVALS_FILE

    @property
    def key(self) -> str:
        return f"{self.task}/{self.label}/{self.kind}/{self.seed}"


def plan_runs(config: ExperimentConfig, run_dir: str | Path) -> tuple[list[RunSpec], list[RunSpec]]:
    """Expands the experiment into training runs and evaluation runs (in config order)."""
    from arbiter_env.controller_registry import controller_env_defaults

    run_dir = Path(run_dir).resolve()
    wandb_settings = dataclasses.asdict(config.wandb) | {"dir": str(run_dir)}
    train, evaluate = [], []
    for task in config.tasks:
        for spec in config.controllers:
            kwargs = dict(spec.kwargs)
            if isinstance(kwargs.get("checkpoint"), str):
                # Absolute, so that a worker whose folder differs (a Ray worker) finds it.
                kwargs["checkpoint"] = str(Path(kwargs["checkpoint"]).expanduser().resolve())
            common = dict(
                label=spec.name,
                controller=spec.controller,
                kwargs=kwargs,
                task=task,
                task_overrides=dict(config.task_overrides),
                # The controller's own env defaults (Arbiter: continuous actions), then the
                # experiment's env, then the entry's.
                env=controller_env_defaults(spec.controller) | dict(config.env) | dict(spec.env),
                imports=list(config.imports),
                target_accuracy=config.target_accuracy,
                train_timesteps=spec.train_timesteps,
                wandb=wandb_settings,
                experiment=config.name,
            )
            model_path = None
            if spec.train_timesteps > 0:
                model_dir = run_dir / "models" / task / spec.name
                # train_rl_agent saves its final checkpoint folder as RUN_FOLDER/final.
                model_path = str(model_dir / "final")
                train.append(
                    RunSpec(
                        kind="train",
                        seed=spec.train_seed,
                        folder=str(model_dir),
                        model_path=model_path,
                        **common,
                    )
                )
            for seed in config.seeds:
                evaluate.append(
                    RunSpec(
                        kind="evaluate",
                        seed=seed,
                        folder=str(run_dir / "runs" / task / spec.name / f"seed-{seed}"),
                        model_path=model_path,
                        **common,
                    )
                )
    return train, evaluate


def execute_run(spec: RunSpec) -> dict[str, Any]:
    """Runs one unit of work in the current process and writes its result file.

    Never raises for a failure of the run itself: the error is recorded in the result (status
    ``"failed"``), so one broken controller cannot stop a comparison. This is the function the
    local engine's worker processes and the Ray tasks execute.
    """
    started = time.perf_counter()
    result: dict[str, Any] = {
        **_failed_result(spec, error=None),
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
    _write_json(spec.result_path, result)
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
    _import_modules(spec.imports)
    # W&B's console banners would interleave with the driver's progress bar.
    os.environ.setdefault("WANDB_SILENT", "true")
    _warm_up()


def _import_modules(modules: Iterable[str]) -> None:
    import arbiter_env  # noqa: F401 - registers the environment and the built-in tasks
    from arbiter_env.user_code import UserImportError, add_working_folder, import_modules

    # The working folder is importable in the driver and in every worker, as with `python -m`.
    add_working_folder()
    try:
        import_modules(modules, source="imports")
    except UserImportError as error:
        raise ConfigError(str(error)) from None


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
    """Trains a controller once per task (PPO) and saves it for the evaluation runs.

    stable-baselines3 agents train with the RL package's own ``train_rl_agent`` on the same task,
    task overrides and environment settings as the evaluation; any other controller is trained
    with its ``learn(total_timesteps=...)`` and saved with its ``save``.
    """
    assert spec.model_path is not None
    started = time.perf_counter()
    if _is_sb3(spec.controller):
        _train_sb3(spec)
    else:
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
    return {"train_timesteps": spec.train_timesteps, "train_seconds": time.perf_counter() - started}


def _is_sb3(controller: str) -> bool:
    try:
        from arbiter_env.agents.sb3 import ALGORITHMS
    except ImportError:
        return False
    return controller in ALGORITHMS


# BatchSizeEnv arguments that the RL package's EnvConfig carries into its training envs.
_SB3_ENV_KEYS = (
    "action_encoding",
    "num_intervals",
    "reward",
    "divergence",
    "lr_scaling",
    "ladder_size",
)


def _train_sb3(spec: RunSpec) -> None:
    from arbiter_env.agents.sb3 import train_rl_agent
    from arbiter_env.logging import IntervalLoggingCallback

    config = sb3_training_config(spec)
    with _run_logger(spec, job_type="train") as log:
        final = train_rl_agent(
            config, spec.folder, callbacks=[IntervalLoggingCallback(log, controller=spec.label)]
        )
        log.set_summary({"train_timesteps": spec.train_timesteps, "checkpoint": str(final)})
    assert spec.model_path is not None and Path(final) == Path(spec.model_path)


def sb3_training_config(spec: RunSpec) -> Any:
    """The resolved ``AgentConfig`` a training run of an SB3 controller uses (checked, not run).

    Raises:
        ConfigError: settings the RL training cannot take, or a bad agent config.
    """
    from arbiter_env.agents.sb3 import load_agent_config

    unsupported = sorted(set(spec.env) - set(_SB3_ENV_KEYS))
    if unsupported:
        raise ConfigError(
            f"{spec.label}: env settings {unsupported} cannot be passed to the RL training envs "
            f"(supported: {', '.join(_SB3_ENV_KEYS)})."
        )
    unknown = sorted(set(spec.kwargs) - {"config", "overrides"})
    if unknown:
        raise ConfigError(
            f"{spec.label}: kwargs {unknown} are not used to train an SB3 agent here; use "
            "kwargs.config (an agent YAML) and kwargs.overrides (key=value strings)."
        )
    # The same task, overrides and env settings as the evaluation episodes; the comparison's
    # budget and seed; then the entry's own overrides.
    settings = {
        "total_timesteps": spec.train_timesteps,
        "seed": spec.seed,
        "env.task_kwargs": spec.task_overrides,
        **{f"env.{key}": value for key, value in spec.env.items()},
    }
    overrides = [f"{key}={_yaml_inline(value)}" for key, value in settings.items()]
    return load_agent_config(
        spec.kwargs.get("config", spec.controller),
        task=spec.task,
        overrides=[*overrides, *spec.kwargs.get("overrides", [])],
    )


def _yaml_inline(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...")


def _load_trained(spec: RunSpec, env: Any) -> Any:
    """The controller trained by this comparison's training run, ready to evaluate."""
    assert spec.model_path is not None
    if _is_sb3(spec.controller):
        from arbiter_env.controller_registry import make_controller

        kwargs = {k: v for k, v in spec.kwargs.items() if k not in ("config", "overrides")}
        return make_controller(spec.controller, env, checkpoint=spec.model_path, **kwargs)
    controller = _make_controller(spec, env)
    load = getattr(type(controller), "load", None)
    if load is None:
        raise TypeError(
            f"Controller {spec.controller!r} was trained but cannot load {spec.model_path}."
        )
    return load(spec.model_path, env=env)


def _evaluate(spec: RunSpec) -> dict[str, Any]:
    """Runs one seeded episode of the controller and logs every interval."""
    from arbiter_env.controllers import run_episode

    env = _make_env(spec)
    if spec.model_path is None:
        controller = _make_controller(spec, env)
    else:
        train_result = _read_json(Path(spec.model_path).parent / RESULT_FILE)
        if not isinstance(train_result, dict) or train_result.get("status") != "ok":
            error = (train_result if isinstance(train_result, dict) else {}).get(
                "error", "no result"
            )
            raise RuntimeError(f"training of {spec.label!r} on {spec.task} failed: {error}")
        controller = _load_trained(spec, env)

    # SGD-HD and Adam-HD expose the latest learning-rate hypergradient; collect it after every
    # inner update so that its variance can be compared with and without batch-size adaptation.
    hypergradients: list[float] = []

    def record_hypergradient(step: Any) -> None:
        value = getattr(step.trainer.optimizer, "last_hypergradient", None)
        if value is not None:
            hypergradients.append(float(value))

    handle = env.unwrapped.trainer.add_step_hook(record_hypergradient)
    reached: dict[str, float] = {}
    logged = 0

    with _run_logger(spec, job_type="evaluate") as log:
        log.describe(env, controller)

        def on_step(record: Any, info: dict[str, Any]) -> None:
            nonlocal logged
            elapsed = time.perf_counter() - started
            extra: dict[str, Any] = {"elapsed": elapsed}
            interval_values = hypergradients[logged:]
            logged = len(hypergradients)
            if interval_values:
                extra["hypergradient_mean"] = float(np.mean(interval_values))
                extra["hypergradient_var"] = float(np.var(interval_values))
            target = spec.target_accuracy
            if target is not None and not reached and record.val_accuracies[-1] >= target:
                reached.update(samples=record.samples[-1], seconds=elapsed)
            log.log_interval(info, reward=record.rewards[-1], extra=extra)

        started = time.perf_counter()
        try:
            record = run_episode(env, controller, spec.seed, on_step=on_step)
        finally:
            handle.remove()
        wall_time = time.perf_counter() - started
        summary = {
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
            "samples_to_target": reached.get("samples", math.nan),
            "seconds_to_target": reached.get("seconds", math.nan),
            "hypergradient_var": float(np.var(hypergradients)) if hypergradients else math.nan,
            "hypergradient_steps": len(hypergradients),
        }
        log.log_episode(record, controller=spec.label)
        log.set_summary(summary)
    if log.wandb_error is not None:
        summary["wandb_error"] = log.wandb_error
    return summary


def _mean_batch_size(record: Any) -> float:
    """Sample-weighted mean batch size of the episode."""
    if not record.samples:
        return math.nan
    slices = np.diff([0, *record.samples])
    return float(np.average(record.batch_sizes, weights=slices)) if slices.sum() else math.nan


# --- engines ------------------------------------------------------------------------------------


class _LocalEngine:
    """A pool of worker processes on this machine."""

    def __init__(self, max_workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # "forkserver": a plain fork of this process would inherit torch's thread pools and locks,
        # which can deadlock. The fork server imports the heavy modules once (torch alone takes
        # seconds) and forks each worker from that clean, single-threaded state, so workers start
        # fast, and a second comparison in the same process (a resume) reuses the server.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(_PRELOAD))
        from arbiter_env.workers import die_with_driver

        # Workers end when this driver ends, however it ends (SIGKILL included): orphans would
        # keep writing into the folder while a resumed driver plans it.
        self.pool = ProcessPoolExecutor(
            max_workers=max_workers,
            mp_context=context,
            initializer=die_with_driver,
            initargs=(os.getpid(),),
        )

    def submit(self, spec: RunSpec) -> Any:
        return self.pool.submit(execute_run, spec)

    def wait(self, handles: list[Any]) -> list[tuple[Any, dict[str, Any] | BaseException]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        results = []
        for future in done:
            try:
                results.append((future, future.result()))
            except BaseException as error:  # noqa: BLE001 - e.g. a worker killed by the OS
                results.append((future, error))
        return results

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# Imported once by the local engine's fork server; importing has no side effects such as threads.
_PRELOAD = (
    "arbiter_env.comparison",
    "sklearn.datasets",
    "torch._dynamo",
    "wandb",
)


class _RayEngine:
    """Ray tasks, on an existing cluster or on a local Ray started (and stopped) here.

    Ray 2.x turns on token authentication when ``ray.init()`` starts a new local cluster: it sets
    ``RAY_AUTH_MODE=token`` in this process and creates ``~/.ray/auth_token`` if missing. Both are
    local; nothing reaches the network. The variable is restored on close so that it does not leak
    into later Ray use of this process. To join a cluster that uses tokens, set
    ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` (or ``RAY_AUTH_TOKEN_PATH``) yourself.
    """

    def __init__(self, address: str | None, num_cpus: int):
        try:
            import ray
        except ImportError:
            raise RuntimeError(
                "The ray engine needs Ray: pip install 'arbiter-env[ray]'."
            ) from None
        self.ray = ray
        self._saved_auth_mode = os.environ.get("RAY_AUTH_MODE")
        self.owns_cluster = False
        if ray.is_initialized():
            pass  # the caller's Ray session; use it and leave it running
        elif address:
            _check_ray_address(address)
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                # Workers must find the modules the driver finds (configs' `imports`, tests).
                runtime_env={"env_vars": {"PYTHONPATH": _python_path()}},
            )
            self.owns_cluster = True
        self.remote = ray.remote(num_cpus=1, max_retries=0)(execute_run)

    def submit(self, spec: RunSpec) -> Any:
        return self.remote.remote(spec)

    def wait(self, handles: list[Any]) -> list[tuple[Any, dict[str, Any] | BaseException]]:
        ready, _ = self.ray.wait(handles, num_returns=1)
        results = []
        for ref in ready:
            try:
                results.append((ref, self.ray.get(ref)))
            except Exception as error:  # noqa: BLE001 - a worker crash, reported as a failure
                results.append((ref, error))
        return results

    def close(self) -> None:
        if self.owns_cluster:
            self.ray.shutdown()
            if self._saved_auth_mode is None:
                os.environ.pop("RAY_AUTH_MODE", None)
            else:
                os.environ["RAY_AUTH_MODE"] = self._saved_auth_mode


RAY_CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a TCP connection to a Ray address before giving up on it."""


def _check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    """Fails fast when a ``host:port`` Ray address does not accept connections.

    ``ray.init(address=...)`` keeps retrying an unreachable address for minutes; a plain TCP
    connection with a time-out tells the same in seconds. ``auto`` and ``local`` are left to Ray.
    """
    import socket

    target = address.removeprefix("ray://")
    if target in ("auto", "local") or ":" not in target:
        return
    host, _, port_text = target.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"engine.ray_address: {address!r} is not host:port.") from None
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            pass
    except OSError as error:
        raise ConfigError(
            f"engine.ray_address: cannot reach a Ray cluster at {address} within {timeout:g} s "
            f"({error}). Start it (ray start --head) or drop --ray-address to start a local Ray."
        ) from None


def _python_path() -> str:
    entries = [p for p in sys.path if p and Path(p).is_dir()]
    return os.pathsep.join(dict.fromkeys(entries))


# --- the runner ---------------------------------------------------------------------------------


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


def default_run_dir(config: ExperimentConfig) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.output_dir) / f"{config.name}-{stamp}"


def run_comparison(
    config: ExperimentConfig,
    run_dir: str | Path | None = None,
    engine: EngineName | None = None,
    ray_address: str | None = None,
    progress: bool = True,
) -> ComparisonResult:
    """Runs every controller of ``config`` on every task and seed, then writes the report.

    Args:
        config: The experiment.
        run_dir: Run folder; default ``output_dir/NAME-TIMESTAMP``. An existing folder of the
            same experiment resumes: finished runs are skipped.
        engine: ``"local"`` or ``"ray"``; default ``config.engine.name``.
        ray_address: Ray cluster to join; default ``config.engine.ray_address`` (None starts a
            local Ray).
        progress: Show a progress bar and failures as they happen.

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
            return _run_locked(config, run_dir, engine_config, progress, started)
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
) -> ComparisonResult:
    config = _resolve(config, run_dir, engine_config)
    from arbiter_env.plan_check import check_plan

    # The whole plan, before anything runs: every problem at once, in seconds.
    check_plan(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(config, run_dir / CONFIG_FILE)

    train_specs, eval_specs = plan_runs(config, run_dir)
    finished = {spec.key: _finished_result(spec) for spec in train_specs + eval_specs}
    pending_train = [s for s in train_specs if finished[s.key] is None]
    trained_ok = {s.model_path for s in train_specs if finished[s.key] is not None}
    # Evaluations of a controller still to be trained wait for its training run.
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

    slots = engine_config.max_workers if engine_config.name == "local" else engine_config.num_cpus
    display = _Progress(total, skipped, enabled=progress, slots=slots)
    executed = 0
    if total:
        runner = (
            _LocalEngine(engine_config.max_workers)
            if engine_config.name == "local"
            else _RayEngine(engine_config.ray_address, engine_config.num_cpus)
        )
        try:
            in_flight: dict[Any, RunSpec] = {}
            # Training first: it is the longest work and the evaluations that wait on it.
            for spec in pending_train + ready:
                in_flight[runner.submit(spec)] = spec
            display.running(list(in_flight.values()))
            while in_flight:
                for handle, outcome in runner.wait(list(in_flight)):
                    spec = in_flight.pop(handle)
                    result = _as_result(spec, outcome)
                    executed += 1
                    display.advance(spec, result)
                    if spec.kind == "train":
                        for follower in waiting.pop(str(spec.model_path), []):
                            in_flight[runner.submit(follower)] = follower
                    display.running(list(in_flight.values()))
        finally:
            display.close()
            runner.close()

    results = [_read_json(spec.result_path) for spec in eval_specs]
    results = [result if isinstance(result, dict) else {} for result in results]
    report = rebuild_report(run_dir)
    wall_time = time.perf_counter() - started
    failed = sum(1 for r in results if r.get("status") != "ok")
    _log_wandb_summary(config, run_dir, report, wall_time)
    return ComparisonResult(run_dir, results, executed, failed, report, wall_time)


def _resolve(config: ExperimentConfig, run_dir: Path, engine: EngineConfig) -> ExperimentConfig:
    """Fixes what must stay the same on resume (the W&B group) and checks a reused folder."""
    saved_file = run_dir / CONFIG_FILE
    saved = None
    if saved_file.is_file():
        saved = load_experiment(saved_file)
        mismatched = [
            key for key in _RESULT_KEYS if to_dict(config).get(key) != to_dict(saved).get(key)
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


# Settings that change results; a resumed folder must agree on them.
_RESULT_KEYS = (
    "tasks",
    "controllers",
    "seeds",
    "task_overrides",
    "env",
    "target_accuracy",
)


def _finished_result(spec: RunSpec) -> dict[str, Any] | None:
    """The run's result if it finished and its record is intact; ``None`` to (re)run it.

    A record that is not what this run would write (not a mapping, another task, label or seed,
    a string seed), or whose interval log no longer matches what the result recorded, is damaged:
    it is re-run with a warning rather than trusted or allowed to crash the resume.
    """
    if not spec.result_path.exists():
        return None
    result = _read_json(spec.result_path)
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


def _as_result(spec: RunSpec, outcome: dict[str, Any] | BaseException) -> dict[str, Any]:
    if isinstance(outcome, dict):
        return outcome
    # The worker died before it could write its result (killed, out of memory, ...).
    result = _failed_result(spec, error=f"worker failed: {type(outcome).__name__}: {outcome}")
    _write_json(spec.result_path, result)
    return result


class _Progress:
    """A rich progress bar over runs, naming the runs in progress; failures printed as they happen.

    Runs start in submission order, so the first ``slots`` unfinished ones are those running
    (PPO training first: it is submitted first).
    """

    def __init__(self, total: int, skipped: int, *, enabled: bool, slots: int = 1):
        self.slots = max(1, slots)
        self.enabled = enabled and total > 0
        self.bar = None
        if enabled and skipped:
            print(f"Resuming: {skipped} finished run(s) skipped, {total} to run.")
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]compare"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
        )
        self.task = self.bar.add_task("", total=total)
        self.bar.start()

    @staticmethod
    def _name(spec: RunSpec) -> str:
        what = "training" if spec.kind == "train" else f"seed {spec.seed}"
        return f"{spec.label} {spec.task} {what}"

    def running(self, specs: list[RunSpec]) -> None:
        """Names the runs in progress: the first ``slots`` of those submitted and unfinished."""
        if self.bar is None:
            return
        names = [self._name(spec) for spec in specs[: self.slots]]
        queued = len(specs) - len(names)
        text = "running: " + ", ".join(names) + (f" (+{queued} queued)" if queued > 0 else "")
        self.bar.update(self.task, description=text if names else "")

    def advance(self, spec: RunSpec, result: dict[str, Any]) -> None:
        if self.bar is None:
            return
        if result.get("status") != "ok":
            self.bar.console.print(f"[red]failed[/red] {self._name(spec)}: {result.get('error')}")
        self.bar.update(self.task, advance=1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# --- the report ---------------------------------------------------------------------------------


def load_results(run_dir: str | Path) -> tuple[ExperimentConfig | None, list[dict[str, Any]]]:
    """The saved config (if any) and every evaluation result under ``run_dir/runs``.

    Each result gets ``"log"``: its interval rows from the JSONL file (empty if missing).
    """
    run_dir = Path(run_dir)
    config = load_experiment(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).is_file() else None
    results = []
    for path in sorted((run_dir / "runs").glob(f"*/*/seed-*/{RESULT_FILE}")):
        result = _read_json(path)
        problem = _report_problem(result)
        if problem is not None:
            warnings.warn(f"{path}: skipped, {problem}.", stacklevel=2)
            continue
        assert isinstance(result, dict)
        result["log"] = _read_jsonl(path.parent / INTERVALS_FILE)
        results.append(result)
    if config is not None:
        # Table order follows the config; results of other labels or seeds (a folder edited by
        # hand) are kept after them.
        order = {(t, c.name): i for i, (t, c) in enumerate(_pairs(config))}
        results.sort(key=lambda r: (order.get((r["task"], r["label"]), len(order)), r["seed"]))
    return config, results


def _pairs(config: ExperimentConfig) -> list[tuple[str, ControllerSpec]]:
    return [(task, spec) for task in config.tasks for spec in config.controllers]


def rebuild_report(run_dir: str | Path) -> dict[str, Any]:
    """Writes the tables (CSV, Markdown) and the plots of ``run_dir`` from its saved files.

    Reruns nothing; used at the end of every comparison and by ``arbiter plot RUN_DIR``.

    Returns:
        ``{"rows": summary rows, "aggregates": rows across tasks, "results_csv": path,
        "results_md": path, "runs_csv": path, "plots": [paths], "markdown": text}``.
    """
    from arbiter_env import plots

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run folder {run_dir} does not exist.")
    config, results = load_results(run_dir)
    if not results:
        raise FileNotFoundError(f"No results under {run_dir / 'runs'}; is it a comparison folder?")
    target = config.target_accuracy if config is not None else _first_target(results)
    rows = summarize(results, target)
    aggregates = aggregate(results)
    title = config.name if config is not None else run_dir.name
    markdown = markdown_table(rows, target, title=title, aggregates=aggregates)
    if config is not None and config.description:
        markdown = markdown.replace("\n\n", f"\n\n{config.description.strip()}\n\n", 1)
    _write_csv(run_dir / RESULTS_CSV, rows)
    atomic_write_text(run_dir / RESULTS_MD, markdown)
    _write_csv(run_dir / RUNS_CSV, [_run_row(r) for r in results])
    atomic_write_text(run_dir / AGGREGATES_JSON, dumps_strict(aggregates, indent=2) + "\n")
    plot_paths = plots.plot_comparison(results, run_dir / "plots")
    return {
        "rows": rows,
        "aggregates": aggregates,
        "results_csv": run_dir / RESULTS_CSV,
        "results_md": run_dir / RESULTS_MD,
        "runs_csv": run_dir / RUNS_CSV,
        "plots": plot_paths,
        "markdown": markdown,
    }


def _first_target(results: list[dict[str, Any]]) -> float | None:
    for result in results:
        if result.get("target_accuracy") is not None:
            return float(result["target_accuracy"])
    return None


def _failed_result(spec: RunSpec, error: str | None) -> dict[str, Any]:
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


_RUN_COLUMNS = (
    "task",
    "label",
    "controller",
    "seed",
    "status",
    "final_val_loss",
    "final_val_accuracy",
    "test_loss",
    "test_accuracy",
    "samples",
    "updates",
    "mean_batch_size",
    "wall_time",
    "samples_to_target",
    "seconds_to_target",
    "hypergradient_var",
    "diverged",
    "error",
)


def _run_row(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result.get(key) for key in _RUN_COLUMNS}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return "" if value is None else value


def _log_wandb_summary(
    config: ExperimentConfig, run_dir: Path, report: dict[str, Any], wall_time: float
) -> None:
    """Adds a summary run to the comparison's W&B group: the results table and the plots.

    The run's id is fixed by the project, group and name, and it resumes if it exists, so a
    rerun of the comparison updates its one summary run instead of adding another.
    """
    if config.wandb.mode == "disabled":
        return
    try:
        import wandb

        from arbiter_env.wandb_utils import prepare_wandb, summary_run_id

        name = f"{config.name}-summary"
        prepare_wandb(config.wandb.mode)
        run = wandb.init(
            project=config.wandb.project,
            entity=config.wandb.entity,
            group=config.wandb.group,
            job_type="summary",
            name=name,
            id=summary_run_id(config.wandb.project, config.wandb.entity, config.wandb.group, name),
            resume="allow",
            tags=["summary"],
            dir=str(run_dir.resolve()),
            mode=config.wandb.mode,
            config=to_dict(config),
            reinit="finish_previous",
            settings=wandb.Settings(
                silent=True,
                console="off",
                x_disable_stats=True,
                disable_git=True,
                init_timeout=wandb_init_timeout(),
            ),
        )
        rows = report["rows"]
        columns = list(dict.fromkeys(key for row in rows for key in row))
        table = wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])
        images = {
            # plots/TASK/NAME, and plots/NAME for the plots across tasks.
            "plots/" + Path(p).relative_to(run_dir / "plots").with_suffix("").as_posix(): (
                wandb.Image(str(p))
            )
            for p in report["plots"]
        }
        run.log({"results": table, **images})
        run.summary["wall_time"] = wall_time
        run.finish()
    except Exception as error:  # noqa: BLE001 - the local report is already written
        warnings.warn(f"W&B summary not logged ({type(error).__name__}: {error}).", stacklevel=2)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Temp file, fsync, rename: a run interrupted mid-write never leaves a result that looks
    # finished, and a reader never sees half a file. Strict JSON: a non-finite number (a
    # diverged run's loss) is written as null, not NaN.
    atomic_write_text(path, dumps_strict(data, indent=2))


def _read_json(path: Path) -> Any:
    """The parsed file (any JSON value), or ``None`` if it is missing or not valid JSON."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _report_problem(result: Any) -> str | None:
    """Why a saved result cannot go into a report (``None`` if it can)."""
    if not isinstance(result, dict):
        return f"{RESULT_FILE} is not a JSON object"
    for key, kind in (("task", str), ("label", str), ("seed", int), ("status", str)):
        if not isinstance(result.get(key), kind) or isinstance(result.get(key), bool):
            return f"its {key!r} is missing or not a {kind.__name__}"
    return None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows, bad = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(number)
    if bad:
        warnings.warn(
            f"{path}: skipped {len(bad)} damaged line(s) ({', '.join(map(str, bad[:5]))}"
            f"{', ...' if len(bad) > 5 else ''}); rerun the run to repair it.",
            stacklevel=2,
        )
    return rows


# --- command line -------------------------------------------------------------------------------


def add_comparison_subcommands(subparsers: Any) -> None:
    """Adds ``compare`` and ``plot`` to an ``argparse`` subparsers object."""
    compare = subparsers.add_parser(
        "compare",
        help="run controllers × tasks × seeds and write tables and plots",
        description="Runs an experiment from configs/experiments/NAME.yaml. An existing "
        "--run-dir of the same experiment resumes: finished runs are skipped.",
    )
    compare.add_argument("--config", required=True, help="Experiment YAML file.")
    compare.add_argument("--engine", choices=["local", "ray"], default=None)
    compare.add_argument("--ray-address", default=None, help="Join this Ray cluster.")
    compare.add_argument("--run-dir", default=None, help="Run folder (resumes if it exists).")
    compare.add_argument("--wandb", choices=["offline", "online", "disabled"], default=None)
    compare.add_argument(
        "--max-workers", type=int, default=None, help="Processes of the local engine."
    )
    compare.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
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
    add_import_option(plot)
    plot.set_defaults(func=plot_command, handler=plot_command)


def compare_command(args: argparse.Namespace) -> int:
    """``arbiter compare``: 0 when every run succeeded, 1 when some failed, 2 on a bad config."""
    overrides = list(getattr(args, "overrides", None) or [])
    if getattr(args, "wandb", None):
        overrides.append(f"wandb.mode={args.wandb}")
    if getattr(args, "max_workers", None) is not None:  # 0 is an error, not "the default"
        overrides.append(f"engine.max_workers={args.max_workers}")
    run_dir = args.run_dir
    try:
        config = load_experiment(args.config, overrides)
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
        report = rebuild_report(args.run_dir)
    except (ConfigError, FileNotFoundError) as error:
        print(f"arbiter plot: error: {error}", file=sys.stderr)
        return 2
    print(report["markdown"])
    print(
        f"Wrote {report['results_csv']}, {report['results_md']} and {len(report['plots'])} plots."
    )
    return 0


__all__ = [
    "ComparisonResult",
    "ControllerSpec",
    "EngineConfig",
    "ExperimentConfig",
    "RunSpec",
    "WandbConfig",
    "add_comparison_subcommands",
    "compare_command",
    "execute_run",
    "load_experiment",
    "load_results",
    "markdown_table",
    "plan_runs",
    "plot_command",
    "rebuild_report",
    "run_comparison",
    "summarize",
    "validate_names",
]
