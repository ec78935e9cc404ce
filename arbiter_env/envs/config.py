"""The environment's arguments in one shape: :class:`EnvConfig`.

Every place that builds a :class:`~arbiter_env.envs.batch_size.BatchSizeEnv` describes it with an
``EnvConfig``: keyword arguments of ``gym.make`` and of the class, the ``env:`` sections of agent and
experiment YAML files, Arbiter's run config and the command line's ``-e KEY=VALUE``. Adding an
argument to the environment means adding a field here (and using it in the env); every one of those
paths then accepts it, with the same checks and the same errors.

Values are converted once, where they enter: :meth:`EnvConfig.from_mapping` takes the plain data of
a YAML file or of keyword arguments, :meth:`EnvConfig.parse` the ``KEY=VALUE`` strings of a command
line. After that they travel as typed values, never as strings.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from arbiter_env.checks import check_int
from arbiter_env.config import ConfigError, apply_overrides, to_dict
from arbiter_env.envs.actions import ACTION_ENCODINGS, ActionEncodingName
from arbiter_env.envs.divergence import DivergenceRule
from arbiter_env.envs.render import RENDER_MODES
from arbiter_env.envs.rewards import RewardConfig
from arbiter_env.tasks.families import FamilySplit, TaskFamily
from arbiter_env.tasks.registry import make_task
from arbiter_env.tasks.spec import Task
from arbiter_env.training.lr_schedule import LrSchedule
from arbiter_env.training.trainer import LR_SCALING_CHOICES, LrScaling, StatisticsSource

__all__ = ["EnvConfig", "EnvOverrides"]

EnvOverrides = dict[str, Any]
"""Some fields of an :class:`EnvConfig` (a partial config), checked and typed by
:meth:`EnvConfig.checked`: settings merged over others before an env is built."""

_STATISTICS_SOURCES = ("training", "probe")
_FAMILY_SPLITS = ("train", "test")


@dataclass
class EnvConfig:
    """The arguments of :class:`~arbiter_env.envs.batch_size.BatchSizeEnv`, typed, with their defaults.

    Build it directly, or with :meth:`from_mapping` (YAML data, keyword arguments; unknown keys
    are errors that suggest the closest name) or :meth:`parse` (``KEY=VALUE`` strings). Every
    value is checked when the config is built, and an error names the field and what to pass.
    ``BatchSizeEnv(config=...)`` takes one; ``BatchSizeEnv(task, **kwargs)`` and ``gym.make``
    build one from their keyword arguments. Each field is described once, in the Arguments
    section of :class:`~arbiter_env.envs.batch_size.BatchSizeEnv` (``help(BatchSizeEnv)``).
    """

    task: str | Task | TaskFamily = "digits-mlp"
    family_split: FamilySplit | None = None
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    action_encoding: ActionEncodingName = "discrete"
    num_intervals: int | None = None
    reward: RewardConfig = field(default_factory=RewardConfig)
    divergence: DivergenceRule = field(default_factory=DivergenceRule)
    lr_scaling: LrScaling = "none"
    base_batch_size: int | None = None
    lr_schedule: LrSchedule | None = None
    ladder_size: int | None = None
    record_wall_time: bool = False
    gradient_statistics: StatisticsSource = "training"
    render_mode: str | None = None

    # Fields whose `None` means "the default value" in keyword arguments (the env always took it).
    _NONE_IS_DEFAULT: ClassVar[tuple[str, ...]] = ("task_kwargs", "reward", "divergence")

    def __post_init__(self) -> None:
        """Checks every field; raises ``ConfigError`` (a ``ValueError``) naming the bad one."""
        if not isinstance(self.task, str | Task | TaskFamily):
            raise TypeError(
                f"`task` must be a task name or a Task, got {type(self.task).__name__}."
            )
        _check_choice("family_split", self.family_split, (*_FAMILY_SPLITS, None))  # None: a task
        if not isinstance(self.task_kwargs, dict):
            raise ConfigError(
                f"task_kwargs must be a dict of task arguments, got {type(self.task_kwargs).__name__}."
            )
        _check_choice("action_encoding", self.action_encoding, ACTION_ENCODINGS)
        _check_choice("lr_scaling", self.lr_scaling, LR_SCALING_CHOICES)
        _check_choice("gradient_statistics", self.gradient_statistics, _STATISTICS_SOURCES)
        if self.lr_schedule is not None:
            try:
                self.lr_schedule = LrSchedule.from_value(self.lr_schedule)
            except ValueError as error:
                raise ConfigError(str(error)) from None
        for name in ("num_intervals", "base_batch_size", "ladder_size"):
            value = getattr(self, name)
            if value is not None:
                try:
                    check_int(name, value, minimum=1)
                except ValueError as error:
                    raise ConfigError(
                        f"{error} Use a positive integer, or null for the default."
                    ) from None
        if not isinstance(self.record_wall_time, bool):
            raise ConfigError(
                f"record_wall_time must be True or False, got {self.record_wall_time!r}."
            )
        if not isinstance(self.reward, RewardConfig):
            raise ConfigError(
                f"reward must be a RewardConfig (or a mapping of its fields in YAML), got "
                f"{type(self.reward).__name__}."
            )
        if not isinstance(self.divergence, DivergenceRule):
            raise ConfigError(
                f"divergence must be a DivergenceRule (or a mapping of its fields in YAML), got "
                f"{type(self.divergence).__name__}."
            )
        if self.render_mode is not None and self.render_mode not in RENDER_MODES:
            raise ConfigError(
                f"Unknown render_mode {self.render_mode!r}; choose None or one of "
                f"{list(RENDER_MODES)}."
            )

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of the environment's arguments, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(EnvConfig))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, path: str = "") -> EnvConfig:
        """An ``EnvConfig`` from plain data: a YAML section or keyword arguments.

        Missing keys keep their defaults. ``reward`` and ``divergence`` may be mappings of their
        fields; ``None`` for ``task_kwargs``, ``reward`` or ``divergence`` means the default.

        Args:
            data: Field names to values.
            path: Prefix of key names in errors (``"env"`` gives ``env.num_intervals``).

        Raises:
            ConfigError: an unknown key (with the closest valid name) or a bad value.
        """
        return cls().updated(data, path=path)

    @classmethod
    def parse(cls, items: Iterable[str], *, path: str = "") -> dict[str, Any]:
        """``KEY=VALUE`` strings (``-e num_intervals=8``, ``reward.cost=updates``) as checked values.

        Each value is read as YAML once, here. Returns only the fields the items set, converted
        as :meth:`checked` does, ready to be merged over other settings and passed on.
        """
        return cls.checked(apply_overrides({}, list(items)), path=path)

    @classmethod
    def checked(
        cls, data: Mapping[str, Any], *, path: str = "", exclude: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The fields ``data`` sets, checked and converted to their types (a partial config).

        For settings that are merged over others before an env is built (an experiment's ``env:``
        over a controller's defaults). ``exclude`` maps fields that must not be set here to the
        reason, which the error quotes.

        Raises:
            ConfigError: an unknown or excluded key, or a bad value.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{path or 'env'}: expected a mapping of env arguments, got {type(data).__name__}."
            )
        for name, reason in (exclude or {}).items():
            if name in data:
                raise ConfigError(f"{_join(path, name)} cannot be set here: {reason}.")
        resolved = cls.from_mapping(data, path=path)
        return {name: getattr(resolved, name) for name in data}

    def updated(self, changes: Mapping[str, Any], *, path: str = "") -> EnvConfig:
        """A copy with ``changes`` (plain data or typed values) applied and checked."""
        _check_keys(changes, self.field_names(), path, "env argument")
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if value is None and name in self._NONE_IS_DEFAULT:
                value = _DEFAULTS[name]()
            elif name == "reward" and isinstance(value, Mapping):
                reward_fields = [f.name for f in dataclasses.fields(RewardConfig)]
                _check_keys(value, reward_fields, _join(path, "reward"), "key")
                value = RewardConfig(**value)
            elif name == "divergence" and isinstance(value, Mapping):
                value = DivergenceRule.from_value(dict(value))
            values[name] = value
        return dataclasses.replace(self, **values)

    # --- use ------------------------------------------------------------------------------------

    @property
    def task_name(self) -> str:
        """The task's or family's name, whether ``task`` holds a name or the object itself."""
        return self.task if isinstance(self.task, str) else self.task.name

    def env_config(self) -> EnvConfig:
        """Just the environment's arguments (of a config that extends this one, such as a run's)."""
        return EnvConfig(**self.as_kwargs())

    def as_kwargs(self) -> dict[str, Any]:
        """The fields as ``BatchSizeEnv`` keyword arguments (typed values, not copies)."""
        return {name: getattr(self, name) for name in EnvConfig.field_names()}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML, ``config.yaml`` and ``wandb.config``; :meth:`from_mapping` reads it."""
        return to_dict(self)


