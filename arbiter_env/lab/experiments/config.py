"""What a comparison is: :class:`ExperimentConfig` and its parts, loaded from YAML and checked."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import arbiter_env  # noqa: F401 - registers the environment and the built-in tasks
from arbiter_env.config import ConfigError, load_yaml
from arbiter_env.controllers import list_controllers
from arbiter_env.envs.config import EnvOverrides
from arbiter_env.lab.wandb_utils import WandbMode
from arbiter_env.tasks import list_tasks
from arbiter_env.user_code import UserImportError, add_working_folder
from arbiter_env.user_code import import_modules as import_user_modules

EngineName = Literal["local", "ray"]

_LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9._+-]+")


def path_component(text: str, default: str = "unnamed") -> str:
    """``text`` as one safe folder name: other characters become ``-``, no leading ``.`` or ``-``.

    Experiment and task names become folder names inside ``output_dir`` / the run folder; a name
    such as ``../../x`` or ``a/b`` must not reach another folder.
    """
    component = _NOT_IN_A_NAME.sub("-", text).lstrip(".-")
    return component or default


# Settings that change results; a resumed folder must agree on them.
RESULT_KEYS = (
    "tasks",
    "controllers",
    "seeds",
    "task_overrides",
    "env",
    "target_accuracy",
)


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
        env: Fields of :class:`~arbiter_env.envs.config.EnvConfig` for this controller only (for
            example ``action_encoding: continuous`` for SAC), on top of the experiment's ``env``.
            They may change how actions are encoded, never the task or its budget. Checked and
            converted to their types when the runs are planned
            (``plan.run_env``), so that the plan check reports their problems with all others.
    """

    name: str
    controller: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    train_timesteps: int = 0
    train_seed: int = 12345
    env: EnvOverrides = field(default_factory=dict)


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
        env: Fields of :class:`~arbiter_env.envs.config.EnvConfig` shared by all controllers
            (``num_intervals``, ``lr_scaling``, ``reward``, ...); the task and its overrides come
            from ``tasks`` and ``task_overrides``. Checked and converted to their types when the
            runs are planned.
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
    env: EnvOverrides = field(default_factory=dict)
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
    return load_yaml(ExperimentConfig, file, overrides)


def validate_names(config: ExperimentConfig) -> None:
    """Checks that every task and controller the experiment names exists.

    Runs in the driver before anything starts, so a typo fails in a second, not after the
    other runs. Modules in ``config.imports`` are imported first (they may register names).
    """
    import_modules(config.imports)
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


def import_modules(modules: Iterable[str]) -> None:
    """Imports the modules of ``imports`` (plus the built-ins); a failure is a ``ConfigError``."""
    # The working folder is importable in the driver and in every worker, as with `python -m`.
    add_working_folder()
    try:
        import_user_modules(modules, source="imports")
    except UserImportError as error:
        raise ConfigError(str(error)) from None
