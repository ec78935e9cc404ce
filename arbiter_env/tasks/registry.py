"""Named tasks: the built-in ones and those users register.

A registry entry is a *task builder*: a function returning a :class:`Task`. Builders may take
keyword arguments (``data_dir`` for the file-backed data sets, sizes for the synthetic task), so
``make_task("cifar10-cnn", data_dir="~/data", epochs=2)`` passes ``data_dir`` to the builder and
applies ``epochs`` as a field override of the built task.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import multiprocessing
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from arbiter_env.tasks import data_files, datasets, models
from arbiter_env.tasks.spec import OptimizerConfig, Task

TaskBuilder = Callable[..., Task]

_REGISTRY: dict[str, TaskBuilder] = {}

DATA_DIR_ENV_VAR = "ARBITER_DATA_DIR"


def register_task(name: str, task: Task | TaskBuilder, *, overwrite: bool = False) -> None:
    """Registers ``task`` under ``name`` so that ``gym.make(..., task=name)`` accepts it.

    Args:
        name: Registry key.
        task: A :class:`Task`, or a function returning one (it may take keyword arguments, which
            ``make_task`` forwards).
        overwrite: Replace an existing entry of the same name instead of raising.

    When the call runs while an importable module is being imported (``register_task`` at the
    top level of ``my_tasks.py``), the module's name is remembered in the environment variable
    ``ARBITER_ENV_TASK_MODULES``, which worker processes started later inherit
    (``SubprocVecEnv``, rl-zoo3's ``--vec-env subproc``, process pools): a worker that does not
    know the name imports that module and finds it. Tasks registered in ``__main__`` (a
    notebook, a script's ``if __name__ == "__main__":``) cannot be found that way; name them
    ``"module:task"`` from an importable module, or pass the :class:`Task` object itself.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"A task name must be a non-empty string, got {name!r}.")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"Task {name!r} is already registered; pass overwrite=True to replace it.")
    if isinstance(task, Task):
        _REGISTRY[name] = lambda: task
    elif callable(task):
        _REGISTRY[name] = task
    else:
        raise TypeError(f"Register a Task or a function returning one, got {type(task).__name__}.")
    _remember_registering_module(name, inspect.currentframe())


TASK_MODULES_ENV_VAR = "ARBITER_ENV_TASK_MODULES"


def _remember_registering_module(name: str, frame: object) -> None:
    caller = getattr(frame, "f_back", None)
    module = caller.f_globals.get("__name__") if caller is not None else None
    spec = caller.f_globals.get("__spec__") if caller is not None else None
    # Only a module imported by name (it has a spec) can be imported again in a worker.
    if not module or spec is None or module in ("__main__", "__mp_main__"):
        return
    if module.startswith("arbiter_env."):
        return  # built-ins are registered on import of the package anyway
    modules = _task_modules()
    if modules.get(name) != module:
        modules[name] = module
        os.environ[TASK_MODULES_ENV_VAR] = json.dumps(modules, sort_keys=True)


def _task_modules() -> dict[str, str]:
    try:
        modules = json.loads(os.environ.get(TASK_MODULES_ENV_VAR) or "{}")
    except ValueError:
        return {}
    return modules if isinstance(modules, dict) else {}


def make_task(name: str, **kwargs: object) -> Task:
    """Builds the registered task ``name``.

    Keyword arguments that the task's builder accepts go to the builder; the rest are field
    overrides of the built :class:`Task` (for example ``epochs=2`` or ``optimizer={"lr": 0.05}``).

    ``name`` may be ``"module:task-name"``, in the style of Gymnasium's ``"module:EnvId"``: the
    module is imported first, so a task that the module registers when it is imported is found in
    any process, including fresh worker processes (``SubprocVecEnv``, rl-zoo3's
    ``--vec-env subproc``) that never ran the code that registered it in the parent.
    """
    if name not in _REGISTRY and ":" in name:
        module, _, name = name.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValueError(
                f"Task '{module}:{name}': importing module {module!r} failed ({error}). The part "
                "before ':' must be an importable module that registers the task."
            ) from error
    if name not in _REGISTRY and name in _task_modules():
        # Registered in another process (our parent) by a module this one has not imported.
        with contextlib.suppress(ImportError):
            importlib.import_module(_task_modules()[name])
    if name not in _REGISTRY:
        raise ValueError(_unknown_task_message(name))
    builder = _REGISTRY[name]
    accepted = inspect.signature(builder).parameters
    builder_kwargs = {key: value for key, value in kwargs.items() if key in accepted}
    overrides = {key: value for key, value in kwargs.items() if key not in accepted}
    task = builder(**builder_kwargs)
    return task.replace(**overrides) if overrides else task


def _unknown_task_message(name: str) -> str:
    message = (
        f"Unknown task {name!r}. Registered tasks: {', '.join(list_tasks())}. "
        "Register your own with arbiter_env.register_task(name, task)."
    )
    if multiprocessing.parent_process() is not None:
        # A worker process (SubprocVecEnv, rl-zoo3 --vec-env subproc, a process pool) starts
        # fresh: it knows only the tasks that modules register when they are imported.
        message += (
            f" This is a worker process (pid {os.getpid()}): it does not see tasks that the "
            "parent registered at run time (in a notebook, or under `if __name__ == "
            '"__main__":`). Register the task at the top level of an importable module and '
            f"name it 'your_module:{name}' (that module is then imported first), or pass the "
            f"Task object itself (task=arbiter_env.make_task({name!r}) in the parent), which is "
            "pickled to the workers, or use DummyVecEnv."
        )
    return message


