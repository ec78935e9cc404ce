"""The plan of a comparison: its runs (training and evaluation), a pure function of the config.

:func:`plan_runs` reads nothing from disk and starts nothing; the runner decides which planned runs
still have to execute (resume) and the worker executes one :class:`RunSpec`.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from arbiter_env.controllers import controller_env_defaults
from arbiter_env.envs.config import EnvConfig, EnvOverrides
from arbiter_env.lab.experiments.config import ControllerSpec, ExperimentConfig, path_component
from arbiter_env.lab.experiments.files import RESULT_FILE
from arbiter_env.lab.runlog import INTERVALS_FILE


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
    env: EnvOverrides
    """The run's env arguments (:func:`run_env`); the task comes from ``task``."""
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
        """The run's ``result.json``."""
        return Path(self.folder) / RESULT_FILE

    @property
    def log_path(self) -> Path:
        """The run's per-interval log."""
        return Path(self.folder) / INTERVALS_FILE

    @property
    def key(self) -> str:
        """``task/label/kind/seed``: unique within a plan."""
        return f"{self.task}/{self.label}/{self.kind}/{self.seed}"


# EnvConfig fields that an experiment sets through its own keys, never through `env:`.
_SET_ELSEWHERE = {
    "task": "list the tasks under tasks:",
    "task_kwargs": "put task arguments under task_overrides:",
    "family_split": "experiments run single tasks (tasks:), not families",
}


def run_env(config: ExperimentConfig, spec: ControllerSpec) -> EnvOverrides:
    """The env arguments of ``spec``'s runs: a partial :class:`EnvConfig`, checked and typed.

    The controller's own env defaults (Arbiter: continuous actions), then the experiment's
    ``env``, then the entry's. The task and its overrides are the run's ``task`` and
    ``task_overrides``.

    Raises:
        ConfigError: an unknown env argument (naming the closest one), a bad value, or a field
            that the experiment sets elsewhere (``task``, ``task_kwargs``, ``family_split``).
    """
    index = config.controllers.index(spec)
    return {
        **EnvConfig.checked(
            controller_env_defaults(spec.controller), path=f"env defaults of {spec.controller!r}"
        ),
        **EnvConfig.checked(config.env, path="env", exclude=_SET_ELSEWHERE),
        **EnvConfig.checked(spec.env, path=f"controllers[{index}].env", exclude=_SET_ELSEWHERE),
    }


def plan_runs(config: ExperimentConfig, run_dir: str | Path) -> tuple[list[RunSpec], list[RunSpec]]:
    """Expands the experiment into training runs and evaluation runs (in config order)."""
    run_dir = Path(run_dir).resolve()
    wandb_settings = dataclasses.asdict(config.wandb) | {"dir": str(run_dir)}
    train: list[RunSpec] = []
    evaluate: list[RunSpec] = []
    for task in config.tasks:
        for spec in config.controllers:
            kwargs = dict(spec.kwargs)
            if isinstance(kwargs.get("checkpoint"), str):
                # Absolute, so that a worker whose folder differs (a Ray worker) finds it.
                kwargs["checkpoint"] = str(Path(kwargs["checkpoint"]).expanduser().resolve())
            run = functools.partial(
                RunSpec,
                label=spec.name,
                controller=spec.controller,
                kwargs=kwargs,
                task=task,
                task_overrides=dict(config.task_overrides),
                env=run_env(config, spec),
                imports=list(config.imports),
                target_accuracy=config.target_accuracy,
                train_timesteps=spec.train_timesteps,
                wandb=wandb_settings,
                experiment=config.name,
            )
            model_path = None
            if spec.train_timesteps > 0:
                model_dir = run_dir / "models" / path_component(task) / spec.name
                # train_rl_agent saves its final checkpoint folder as RUN_FOLDER/final.
                model_path = str(model_dir / "final")
                train.append(
                    run(
                        kind="train",
                        seed=spec.train_seed,
                        folder=str(model_dir),
                        model_path=model_path,
                    )
                )
            for seed in config.seeds:
                folder = run_dir / "runs" / path_component(task) / spec.name / f"seed-{seed}"
                evaluate.append(
                    run(kind="evaluate", seed=seed, folder=str(folder), model_path=model_path)
                )
    return train, evaluate
