"""Agent configs: the typed :class:`AgentConfig` and its loading from YAML files and overrides.

The files' layout and the precedence of their parts: :mod:`arbiter_env.agents.sb3`, "Configs".
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from arbiter_env.agents.sb3.algorithms import (
    ALGORITHM_SPECS,
    Algo,
    algorithm_spec,
    algorithms_for,
    listed,
)
from arbiter_env.config import (
    ConfigError,
    apply_overrides,
    apply_values,
    from_dict,
    read_config_mapping,
)
from arbiter_env.envs.batch_size import EnvConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
"""The activations a config may name (``policy_kwargs.activation``); no other strings are parsed."""

CONFIG_DIR_ENV_VAR = "ARBITER_AGENT_CONFIG_DIR"


@dataclass
class PolicyConfig:
    """The policy network (``policy_kwargs`` of stable-baselines3), as plain data.

    Args:
        net_arch: Hidden layer sizes, e.g. ``[64, 64]``, used for every network of the agent; or a
            mapping with separate sizes: ``{pi: [...], vf: [...]}`` (PPO, A2C) or
            ``{pi: [...], qf: [...]}`` (SAC, TD3). DQN takes a list only.
        activation: A name from :data:`ACTIVATIONS`.
        ortho_init: Orthogonal initialisation (PPO, A2C); ``None`` keeps SB3's default.
        log_std_init: Initial log standard deviation of Gaussian actions (PPO/A2C with the
            continuous encoding, SAC); ``None`` keeps SB3's default.
    """

    net_arch: list[int] | dict[str, list[int]] = field(default_factory=lambda: [64, 64])
    activation: Literal["tanh", "relu", "elu", "leaky_relu", "gelu", "silu"] = "tanh"
    ortho_init: bool | None = None
    log_std_init: float | None = None

    def to_sb3(self, algo: str) -> dict[str, Any]:
        """``policy_kwargs`` for ``algo``; raises ``ConfigError`` for keys ``algo`` cannot use."""
        spec = algorithm_spec(algo)
        self._check_net_arch(spec.net_arch_heads, spec.label)
        kwargs: dict[str, Any] = {
            "net_arch": copy.deepcopy(self.net_arch),
            "activation_fn": ACTIVATIONS[self.activation],
        }
        for key, supported in (
            ("ortho_init", spec.ortho_init),
            ("log_std_init", spec.log_std_init),
        ):
            value = getattr(self, key)
            if value is None:
                continue
            if not supported:
                users = [name for name, s in ALGORITHM_SPECS.items() if getattr(s, key)]
                raise ConfigError(
                    f"policy_kwargs.{key} applies to {listed(users, 'and')}, not {algo}."
                )
            kwargs[key] = value
        return kwargs

    def _check_net_arch(self, heads: frozenset[str] | None, label: str) -> None:
        arch = self.net_arch
        if not isinstance(arch, dict):
            _check_layer_sizes(arch, "policy_kwargs.net_arch")
            return
        if heads is None:
            raise ConfigError(
                f"policy_kwargs.net_arch: {label} takes a list of layer sizes, "
                f"not a mapping ({arch})."
            )
        if set(arch) - heads or not arch:
            raise ConfigError(
                f"policy_kwargs.net_arch: keys for {label} are {sorted(heads)}, got {sorted(arch)}."
            )
        for head, sizes in arch.items():
            _check_layer_sizes(sizes, f"policy_kwargs.net_arch.{head}")


def _training_env() -> EnvConfig:
    # Episode wall time reaches the training logs through `info`.
    return EnvConfig(record_wall_time=True)


@dataclass
class VecNormalizeConfig:
    """Optional ``VecNormalize`` wrapper: running normalisation of observations and rewards."""

    enabled: bool = False
    norm_obs: bool = True
    norm_reward: bool = False
    clip_obs: float = 10.0
    clip_reward: float = 10.0


@dataclass
class EvaluationConfig:
    """Held-out evaluation: ``n_episodes`` episodes with seeds ``seed_offset + i``."""

    n_episodes: int = 5
    seed_offset: int = 1_000_000
    deterministic: bool = True

    def seeds(self) -> list[int]:
        """The evaluation episodes' seeds."""
        return [self.seed_offset + i for i in range(self.n_episodes)]