def needs_data_files(name: str) -> bool:
    """Whether task ``name`` reads data files the user must already have (a ``data_dir``)."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown task {name!r}. Registered tasks: {', '.join(list_tasks())}.")
    return "data_dir" in inspect.signature(_REGISTRY[name]).parameters


def builder_arguments(name: str) -> set[str]:
    """Keyword arguments the builder of task ``name`` takes (``data_dir``, ...); empty if unknown."""
    builder = _REGISTRY.get(name)
    if builder is None:
        return set()
    return {
        parameter.name
        for parameter in inspect.signature(builder).parameters.values()
        if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    }


def list_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    return sorted(_REGISTRY)


# --- built-in tasks -----------------------------------------------------------------------------

# Default task. SGD with momentum 0.9 at lr 0.05 over 10 epochs makes the batch size matter in both
# directions: the best fixed size is interior to the ladder (`benchmarks/fixed_batch_grid.py`;
# the table is in docs/benchmarks.md).
DIGITS_OPTIMIZER = OptimizerConfig(name="sgd", lr=0.05, momentum=0.9)


def _digits_mlp() -> Task:
    return Task(
        name="digits-mlp",
        data=datasets.load_digits,
        model=partial(models.mlp, hidden_sizes=(128,)),
        optimizer=DIGITS_OPTIMIZER,
        epochs=10,
        num_intervals=20,
    )


def _mnist1d(model: str) -> TaskBuilder:
    def build() -> Task:
        is_cnn = model == "cnn"
        return Task(
            name=f"mnist1d-{model}",
            data=partial(datasets.load_mnist1d, channels_first=is_cnn),
            model=models.small_cnn if is_cnn else partial(models.mlp, hidden_sizes=(256, 256)),
            optimizer=OptimizerConfig(name="sgd", lr=0.05, momentum=0.9),
            epochs=10,
            num_intervals=20,
        )

    return build


def _synthetic_teacher(
    num_train: int = 2000,
    num_test: int = 1000,
    input_dim: int = 20,
    num_classes: int = 5,
    teacher_hidden: int = 32,
    label_noise: float = 0.1,
    data_seed: int = 0,
) -> Task:
    data = partial(
        datasets.make_synthetic_teacher,
        num_train=num_train,
        num_test=num_test,
        input_dim=input_dim,
        num_classes=num_classes,
        hidden=teacher_hidden,
        label_noise=label_noise,
        seed=data_seed,
    )
    return Task(
        name="synthetic-teacher",
        data=data,
        model=partial(models.mlp, hidden_sizes=(64,)),
        optimizer=OptimizerConfig(name="sgd", lr=0.05, momentum=0.9),
        epochs=10,
        num_intervals=20,
    )


_FILE_DATASETS: dict[str, Callable[[Path], datasets.ClassificationData]] = {
    "mnist": partial(data_files.load_idx, name="mnist"),
    "fashion-mnist": partial(data_files.load_idx, name="fashion-mnist"),
    "cifar10": partial(data_files.load_cifar, num_classes=10),
    "cifar100": partial(data_files.load_cifar, num_classes=100),
}

_FILE_MODELS: dict[str, Callable] = {
    "mlp": partial(models.mlp, hidden_sizes=(256,)),
    "cnn": models.small_cnn,
    "wrn-16-4": models.wide_resnet,
}


def _file_task(dataset: str, model: str) -> TaskBuilder:
    # The paper trains WRN-16-4 with SGD, momentum 0.9, weight decay 5e-4, starting at batch 128.
    lr = 0.1 if model == "wrn-16-4" else 0.05
    weight_decay = 5e-4 if model == "wrn-16-4" else 0.0

    def build(data_dir: str | os.PathLike | None = None) -> Task:
        if data_dir is None:
            data_dir = os.environ.get(DATA_DIR_ENV_VAR, "~/data")
        directory = Path(data_dir).expanduser()
        return Task(
            name=f"{dataset}-{model}",
            data=partial(_FILE_DATASETS[dataset], directory),
            model=_FILE_MODELS[model],
            optimizer=OptimizerConfig(name="sgd", lr=lr, momentum=0.9, weight_decay=weight_decay),
            epochs=10,
            num_intervals=20,
        )

    build.__doc__ = (
        f"{dataset} with a {model}, read from `data_dir` (default: ${DATA_DIR_ENV_VAR} or ~/data)."
    )
    return build


register_task("digits-mlp", _digits_mlp)
register_task("mnist1d-mlp", _mnist1d("mlp"))
register_task("mnist1d-cnn", _mnist1d("cnn"))
register_task("synthetic-teacher", _synthetic_teacher)
for _dataset in _FILE_DATASETS:
    for _model in _FILE_MODELS:
        register_task(f"{_dataset}-{_model}", _file_task(_dataset, _model))
