"""Reinforcement-learning agents from stable-baselines3: configs, training, checkpoints, controllers.

Everything an RL agent needs, in one place::

    from arbiter_env.agents.sb3 import load_agent_config, train_rl_agent, evaluate_rl_agent

    config = load_agent_config("ppo", task="digits-mlp", overrides=["total_timesteps=20000"])
    checkpoint = train_rl_agent(config, "runs/ppo-digits")      # -> runs/ppo-digits/final
    records = evaluate_rl_agent(checkpoint)                     # held-out seeds (and instances)

Algorithms: PPO (the default) and A2C for every action encoding, DQN for the discrete ones
(``discrete``, ``relative``), SAC and TD3 for ``continuous``.

**Configs.** ``configs/agents/<algo>.yaml`` holds an :class:`AgentConfig` (typed, unknown keys and
wrong types are errors naming the key) plus an optional ``tasks:`` mapping of task or family name to
partial overrides, in the style of rl-baselines3-zoo but without ``eval`` or string
mini-languages: ``policy_kwargs.net_arch`` is a list (or a ``{pi: [...], vf: [...]}`` mapping) and
``policy_kwargs.activation`` a name from :data:`ACTIVATIONS`. Precedence, lowest first: dataclass
defaults, the YAML's top level, ``tasks[<task>]``, then ``key=value`` overrides.

**Seeds.** Training env ``rank`` is first reset with seed ``config.seed + rank`` (plus the number
of timesteps already trained when resuming); later episodes continue that env's own generator.
Evaluation uses the *held-out* seeds ``evaluation.seed_offset + i`` (``seed_offset`` defaults to
1,000,000 and must lie above every training seed), and for a task family the held-out *test*
instances (``family_split="test"``), so a score never comes from an episode seen in training.

**Checkpoints** are folders holding ``model.zip``, ``vecnormalize.npz`` (when ``vec_normalize``
is enabled; plain arrays, read without pickle, see :mod:`arbiter_env.agents.vecnormalize_io`),
``replay_buffer.pkl`` (off-policy algorithms, when ``save_replay_buffer``) and
``config.yaml`` (the resolved config). ``train_rl_agent(..., resume_from=folder)`` continues from
one with the same timestep counter; :func:`load_rl_controller` turns one into a controller for
:func:`arbiter_env.controllers.run_episode`, normalising observations as in training.

**Trust.** ``model.zip`` is stable-baselines3's format: some of its entries (spaces, schedules)
are cloudpickle. :func:`load_rl_controller` rebuilds them from ``config.yaml`` instead of
unpickling them (:mod:`arbiter_env.agents.safe_load`); resuming training, and
``load_rl_controller(trusted=True)``, use SB3's loader, which unpickles them (and
``replay_buffer.pkl``): only for checkpoints you trust. The ``VecNormalize`` statistics are plain
arrays and never unpickled.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecMonitor,
    VecNormalize,
)
from torch import nn

from arbiter_env.agents import vecnormalize_io
from arbiter_env.config import (
    ConfigError,
    apply_overrides,
    from_dict,
    read_yaml_file,
    save_yaml,
)
from arbiter_env.controllers import EpisodeRecord, evaluate
from arbiter_env.env import BatchSizeEnv
from arbiter_env.tasks.families import is_family

Algo = Literal["ppo", "a2c", "dqn", "sac", "td3"]
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO,
    "a2c": A2C,
    "dqn": DQN,
    "sac": SAC,
    "td3": TD3,
}
"""Algorithm name → stable-baselines3 class."""

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
"""The activations a config may name (``policy_kwargs.activation``); no other strings are parsed."""

DISCRETE_ENCODINGS = ("discrete", "relative")
CONTINUOUS_ENCODINGS = ("continuous",)
_ALGO_ENCODINGS: dict[str, tuple[str, ...]] = {
    "ppo": DISCRETE_ENCODINGS + CONTINUOUS_ENCODINGS,
    "a2c": DISCRETE_ENCODINGS + CONTINUOUS_ENCODINGS,
    "dqn": DISCRETE_ENCODINGS,
    "sac": CONTINUOUS_ENCODINGS,
    "td3": CONTINUOUS_ENCODINGS,
}

CONFIG_DIR_ENV_VAR = "ARBITER_AGENT_CONFIG_DIR"
MODEL_FILE = "model.zip"
VECNORMALIZE_FILE = vecnormalize_io.STATS_FILE
REPLAY_BUFFER_FILE = "replay_buffer.pkl"
CONFIG_FILE = "config.yaml"


# --- configuration ------------------------------------------------------------------------------


@dataclass
class _LinearSchedule:
    """Learning rate decaying linearly to 0 (SB3 passes the remaining progress, 1 → 0)."""

    initial: float

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining


def _learning_rate(value: float, schedule: str) -> float | _LinearSchedule:
    return _LinearSchedule(value) if schedule == "linear" else value


class _AlgorithmHyperparams:
    """Base of the hyperparameter dataclasses: every field is an argument of the SB3 algorithm,
    except those in ``_not_arguments``; ``lr_schedule`` turns ``learning_rate`` into a schedule."""

    learning_rate: float
    lr_schedule: Literal["constant", "linear"]
    _not_arguments: ClassVar[tuple[str, ...]] = ("lr_schedule",)

    # field -> (lowest, highest, lowest allowed, highest allowed); SB3 checks some of these with
    # bare asserts deep inside training and others (gamma > 1) not at all.
    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {
        "learning_rate": (0.0, math.inf, False, False),
        "n_steps": (1, math.inf, True, False),
        "batch_size": (2, math.inf, True, False),
        "n_epochs": (1, math.inf, True, False),
        "gamma": (0.0, 1.0, True, True),
        "gae_lambda": (0.0, 1.0, True, True),
        "clip_range": (0.0, math.inf, False, False),
        "vf_coef": (0.0, math.inf, True, False),
        "max_grad_norm": (0.0, math.inf, False, False),
        "target_kl": (0.0, math.inf, False, False),
        "buffer_size": (1, math.inf, True, False),
        "learning_starts": (0, math.inf, True, False),
        "tau": (0.0, 1.0, False, True),
        "train_freq": (1, math.inf, True, False),
        "target_update_interval": (1, math.inf, True, False),
        "exploration_fraction": (0.0, 1.0, True, True),
        "exploration_initial_eps": (0.0, 1.0, True, True),
        "exploration_final_eps": (0.0, 1.0, True, True),
        "policy_delay": (1, math.inf, True, False),
        "target_policy_noise": (0.0, math.inf, True, False),
        "target_noise_clip": (0.0, math.inf, True, False),
        "action_noise_std": (0.0, math.inf, True, False),
    }

    def __post_init__(self) -> None:
        for name, (low, high, low_ok, high_ok) in self._RANGES.items():
            value = getattr(self, name, None)
            if value is None or isinstance(value, bool) or not isinstance(value, int | float):
                continue  # absent here, optional, or a type error that from_dict reports
            above = value >= low if low_ok else value > low
            below = value <= high if high_ok else value < high
            if not (above and below and math.isfinite(value)):
                interval = (
                    ("[" if low_ok else "(")
                    + f"{low:g}, "
                    + (f"{high:g}" if math.isfinite(high) else "inf")
                    + ("]" if high_ok else ")")
                )
                raise ConfigError(f"hyperparams.{name} must lie in {interval}, got {value!r}.")
        ent_coef = getattr(self, "ent_coef", 0.0)
        if isinstance(ent_coef, int | float) and not ent_coef >= 0:
            raise ConfigError(f"hyperparams.ent_coef must be >= 0, got {ent_coef!r}.")
        steps = getattr(self, "gradient_steps", 1)
        if isinstance(steps, int) and steps != -1 and steps < 1:
            raise ConfigError(
                f"hyperparams.gradient_steps must be >= 1 (or -1: one per environment step), "
                f"got {steps}."
            )

    def to_kwargs(self) -> dict[str, Any]:
        kwargs = _fields(self, exclude=self._not_arguments)
        kwargs["learning_rate"] = _learning_rate(self.learning_rate, self.lr_schedule)
        return kwargs


@dataclass
class PPOHyperparams(_AlgorithmHyperparams):
    """Arguments of ``stable_baselines3.PPO`` (see its documentation for their meaning).

    ``lr_schedule``: ``"constant"`` or ``"linear"`` (decay to 0 over ``total_timesteps``).
    """

    learning_rate: float = 3e-4
    lr_schedule: Literal["constant", "linear"] = "constant"
    n_steps: int = 256
    batch_size: int = 64
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_advantage: bool = True
    target_kl: float | None = None


@dataclass
class A2CHyperparams(_AlgorithmHyperparams):
    """Arguments of ``stable_baselines3.A2C``."""

    learning_rate: float = 7e-4
    lr_schedule: Literal["constant", "linear"] = "constant"
    n_steps: int = 20
    gamma: float = 0.99
    gae_lambda: float = 1.0
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    use_rms_prop: bool = True
    normalize_advantage: bool = False


@dataclass
class DQNHyperparams(_AlgorithmHyperparams):
    """Arguments of ``stable_baselines3.DQN``."""

    learning_rate: float = 5e-4
    lr_schedule: Literal["constant", "linear"] = "constant"
    buffer_size: int = 50_000
    learning_starts: int = 500
    batch_size: int = 64
    tau: float = 1.0
    gamma: float = 0.99
    train_freq: int = 4
    gradient_steps: int = 1
    target_update_interval: int = 500
    exploration_fraction: float = 0.3
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.05
    max_grad_norm: float = 10.0


@dataclass
class SACHyperparams(_AlgorithmHyperparams):
    """Arguments of ``stable_baselines3.SAC``; ``ent_coef`` is a number or ``"auto"`` (learned)."""

    learning_rate: float = 3e-4
    lr_schedule: Literal["constant", "linear"] = "constant"
    buffer_size: int = 50_000
    learning_starts: int = 200
    batch_size: int = 128
    tau: float = 0.005
    gamma: float = 0.99
    train_freq: int = 1
    gradient_steps: int = 1
    ent_coef: float | Literal["auto"] = "auto"


@dataclass
class TD3Hyperparams(_AlgorithmHyperparams):
    """Arguments of ``stable_baselines3.TD3``; ``action_noise_std`` > 0 adds Gaussian exploration."""

    learning_rate: float = 1e-3
    lr_schedule: Literal["constant", "linear"] = "constant"
    buffer_size: int = 50_000
    learning_starts: int = 200
    batch_size: int = 128
    tau: float = 0.005
    gamma: float = 0.99
    train_freq: int = 1
    gradient_steps: int = 1
    policy_delay: int = 2
    target_policy_noise: float = 0.2
    target_noise_clip: float = 0.5
    action_noise_std: float = 0.1

    _not_arguments = ("lr_schedule", "action_noise_std")

    def to_kwargs(self) -> dict[str, Any]:
        kwargs = super().to_kwargs()
        if self.action_noise_std > 0:
            # The continuous encoding is one-dimensional: Box(-1, 1, (1,)).
            kwargs["action_noise"] = NormalActionNoise(
                mean=np.zeros(1), sigma=np.full(1, self.action_noise_std)
            )
        return kwargs


HYPERPARAMS: dict[str, type] = {
    "ppo": PPOHyperparams,
    "a2c": A2CHyperparams,
    "dqn": DQNHyperparams,
    "sac": SACHyperparams,
    "td3": TD3Hyperparams,
}
"""Algorithm name → its hyperparameter dataclass (the ``hyperparams:`` section of a config)."""


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
        allowed_heads = {"ppo": {"pi", "vf"}, "a2c": {"pi", "vf"}, "sac": {"pi", "qf"}}
        allowed_heads["td3"] = allowed_heads["sac"]
        arch = self.net_arch
        if isinstance(arch, dict):
            heads = allowed_heads.get(algo)
            if heads is None:
                raise ConfigError(
                    f"policy_kwargs.net_arch: {algo.upper()} takes a list of layer sizes, "
                    f"not a mapping ({arch})."
                )
            if set(arch) - heads or not arch:
                raise ConfigError(
                    f"policy_kwargs.net_arch: keys for {algo.upper()} are {sorted(heads)}, "
                    f"got {sorted(arch)}."
                )
            for head, sizes in arch.items():
                _check_layer_sizes(sizes, f"policy_kwargs.net_arch.{head}")
        else:
            _check_layer_sizes(arch, "policy_kwargs.net_arch")
        kwargs: dict[str, Any] = {
            "net_arch": copy.deepcopy(arch),
            "activation_fn": ACTIVATIONS[self.activation],
        }
        if self.ortho_init is not None:
            if algo not in ("ppo", "a2c"):
                raise ConfigError(f"policy_kwargs.ortho_init applies to PPO and A2C, not {algo}.")
            kwargs["ortho_init"] = self.ortho_init
        if self.log_std_init is not None:
            if algo not in ("ppo", "a2c", "sac"):
                raise ConfigError(
                    f"policy_kwargs.log_std_init applies to PPO, A2C and SAC, not {algo}."
                )
            kwargs["log_std_init"] = self.log_std_init
        return kwargs


@dataclass
class EnvConfig:
    """How each training and evaluation environment is built (``BatchSizeEnv`` arguments).

    ``task`` may be a task or a task family; a family trains on its train instances and is
    evaluated on its test instances.
    """

    task: str = "digits-mlp"
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    action_encoding: Literal["discrete", "continuous", "relative"] = "discrete"
    num_intervals: int | None = None
    reward: dict[str, Any] = field(default_factory=dict)
    divergence: dict[str, Any] = field(default_factory=dict)
    """``DivergenceRule`` fields (``loss_ratio``, ``max_loss``); empty: the default rule."""
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    ladder_size: int | None = None

    def make(self, family_split: Literal["train", "test"] = "train") -> BatchSizeEnv:
        """Builds one environment; ``family_split`` is used only when ``task`` is a family."""
        return BatchSizeEnv(
            self.task,
            task_kwargs=copy.deepcopy(self.task_kwargs),
            family_split=family_split if is_family(self.task) else None,
            action_encoding=self.action_encoding,
            num_intervals=self.num_intervals,
            reward=dict(self.reward) or None,
            divergence=dict(self.divergence) or None,
            lr_scaling=self.lr_scaling,
            ladder_size=self.ladder_size,
            # Episode wall time reaches the training logs through `info`.
            record_wall_time=True,
        )


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
            step: :mod:`arbiter_env.population`; single SGD tasks without batch norm or dropout).
        start_method: multiprocessing start method for ``subproc`` (``None``: the platform's
            default, ``fork`` on Linux); ``spawn`` / ``forkserver`` need the caller's script to be
            importable, guarded by ``if __name__ == "__main__":``.
        seed: Seed of the agent (SB3 seeds its networks with it) and of the training envs' first
            resets (``seed + rank``).
        device: Torch device of the agent's networks; small MLP policies run fastest on ``cpu``.
        torch_threads: Torch intra-op threads in the training process and in each ``subproc``
            worker while training (``None``: torch's default, one per core). The inner networks
            and policies are tiny, so threads only add overhead, and a thread per core in every
            process oversubscribes the CPU: measured on 2 busy cores, one thread made PPO on
            digits-mlp 3-9x faster than two.
        verbose: SB3 verbosity (0 silent, 1 training summaries).
        env: The environments.
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
    env: EnvConfig = field(default_factory=EnvConfig)
    vec_normalize: VecNormalizeConfig = field(default_factory=VecNormalizeConfig)
    hyperparams: Any = None
    policy_kwargs: PolicyConfig = field(default_factory=PolicyConfig)
    checkpoint_every: int = 0
    save_replay_buffer: bool = True
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ConfigError(f"algo: {self.algo!r} is not one of {sorted(ALGORITHMS)}.")
        params_class = HYPERPARAMS[self.algo]
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
        encodings = _ALGO_ENCODINGS[self.algo]
        if self.env.action_encoding not in encodings:
            raise ConfigError(
                f"env.action_encoding: {self.algo.upper()} cannot act in the "
                f"{self.env.action_encoding!r} encoding; use one of {list(encodings)} "
                f"(or another algo: {_algos_for(self.env.action_encoding)})."
            )
        self.policy_kwargs.to_sb3(self.algo)  # validates net_arch and algo-specific keys


def default_config_dir() -> Path | None:
    """Where ``configs/agents/*.yaml`` live: ``$ARBITER_AGENT_CONFIG_DIR``, else the repository's.

    Returns ``None`` when neither exists (an installed wheel carries no configs); the dataclass
    defaults are used then.
    """
    import os

    if os.environ.get(CONFIG_DIR_ENV_VAR):
        return Path(os.environ[CONFIG_DIR_ENV_VAR]).expanduser()
    candidate = Path(__file__).resolve().parents[1] / "configs" / "agents"
    return candidate if candidate.is_dir() else None


def load_agent_config(
    source: str | Path = "ppo",
    *,
    task: str | None = None,
    overrides: Sequence[str] | None = None,
    config_dir: str | Path | None = None,
) -> AgentConfig:
    """Loads and resolves an agent config.

    Args:
        source: An algorithm name (reads ``<config_dir>/<algo>.yaml``, or uses the defaults if
            there is no such file) or the path of a YAML file.
        task: Task or family to train on; sets ``env.task`` and selects the ``tasks:`` entry.
            Default: ``env.task`` of the file (after ``overrides``).
        overrides: ``key=value`` strings with dotted keys (``hyperparams.n_steps=128``); they win
            over the file and its per-task entry.
        config_dir: Folder of the per-algorithm YAML files (default: :func:`default_config_dir`).
    """
    source_text = str(source)
    data: dict[str, Any]
    if source_text in ALGORITHMS:
        directory = Path(config_dir) if config_dir is not None else default_config_dir()
        file = directory / f"{source_text}.yaml" if directory is not None else None
        data = _read_yaml(file) if file is not None and file.is_file() else {}
        if data.get("algo", source_text) != source_text:
            raise ConfigError(f"{file}: algo is {data['algo']!r}, expected {source_text!r}.")
        data["algo"] = source_text
    elif source_text.endswith((".yaml", ".yml")) or Path(source_text).is_file():
        data = _read_yaml(Path(source_text))
    else:
        raise ConfigError(
            f"Unknown agent {source_text!r}: give one of {sorted(ALGORITHMS)} or a YAML file."
        )
    return resolve_agent_config(data, task=task, overrides=overrides)


def resolve_agent_config(
    data: Mapping[str, Any], *, task: str | None = None, overrides: Sequence[str] | None = None
) -> AgentConfig:
    """Builds an :class:`AgentConfig` from a mapping that may hold a ``tasks:`` section.

    Every ``tasks:`` entry is validated (a typo fails even for a task not being trained), then the
    entry of the chosen task is merged over the top level, and ``overrides`` over that.
    """
    overrides = list(overrides or [])
    base = apply_overrides(dict(data), overrides)
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
    merged = apply_overrides(merged, overrides)  # the command line wins over per-task values
    return from_dict(AgentConfig, merged)


def agent_config_dict(config: AgentConfig) -> dict[str, Any]:
    """A plain dict of the resolved config (for ``config.yaml`` and ``wandb.config``)."""
    from arbiter_env.config import to_dict

    return to_dict(config)


# --- environments and agents --------------------------------------------------------------------


@dataclass
class EnvFactory:
    """Picklable ``() -> env`` for SB3's vectorised envs (``SubprocVecEnv`` pickles it).

    The env is wrapped in SB3's ``Monitor`` so that episode returns reach SB3's logger.
    """

    env: EnvConfig
    family_split: Literal["train", "test"] = "train"
    torch_threads: int | None = None

    def __call__(self) -> gym.Env:
        if self.torch_threads is not None:
            # Only reached in a SubprocVecEnv worker, a process of its own.
            torch.set_num_threads(self.torch_threads)
        return Monitor(self.env.make(self.family_split))


def make_vec_env(
    config: AgentConfig,
    *,
    family_split: Literal["train", "test"] = "train",
    n_envs: int | None = None,
    seed: int | None = None,
) -> VecEnv:
    """``n_envs`` (default ``config.n_envs``) environments as ``config.vec_env`` asks.

    The first reset of env ``rank`` uses seed ``seed + rank`` (default ``config.seed``). No
    ``VecNormalize`` is added here (see :func:`train_rl_agent`).
    """
    n_envs = n_envs or config.n_envs
    venv: VecEnv
    if config.vec_env == "subproc":
        factories = [EnvFactory(config.env, family_split, config.torch_threads)] * n_envs
        try:
            venv = SubprocVecEnv(factories, start_method=config.start_method)
        except (EOFError, ConnectionError) as error:
            # A worker died building its env; SB3 shows only the broken pipe. Its own traceback
            # went to stderr above; say here what usually causes it and how to fix it.
            raise RuntimeError(
                f"A SubprocVecEnv worker failed to build the environment for task "
                f"{config.env.task!r} (its traceback is printed above). Workers are fresh "
                "processes: a task registered at run time in this process (in a notebook, or "
                "under `if __name__ == '__main__':`) does not exist there. Register it at the top "
                "level of an importable module and name it 'your_module:task-name', or set "
                "vec_env: dummy."
            ) from error
    elif config.vec_env == "population":
        from arbiter_env.population import PopulationEnv  # imports torch.func only when used

        env = config.env
        population = PopulationEnv(
            env.task,
            n_envs,
            task_kwargs=copy.deepcopy(env.task_kwargs),
            action_encoding=env.action_encoding,
            num_intervals=env.num_intervals,
            reward=dict(env.reward) or None,
            lr_scaling=env.lr_scaling,
            ladder_size=env.ladder_size,
            record_wall_time=True,
        )
        venv = VecMonitor(population)  # episode returns reach SB3's logger, as Monitor does
    else:
        venv = DummyVecEnv([EnvFactory(config.env, family_split)] * n_envs)
    venv.seed(config.seed if seed is None else seed)
    return venv


def check_action_space(algo: str, action_space: spaces.Space) -> None:
    """Raises ``ValueError`` when ``algo`` cannot act in ``action_space``."""
    if algo not in ALGORITHMS:
        raise ValueError(f"Unknown algorithm {algo!r}; choose one of {sorted(ALGORITHMS)}.")
    discrete_only, continuous_only = algo == "dqn", algo in ("sac", "td3")
    if discrete_only and not isinstance(action_space, spaces.Discrete):
        raise ValueError(
            f"DQN needs a discrete action space, got {action_space}: build the env with "
            "action_encoding='discrete' or 'relative', or use PPO, A2C, SAC or TD3 for "
            "action_encoding='continuous'."
        )
    if continuous_only and not isinstance(action_space, spaces.Box):
        raise ValueError(
            f"{algo.upper()} needs the continuous action space, got {action_space}: build the env "
            "with action_encoding='continuous', or use PPO, A2C or DQN for the discrete encodings."
        )


def make_rl_agent(
    algo: str, env_or_venv: gym.Env | VecEnv, config: AgentConfig | None = None
) -> BaseAlgorithm:
    """Creates an untrained stable-baselines3 agent for ``env_or_venv``.

    Args:
        algo: ``"ppo"``, ``"a2c"``, ``"dqn"``, ``"sac"`` or ``"td3"``.
        env_or_venv: A single env (SB3 wraps it in a ``DummyVecEnv``) or a ``VecEnv``.
        config: Hyperparameters and policy; default: :func:`load_agent_config` ``(algo)``. Its
            ``algo`` must equal ``algo``.
    """
    check_action_space(algo, env_or_venv.action_space)
    if config is None:
        encoding = "continuous" if isinstance(env_or_venv.action_space, spaces.Box) else "discrete"
        config = load_agent_config(algo, overrides=[f"env.action_encoding={encoding}"])
    if config.algo != algo:
        raise ValueError(f"make_rl_agent({algo!r}, ...) got a config for algo={config.algo!r}.")
    with preserved_global_rngs():
        return ALGORITHMS[algo](
            "MlpPolicy",
            env_or_venv,
            policy_kwargs=config.policy_kwargs.to_sb3(algo),
            seed=config.seed,
            device=config.device,
            verbose=config.verbose,
            **config.hyperparams.to_kwargs(),
        )


@contextlib.contextmanager
def preserved_global_rngs() -> Iterator[None]:
    """Restores Python's, numpy's and torch's global RNG states on exit.

    SB3 seeds the process-global generators (``set_random_seed``) and samples actions from
    torch's; this keeps the caller's streams untouched by agent creation and training.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()  # noqa: NPY002 -- saving, not drawing
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)  # noqa: NPY002 -- restoring the caller's state


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Sets torch's intra-op thread count inside the context (``None``: unchanged)."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --- checkpoints --------------------------------------------------------------------------------


def save_checkpoint(
    model: BaseAlgorithm,
    folder: str | Path,
    config: AgentConfig,
    vec_normalize: VecNormalize | None = None,
) -> Path:
    """Writes ``model.zip``, ``vecnormalize.npz``, ``replay_buffer.pkl`` and ``config.yaml``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / MODEL_FILE)
    if vec_normalize is not None:
        vecnormalize_io.save_vecnormalize(vec_normalize, folder)
    if isinstance(model, OffPolicyAlgorithm) and config.save_replay_buffer:
        model.save_replay_buffer(folder / REPLAY_BUFFER_FILE)
    save_yaml(config, folder / CONFIG_FILE)
    return folder


def checkpoint_timesteps(checkpoint: str | Path) -> int:
    """The timestep count saved in a checkpoint, read from ``model.zip``'s JSON (no unpickling)."""
    import json
    import zipfile

    folder = _checkpoint_folder(checkpoint)
    try:
        with zipfile.ZipFile(folder / MODEL_FILE) as archive:
            return int(json.loads(archive.read("data"))["num_timesteps"])
    except (KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{folder / MODEL_FILE} is damaged: {error}.") from None


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a training run folder (``final`` wins), if any."""
    run_dir = Path(run_dir)
    candidates = [run_dir / "final"] + sorted(
        (run_dir / "checkpoints").glob("step_*"), reverse=True
    )
    for folder in candidates:
        if (folder / MODEL_FILE).is_file() and (folder / CONFIG_FILE).is_file():
            return folder
    return None


def load_checkpoint_config(checkpoint: str | Path) -> AgentConfig:
    """The resolved config saved in ``checkpoint``."""
    folder = _checkpoint_folder(checkpoint)
    return from_dict(AgentConfig, _read_yaml(folder / CONFIG_FILE))


class CheckpointEveryCallback(BaseCallback):
    """Saves a checkpoint to ``<run_dir>/checkpoints/step_<timesteps>`` every ``every`` steps.

    On-policy algorithms (PPO, A2C) are saved only at the start of a rollout, that is after the
    previous rollout has been trained on: a checkpoint taken in the middle of collection (or at
    its last step, before ``train()``) would hold timesteps whose rollout is then lost on resume,
    so a resumed run would make fewer gradient updates than an uninterrupted one. The step of a
    saved checkpoint is therefore the first rollout boundary at or after each ``every`` steps.
    Off-policy algorithms train as they collect and are saved at the step itself.
    """

    def __init__(
        self,
        every: int,
        run_dir: Path,
        config: AgentConfig,
        vec_normalize: VecNormalize | None,
    ):
        super().__init__()
        self.every = every
        self.run_dir = run_dir
        self.config = config
        self.vec_normalize = vec_normalize
        self._last_saved = 0

    def _on_training_start(self) -> None:
        self._last_saved = self.num_timesteps

    def _on_step(self) -> bool:
        if not isinstance(self.model, OnPolicyAlgorithm):
            self._maybe_save()
        return True

    def _on_rollout_start(self) -> None:
        if isinstance(self.model, OnPolicyAlgorithm):
            self._maybe_save()

    def _maybe_save(self) -> None:
        if self.every and self.num_timesteps - self._last_saved >= self.every:
            self._last_saved = self.num_timesteps
            folder = self.run_dir / "checkpoints" / f"step_{self.num_timesteps:09d}"
            save_checkpoint(self.model, folder, self.config, self.vec_normalize)


# --- training -----------------------------------------------------------------------------------


def train_rl_agent(
    config: AgentConfig,
    run_dir: str | Path,
    callbacks: list[BaseCallback] | None = None,
    resume_from: str | Path | None = None,
    *,
    progress_bar: bool = False,
) -> Path:
    """Trains an agent on ``config.env`` and returns the folder of its final checkpoint.

    Args:
        config: The resolved agent config (:func:`load_agent_config`).
        run_dir: Run folder; receives ``config.yaml``, ``checkpoints/step_*`` (every
            ``config.checkpoint_every`` timesteps) and ``final/`` (returned).
        callbacks: Extra SB3 callbacks (for example a logger), called during ``learn``.
        resume_from: A checkpoint folder to continue from: the model, its timestep counter,
            VecNormalize statistics and replay buffer are restored, and training runs until
            ``config.total_timesteps`` in total. ``config.algo`` must match the checkpoint's.
        progress_bar: Show SB3's progress bar (needs ``tqdm`` and ``rich``).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(config, run_dir / CONFIG_FILE)
    with preserved_global_rngs(), torch_threads(config.torch_threads):
        model, vec_normalize = _build_for_training(config, resume_from)
        try:
            remaining = config.total_timesteps - model.num_timesteps
            if remaining > 0:
                callback_list: list[BaseCallback] = [
                    CheckpointEveryCallback(config.checkpoint_every, run_dir, config, vec_normalize)
                ]
                callback_list += list(callbacks or [])
                model.learn(
                    remaining,
                    callback=CallbackList(callback_list),
                    reset_num_timesteps=False,
                    progress_bar=progress_bar,
                )
            return save_checkpoint(model, run_dir / "final", config, vec_normalize)
        finally:
            env = model.get_env()
            if env is not None:
                env.close()


def _build_for_training(
    config: AgentConfig, resume_from: str | Path | None
) -> tuple[BaseAlgorithm, VecNormalize | None]:
    if resume_from is None:
        venv = make_vec_env(config)
        vec_normalize = _wrap_vec_normalize(venv, config)
        model = make_rl_agent(config.algo, vec_normalize or venv, config)
        return model, vec_normalize

    folder = _checkpoint_folder(resume_from)
    saved = load_checkpoint_config(folder)
    if saved.algo != config.algo:
        raise ValueError(
            f"Cannot resume {config.algo!r} from {folder}: it holds a {saved.algo!r} agent."
        )
    model = ALGORITHMS[config.algo].load(folder / MODEL_FILE, device=config.device)
    # Fresh episode seeds after the ones already trained on (still below the evaluation seeds).
    venv = make_vec_env(config, seed=config.seed + model.num_timesteps)
    vec_normalize: VecNormalize | None = None
    if vecnormalize_io.stats_present(folder):
        vec_normalize = vecnormalize_io.load_vecnormalize(folder, venv)
        vec_normalize.training = True
    elif config.vec_normalize.enabled:
        vec_normalize = _wrap_vec_normalize(venv, config)
    check_action_space(config.algo, venv.action_space)
    _check_spaces(model, venv.observation_space, venv.action_space, folder)
    model.set_env(vec_normalize or venv)
    model.set_random_seed(config.seed + model.num_timesteps)
    if isinstance(model, OffPolicyAlgorithm) and (folder / REPLAY_BUFFER_FILE).is_file():
        model.load_replay_buffer(folder / REPLAY_BUFFER_FILE)
    return model, vec_normalize


def _wrap_vec_normalize(venv: VecEnv, config: AgentConfig) -> VecNormalize | None:
    settings = config.vec_normalize
    if not settings.enabled:
        return None
    return VecNormalize(
        venv,
        norm_obs=settings.norm_obs,
        norm_reward=settings.norm_reward,
        clip_obs=settings.clip_obs,
        clip_reward=settings.clip_reward,
        gamma=getattr(config.hyperparams, "gamma", 0.99),
    )


# --- trained agents as controllers --------------------------------------------------------------


class SB3Controller:
    """A stable-baselines3 agent as a :class:`~arbiter_env.controllers.Controller`.

    It applies the training-time ``VecNormalize`` observation normalisation (frozen statistics)
    before ``model.predict``, so it acts on raw environment observations like any heuristic.

    Args:
        model: The SB3 agent.
        vec_normalize: Normalisation statistics saved with the agent, or ``None``.
        config: The agent's config, if known (kept for logging).
    """

    def __init__(
        self,
        model: BaseAlgorithm,
        vec_normalize: VecNormalize | None = None,
        config: AgentConfig | None = None,
    ):
        self.model = model
        self.vec_normalize = vec_normalize
        self.config = config

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[Any, Any]:
        observation = np.asarray(observation, dtype=np.float32)
        if self.vec_normalize is not None:
            observation = self.vec_normalize.normalize_obs(observation).astype(np.float32)
        return self.model.predict(
            observation, state=state, episode_start=episode_start, deterministic=deterministic
        )

    def learn(self, total_timesteps: int, **kwargs: Any) -> SB3Controller:
        """Trains the wrapped agent further (on the env it was created with)."""
        with preserved_global_rngs():
            self.model.learn(total_timesteps, reset_num_timesteps=False, **kwargs)
        return self


def load_rl_controller(
    checkpoint: str | Path,
    env: gym.Env | None = None,
    *,
    device: str = "cpu",
    trusted: bool = False,
) -> SB3Controller:
    """Loads a checkpoint folder (or its ``model.zip``) as a controller.

    By default nothing in the checkpoint is unpickled (see :mod:`arbiter_env.agents.safe_load`):
    the pickled entries of ``model.zip`` are rebuilt from its ``config.yaml`` and the
    environment's spaces, and the ``VecNormalize`` statistics are read from ``vecnormalize.npz``.

    Args:
        checkpoint: A folder written by :func:`train_rl_agent` / :func:`save_checkpoint`.
        env: The environment it will act in; its spaces are checked against the agent's. Default:
            the checkpoint's own ``env`` config (its data is loaded to build it).
        device: Torch device for the agent's networks.
        trusted: Use SB3's own loader (which unpickles the checkpoint's entries, and a legacy
            ``vecnormalize.pkl``): only for checkpoints you made or trust.
    """
    from arbiter_env.agents.safe_load import UnsafeCheckpointError, load_model_safely

    folder = _checkpoint_folder(checkpoint)
    config = load_checkpoint_config(folder)
    legacy_only = (folder / vecnormalize_io.LEGACY_PICKLE_FILE).is_file() and not (
        folder / vecnormalize_io.STATS_FILE
    ).is_file()
    if legacy_only and not trusted:
        raise UnsafeCheckpointError(
            f"{folder} keeps its VecNormalize statistics as a pickle "
            f"({vecnormalize_io.LEGACY_PICKLE_FILE}), which can run code when loaded. Load "
            "it only if you trust it (trusted=True, or `arbiter evaluate --trust-checkpoint`)."
        )
    with preserved_global_rngs():  # SB3's load reseeds the global generators
        if trusted:
            model = ALGORITHMS[config.algo].load(folder / MODEL_FILE, device=device)
        else:
            spaces_from = env if env is not None else config.env.make()
            batch_env = spaces_from.unwrapped
            if (
                isinstance(batch_env, BatchSizeEnv)
                and batch_env.action_encoding.name != config.env.action_encoding
            ):
                raise ValueError(
                    f"{folder} was trained with action_encoding="
                    f"{config.env.action_encoding!r}, the environment uses "
                    f"{batch_env.action_encoding.name!r}."
                )
            try:
                model = load_model_safely(
                    folder / MODEL_FILE,
                    config,
                    spaces_from.observation_space,
                    spaces_from.action_space,
                    device=device,
                )
            except RuntimeError as error:  # torch: the weights do not fit the network
                raise ValueError(
                    f"{folder}: the saved network does not fit its config and this environment "
                    f"({str(error).splitlines()[0]})."
                ) from None
    vec_normalize: VecNormalize | None = None
    if vecnormalize_io.stats_present(folder):
        vec_normalize = vecnormalize_io.load_vecnormalize(
            folder, observation_space=model.observation_space, action_space=model.action_space
        )
        # Evaluation must not move the statistics, and rewards are not the controller's business.
        vec_normalize.training = False
        vec_normalize.norm_reward = False
    if env is not None:
        _check_spaces(model, env.observation_space, env.action_space, folder)
    return SB3Controller(model, vec_normalize, config)


def evaluate_rl_agent(
    checkpoint: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    env: gym.Env | None = None,
    family_split: Literal["train", "test"] = "test",
    deterministic: bool | None = None,
) -> list[EpisodeRecord]:
    """Evaluates a checkpoint on held-out seeds with :func:`arbiter_env.controllers.evaluate`.

    Args:
        checkpoint: Checkpoint folder.
        seeds: Episode seeds; default ``config.evaluation.seeds()`` (held out from training).
        env: Environment to evaluate in; default: the checkpoint's ``env`` config, with the
            family's ``family_split`` (``"test"``: instances never trained on) for a family.
        family_split: Which instances of a family to evaluate on, when ``env`` is not given.
        deterministic: Greedy actions; default ``config.evaluation.deterministic``.
    """
    config = load_checkpoint_config(checkpoint)
    env = env if env is not None else config.env.make(family_split)
    controller = load_rl_controller(checkpoint, env, device=config.device)
    if deterministic is None:
        deterministic = config.evaluation.deterministic
    return evaluate(
        env,
        controller,
        list(seeds) if seeds is not None else config.evaluation.seeds(),
        deterministic=deterministic,
    )


def make_sb3_controller(
    algo: str,
    env: gym.Env,
    *,
    checkpoint: str | Path | None = None,
    config: str | Path | AgentConfig | None = None,
    overrides: Sequence[str] | None = None,
    total_timesteps: int = 0,
) -> SB3Controller:
    """Controller-registry factory: a trained agent from ``checkpoint``, or a new one for ``env``.

    Without a checkpoint, the agent is created for ``env`` from ``config`` (an
    :class:`AgentConfig`, a YAML path, or the ``algo``'s default file, with ``overrides``) and
    trained for ``total_timesteps`` steps in ``env`` itself (0: untrained; train later with
    ``controller.learn(n)``).
    """
    if checkpoint is not None:
        controller = load_rl_controller(checkpoint, env)
        if controller.config is not None and controller.config.algo != algo:
            raise ValueError(
                f"Checkpoint {checkpoint} holds a {controller.config.algo!r} agent, not {algo!r}."
            )
        return controller
    batch_env = env.unwrapped
    if not isinstance(batch_env, BatchSizeEnv):
        raise TypeError(f"Expected a BatchSizeEnv (possibly wrapped), got {type(batch_env)}.")
    task = batch_env.family.name if batch_env.family is not None else batch_env.task.name
    encoding = batch_env.action_encoding.name
    if not isinstance(config, AgentConfig):
        config = load_agent_config(
            config or algo,
            task=task,
            overrides=[f"env.action_encoding={encoding}", *(overrides or [])],
        )
    venv = DummyVecEnv([lambda: Monitor(env)])
    vec_normalize = _wrap_vec_normalize(venv, config)
    model = make_rl_agent(algo, vec_normalize or venv, config)
    controller = SB3Controller(model, vec_normalize, config)
    if total_timesteps > 0:
        controller.learn(total_timesteps)
    if vec_normalize is not None:
        vec_normalize.training = False
    return controller


# --- helpers ------------------------------------------------------------------------------------


def _fields(params: Any, exclude: Sequence[str] = ()) -> dict[str, Any]:
    return {key: value for key, value in vars(params).items() if key not in exclude}


def _check_layer_sizes(sizes: Any, key: str) -> None:
    if not isinstance(sizes, list) or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes
    ):
        raise ConfigError(f"{key}: expected a list of positive layer sizes, got {sizes!r}.")


def _algos_for(encoding: str) -> list[str]:
    return [algo for algo, encodings in _ALGO_ENCODINGS.items() if encoding in encodings]


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise ConfigError(f"Config file {file} does not exist.")
    data = read_yaml_file(file) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of keys to values.")
    return data


def _checkpoint_folder(checkpoint: str | Path) -> Path:
    path = Path(checkpoint)
    folder = path.parent if path.name == MODEL_FILE else path
    missing = [name for name in (MODEL_FILE, CONFIG_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a checkpoint folder: missing {', '.join(missing)} (a checkpoint "
            f"holds {MODEL_FILE}, {CONFIG_FILE} and, when used, {VECNORMALIZE_FILE})."
        )
    return folder


def _check_spaces(
    model: BaseAlgorithm, observation_space: spaces.Space, action_space: spaces.Space, where: Path
) -> None:
    if model.observation_space.shape != observation_space.shape:
        raise ValueError(
            f"The agent in {where} observes {model.observation_space}, the env {observation_space}."
        )
    if model.action_space != action_space:
        raise ValueError(
            f"The agent in {where} acts in {model.action_space}, but the env's action space is "
            f"{action_space}; build the env with the agent's env.action_encoding and ladder."
        )


__all__ = [
    "ACTIVATIONS",
    "ALGORITHMS",
    "HYPERPARAMS",
    "A2CHyperparams",
    "AgentConfig",
    "CheckpointEveryCallback",
    "DQNHyperparams",
    "EnvConfig",
    "EnvFactory",
    "EvaluationConfig",
    "PPOHyperparams",
    "PolicyConfig",
    "SACHyperparams",
    "SB3Controller",
    "TD3Hyperparams",
    "VecNormalizeConfig",
    "agent_config_dict",
    "check_action_space",
    "default_config_dir",
    "evaluate_rl_agent",
    "load_agent_config",
    "load_checkpoint_config",
    "load_rl_controller",
    "make_rl_agent",
    "make_sb3_controller",
    "make_vec_env",
    "preserved_global_rngs",
    "resolve_agent_config",
    "save_checkpoint",
    "torch_threads",
    "train_rl_agent",
]