@dataclass
class AgentConfig:
    """Everything that defines an RL agent's training run.

    Args:
        algo: ``"ppo"``, ``"a2c"``, ``"dqn"``, ``"sac"`` or ``"td3"``.
        total_timesteps: Environment steps (scheduling intervals) to train in total; a resumed run
            continues up to this count.
        n_envs: Parallel training environments.
        vec_env: ``"dummy"`` (in-process, sequential), ``"subproc"`` (one process per env) or
            ``"population"`` (the ``n_envs`` inner networks trained in lockstep, in one batched
            step: :mod:`arbiter_env.vector.population`; SGD tasks or task families without batch norm
            or dropout).
        start_method: multiprocessing start method for ``subproc`` (``None``: the platform's
            default, ``fork`` on Linux); ``spawn`` / ``forkserver`` need the caller's script to be
            importable, guarded by ``if __name__ == "__main__":``.
        seed: Seed of the agent (SB3 seeds its networks with it) and of the training envs' first
            resets (``seed + rank``).
        device: Torch device of the agent's networks; small MLP policies run fastest on ``cpu``.
        torch_threads: Torch intra-op threads in the training process and in each ``subproc``
            worker while training (``None``: torch's default, one per core). The inner networks
            and policies are tiny, so threads only add overhead, and a thread per core in every
            process oversubscribes the CPU.
        verbose: SB3 verbosity (0 silent, 1 training summaries).
        env: The environments (:class:`~arbiter_env.envs.config.EnvConfig`; here
            ``record_wall_time`` defaults to true, for the training logs). ``task`` may be a
            task family: the agent trains on its train instances and is evaluated on its test
            instances, so ``family_split`` is left unset.
        vec_normalize: Optional observation/reward normalisation.
        hyperparams: Algorithm arguments, checked against :data:`HYPERPARAMS` ``[algo]``.
        policy_kwargs: The policy network.
        checkpoint_every: Save a checkpoint every this many timesteps (0: only the final one).
        save_replay_buffer: Keep the replay buffer in checkpoints of off-policy agents, so that a
            resumed DQN/SAC/TD3 continues with its experience.
        evaluation: Held-out evaluation settings.
    """

    algo: Algo = "ppo"
    total_timesteps: int = 20_000
    n_envs: int = 1
    vec_env: Literal["dummy", "subproc", "population"] = "dummy"
    start_method: Literal["fork", "spawn", "forkserver"] | None = None
    seed: int = 0
    device: str = "cpu"
    torch_threads: int | None = 1
    verbose: int = 0
    env: EnvConfig = field(default_factory=_training_env)
    vec_normalize: VecNormalizeConfig = field(default_factory=VecNormalizeConfig)
    hyperparams: Any = None
    policy_kwargs: PolicyConfig = field(default_factory=PolicyConfig)
    checkpoint_every: int = 0
    save_replay_buffer: bool = True
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHM_SPECS:
            raise ConfigError(f"algo: {self.algo!r} is not one of {sorted(ALGORITHM_SPECS)}.")
        spec = ALGORITHM_SPECS[self.algo]
        params_class = spec.hyperparams
        if self.hyperparams is None:
            self.hyperparams = params_class()
        elif isinstance(self.hyperparams, Mapping):
            self.hyperparams = from_dict(params_class, self.hyperparams, path="hyperparams")
        elif not isinstance(self.hyperparams, params_class):
            raise ConfigError(
                f"hyperparams: expected a mapping of {params_class.__name__} fields for "
                f"algo={self.algo!r}, got {type(self.hyperparams).__name__}."
            )
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"torch_threads: must be >= 1 or null, got {self.torch_threads}.")
        for key in ("total_timesteps", "n_envs"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}.")
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every: must be >= 0, got {self.checkpoint_every}.")
        if self.evaluation.n_episodes < 1:
            raise ConfigError("evaluation.n_episodes: must be >= 1.")
        if self.evaluation.seed_offset <= self.seed + self.n_envs + self.total_timesteps:
            raise ConfigError(
                f"evaluation.seed_offset: {self.evaluation.seed_offset} must exceed every "
                f"training seed (up to seed + n_envs + total_timesteps = "
                f"{self.seed + self.n_envs + self.total_timesteps}), so evaluation stays held out."
            )
        if self.env.family_split is not None:
            raise ConfigError(
                "env.family_split: leave it null; a family's train instances train the agent "
                "and its test instances evaluate it."
            )
        if self.env.action_encoding not in spec.encodings:
            raise ConfigError(
                f"env.action_encoding: {spec.label} cannot act in the "
                f"{self.env.action_encoding!r} encoding; use one of {list(spec.encodings)} "
                f"(or another algo: {algorithms_for(self.env.action_encoding)})."
            )
        self.policy_kwargs.to_sb3(self.algo)  # validates net_arch and algo-specific keys


