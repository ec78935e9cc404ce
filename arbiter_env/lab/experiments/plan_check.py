"""Checks a whole comparison before any run starts, and reports every problem at once.

A typo in a controller kwarg, an env setting or a task override, an impossible seed or an
encoding the agent cannot use would otherwise fail every run separately, minutes later (or, for
RL agents, after training). Here the driver builds what the runs will build, without training
anything:

* every task with the experiment's ``task_overrides`` (names, types, ranges);
* one environment per task and distinct ``env`` setting, which loads the task's data, so a
  missing or damaged data file is reported here;
* every controller with its kwargs in that environment (an RL agent that will be trained: its
  resolved agent config, and whether the algorithm can act in the encoding);
* the seeds (integers in ``[0, 2**63)``).

Each problem is one line naming where it is (``tasks[0] cifar10-cnn: ...``,
``controllers[1] (label): ...``). :class:`PlanError` carries them all.
"""

from __future__ import annotations

import json
from typing import Any

from arbiter_env.config import ConfigError
from arbiter_env.controllers import controller_entry, controller_env_defaults, list_controllers
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.lab.experiments.config import import_modules
from arbiter_env.lab.experiments.plan import plan_runs
from arbiter_env.lab.experiments.worker import training_job
from arbiter_env.tasks import list_tasks, make_task
from arbiter_env.training.data import transient_data_cache

__all__ = ["PlanError", "check_plan"]

_MAX_SEED = 2**63


class PlanError(ConfigError):
    """The plan has problems; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(
            f"{count} in the experiment, nothing was run:\n" + "\n".join(f"  {p}" for p in problems)
        )


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        # Multi-line messages (a missing data set lists every folder searched) are folded into
        # one line; the first line says what is wrong, the rest is detail.
        text = lines[0].rstrip(":.") + ": " + "; ".join(lines[1:])
    prefix = (
        "" if isinstance(error, ValueError | FileNotFoundError) else f"{type(error).__name__}: "
    )
    return prefix + text


def check_plan(config: Any) -> None:
    """Raises :class:`PlanError` listing every problem of ``config`` (an ``ExperimentConfig``).

    The data sets it loads to build the environments are dropped from the process's cache when
    it returns: the driver does not need them (workers load their own), and a large one would
    stay in its memory for the whole comparison.
    """
    with transient_data_cache():
        _check_plan(config)


def _check_plan(config: Any) -> None:
    try:
        import_modules(config.imports)
    except ConfigError as error:
        raise PlanError([str(error)]) from None
    known_tasks, known_controllers = set(list_tasks()), set(list_controllers())
    problems = _seed_and_controller_problems(config, known_controllers)
    for task_index, task_name in enumerate(config.tasks):
        task_where = f"tasks[{task_index}] {task_name}"
        if task_name not in known_tasks:
            problems.append(f"{task_where}: unknown task; known: {', '.join(sorted(known_tasks))}.")
            continue
        problems += _task_problems(config, task_name, task_where, known_controllers)
    if problems:
        raise PlanError(list(dict.fromkeys(problems)))  # the same problem once, in order


def _seed_and_controller_problems(config: Any, known_controllers: set[str]) -> list[str]:
    """Problems of the seeds, and of each controller's name and training seed."""
    problems: list[str] = []
    for index, seed in enumerate(config.seeds):
        if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < _MAX_SEED):
            problems.append(f"seeds[{index}]: {seed!r} must be an integer in [0, 2**63).")
    for index, spec in enumerate(config.controllers):
        where = f"controllers[{index}] ({spec.name})"
        if spec.controller not in known_controllers:
            problems.append(
                f"{where}: unknown controller {spec.controller!r}; known: "
                f"{', '.join(sorted(known_controllers))}."
            )
        if spec.train_timesteps > 0 and not 0 <= spec.train_seed < _MAX_SEED:
            problems.append(f"{where}: train_seed {spec.train_seed} must be in [0, 2**63).")
    return problems


def _task_problems(
    config: Any, task_name: str, task_where: str, known_controllers: set[str]
) -> list[str]:
    """Problems of one task: its overrides, its environments and every controller in them."""
    try:
        task = make_task(task_name, **config.task_overrides)
    except (ValueError, TypeError) as error:
        return [f"{task_where}: task_overrides: {_one_line(error)}"]
    problems: list[str] = []
    envs: dict[str, Any] = {}  # one environment per distinct env setting
    for index, spec in enumerate(config.controllers):
        if spec.controller not in known_controllers:
            continue  # reported with the names
        # The env arguments of the runs (plan.run_env), unchecked: building the env checks them.
        env_kwargs = controller_env_defaults(spec.controller) | dict(config.env) | dict(spec.env)
        key = json.dumps(env_kwargs, sort_keys=True, default=str)
        if key not in envs:
            try:
                envs[key] = BatchSizeEnv(task, **env_kwargs)
            # TypeError: an unknown keyword argument.
            except (TypeError, ValueError, FileNotFoundError, OSError, RuntimeError) as error:
                envs[key] = None
                problems.append(f"{task_where}: env: {_one_line(error)}")
        if envs[key] is None:
            continue
        try:
            # The entry's training checks the contestant (and its training run, if any).
            job = _training_job(spec, task_name, config)
            training = controller_entry(spec.controller).training
            training.check(spec.controller, dict(spec.kwargs), envs[key], job)
        except (ValueError, TypeError, FileNotFoundError) as error:
            problems.append(f"{task_where}, controllers[{index}] ({spec.name}): {_one_line(error)}")
    return problems


def _training_job(spec: Any, task: str, config: Any) -> Any:
    """The training job the comparison plans for ``spec`` on ``task`` (``None``: not trained)."""
    if spec.train_timesteps <= 0:
        return None
    # Exactly the training run the comparison plans (plan_runs is pure: nothing is written).
    train, _ = plan_runs(config, ".")
    return training_job(next(r for r in train if r.task == task and r.label == spec.name))