def init_signature() -> inspect.Signature:
    """``BatchSizeEnv.__init__`` as it is called: ``task``, then EnvConfig's fields, then ``config``.

    The env takes its keyword arguments as ``**kwargs`` (they build an ``EnvConfig``); this
    signature, set on it, lets ``help()`` and ``inspect.signature`` list each with its default.
    """
    keyword = inspect.Parameter.KEYWORD_ONLY
    defaults = EnvConfig()
    parameters = [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("task", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
    ]
    parameters += [
        inspect.Parameter(name, keyword, default=getattr(defaults, name))
        for name in EnvConfig.field_names()
        if name != "task"
    ]
    parameters.append(inspect.Parameter("config", keyword, default=None))
    return inspect.Signature(parameters, return_annotation=None)


_DEFAULTS = {
    "task_kwargs": dict,
    "reward": RewardConfig,
    "divergence": DivergenceRule,
}


def single_task(config: EnvConfig) -> Task:
    """The task of ``config`` (not a family), with its overrides, ``num_intervals`` and ``lr_schedule``."""
    if config.family_split is not None:
        raise ValueError(
            f"family_split={config.family_split!r} applies only to task families "
            "(arbiter_env.list_families()); leave it None for a single task."
        )
    task = config.task
    if isinstance(task, str):
        task = make_task(task, **config.task_kwargs)
    elif isinstance(task, Task):
        if config.task_kwargs:
            task = task.replace(**config.task_kwargs)
    else:  # a TaskFamily; BatchSizeEnv sends those to its family set-up
        raise TypeError(f"`task` must be a task name or a Task, got {type(task).__name__}.")
    if config.num_intervals is not None:
        task = task.replace(num_intervals=config.num_intervals)
    if config.lr_schedule is not None:
        task = task.replace(lr_schedule=config.lr_schedule)
    return task


def _check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        shown = [repr(c) for c in choices if c is not None]
        options = " or ".join([", ".join(shown[:-1]), shown[-1]] if len(shown) > 1 else shown)
        suffix = " (or None)" if None in choices else ""
        raise ConfigError(f"{name} must be {options}{suffix}, got {value!r}.")


def _check_keys(data: Mapping[str, Any], valid: Sequence[str], path: str, what: str) -> None:
    """Raises ``ConfigError`` for unknown keys, suggesting the closest valid name."""
    unknown = [key for key in data if key not in valid]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        hints.append(f"{_join(path, str(key))!r}{hint}")
    raise ConfigError(f"Unknown {what}(s) {', '.join(hints)}; valid: {', '.join(valid)}.")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