def default_config_dir() -> Path | None:
    """Where ``configs/agents/*.yaml`` live: ``$ARBITER_AGENT_CONFIG_DIR``, else the repository's.

    Returns ``None`` when neither exists (an installed wheel carries no configs); the dataclass
    defaults are used then.
    """
    if os.environ.get(CONFIG_DIR_ENV_VAR):
        return Path(os.environ[CONFIG_DIR_ENV_VAR]).expanduser()
    # This file is agents/sb3/config.py in the repository.
    candidate = Path(__file__).resolve().parents[2] / "configs" / "agents"
    return candidate if candidate.is_dir() else None


def load_agent_config(
    source: str | Path = "ppo",
    *,
    task: str | None = None,
    overrides: Sequence[str] | None = None,
    config_dir: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Loads and resolves an agent config.

    Args:
        source: An algorithm name (reads ``<config_dir>/<algo>.yaml``, or uses the defaults if
            there is no such file) or the path of a YAML file.
        task: Task or family to train on; sets ``env.task`` and selects the ``tasks:`` entry.
            Default: ``env.task`` of the file (after ``overrides``).
        overrides: ``key=value`` strings with dotted keys (``hyperparams.n_steps=128``); they win
            over the file, its per-task entry and ``settings``.
        config_dir: Folder of the per-algorithm YAML files (default: :func:`default_config_dir`).
        settings: Typed values from code, by dotted key, set as ``overrides`` set theirs but
            without parsing: ``{"seed": 1, "env.num_intervals": 8, "env.reward":
            RewardConfig(...)}``. They win over the file and its per-task entry; ``overrides``
            win over them. Dataclass values are taken as mappings of their fields.
    """
    source_text = str(source)
    data: dict[str, Any]
    if source_text in ALGORITHM_SPECS:
        directory = Path(config_dir) if config_dir is not None else default_config_dir()
        file = directory / f"{source_text}.yaml" if directory is not None else None
        data = read_config_mapping(file) if file is not None and file.is_file() else {}
        if data.get("algo", source_text) != source_text:
            raise ConfigError(f"{file}: algo is {data['algo']!r}, expected {source_text!r}.")
        data["algo"] = source_text
    elif source_text.endswith((".yaml", ".yml")) or Path(source_text).is_file():
        data = read_config_mapping(Path(source_text))
    else:
        raise ConfigError(
            f"Unknown agent {source_text!r}: give one of {sorted(ALGORITHM_SPECS)} or a YAML file."
        )
    return resolve_agent_config(data, task=task, overrides=overrides, settings=settings)


def resolve_agent_config(
    data: Mapping[str, Any],
    *,
    task: str | None = None,
    overrides: Sequence[str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Builds an :class:`AgentConfig` from a mapping that may hold a ``tasks:`` section.

    Every ``tasks:`` entry is validated (a typo fails even for a task not being trained), then the
    entry of the chosen task is merged over the top level, ``settings`` (typed values, see
    :func:`load_agent_config`) over that, and ``overrides`` (``key=value`` strings) last.
    """
    overrides = list(overrides or [])
    typed = {key: _as_data(value) for key, value in (settings or {}).items()}
    base = apply_overrides(apply_values(data, typed), overrides)
    per_task = base.pop("tasks", None) or {}
    if not isinstance(per_task, Mapping):
        raise ConfigError("tasks: expected a mapping of task name to overrides.")
    # The top level (with the overrides) on its own first, so that its errors are not blamed on
    # a tasks: entry.
    from_dict(AgentConfig, base)
    for name, entry in per_task.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"tasks.{name}: expected a mapping of overrides, got {entry!r}.")
        if "tasks" in entry:
            raise ConfigError(f"tasks.{name}: per-task overrides cannot nest a tasks: section.")
        try:
            from_dict(AgentConfig, _deep_merge(base, entry))
        except ConfigError as error:
            raise ConfigError(f"tasks.{name}: {error}") from None
    if task is not None:
        base.setdefault("env", {})
        if not isinstance(base["env"], Mapping):
            raise ConfigError("env: expected a mapping.")
        base["env"] = {**base["env"], "task": task}
    chosen = task or (base.get("env") or {}).get("task", EnvConfig.task)
    merged = _deep_merge(base, per_task.get(chosen, {}))
    if task is not None:
        merged["env"]["task"] = task
    # Settings from code and the command line win over per-task values.
    merged = apply_overrides(apply_values(merged, typed), overrides)
    return from_dict(AgentConfig, merged)


def _check_layer_sizes(sizes: Any, key: str) -> None:
    if not isinstance(sizes, list) or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes
    ):
        raise ConfigError(f"{key}: expected a list of positive layer sizes, got {sizes!r}.")


def _as_data(value: Any) -> Any:
    """Dataclass instances (at any depth) as mappings of their fields; other values unchanged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _as_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {key: _as_data(item) for key, item in value.items()}
    return value


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
