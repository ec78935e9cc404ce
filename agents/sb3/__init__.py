"""Reinforcement-learning agents from stable-baselines3: configs, training, checkpoints, controllers.

The package's modules: :mod:`~arbiter_env.agents.sb3.algorithms` (the algorithm table, the one
place that knows each algorithm), ``hyperparams`` and ``config`` (typed configs and their
loading), ``envs`` (vectorised training envs), ``fitting`` (creating, training and resuming an
agent), ``learning`` (the registry's training), ``checkpoints``, ``safe_load`` and
``controller`` (a trained agent as a controller). Every public name is re-exported here::

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
is enabled; plain arrays, read without pickle, see :mod:`arbiter_env.agents.sb3.checkpoints`),
``replay_buffer.pkl`` (off-policy algorithms, when ``save_replay_buffer``) and
``config.yaml`` (the resolved config). ``train_rl_agent(..., resume_from=folder)`` continues from
one with the same timestep counter; :func:`load_rl_controller` turns one into a controller for
:func:`arbiter_env.controllers.run_episode`, normalising observations as in training.

**Trust.** ``model.zip`` is stable-baselines3's format: some of its entries (spaces, schedules)
are cloudpickle. :func:`load_rl_controller` rebuilds them from ``config.yaml`` instead of
unpickling them (:mod:`arbiter_env.agents.sb3.safe_load`); resuming training, and
``load_rl_controller(trusted=True)``, use SB3's loader, which unpickles them (and
``replay_buffer.pkl``): only for checkpoints you trust. The ``VecNormalize`` statistics are plain
arrays and never unpickled.
"""

from __future__ import annotations

from arbiter_env.agents import require_sb3

# stable-baselines3 is the optional extra 'rl': without it, say how to install it.
require_sb3("arbiter_env.agents.sb3 (the RL agents)")

from arbiter_env.agents.sb3.algorithms import (
    ALGORITHM_SPECS,
    ALGORITHMS,
    CONTINUOUS_ENCODINGS,
    DISCRETE_ENCODINGS,
    HYPERPARAMS,
    Algo,
    AlgorithmSpec,
    algorithm_spec,
    algorithms_for,
    check_action_space,
)
from arbiter_env.agents.sb3.checkpoints import (
    CONFIG_FILE,
    MODEL_FILE,
    REPLAY_BUFFER_FILE,
    VECNORMALIZE_FILE,
    check_spaces,
    checkpoint_timesteps,
    latest_checkpoint,
    load_checkpoint_config,
    save_checkpoint,
)
from arbiter_env.agents.sb3.config import (
    ACTIVATIONS,
    CONFIG_DIR_ENV_VAR,
    AgentConfig,
    EnvConfig,
    EvaluationConfig,
    PolicyConfig,
    VecNormalizeConfig,
    default_config_dir,
    load_agent_config,
    resolve_agent_config,
)
from arbiter_env.agents.sb3.controller import (
    SB3Controller,
    evaluate_rl_agent,
    load_rl_controller,
    make_sb3_controller,
)
from arbiter_env.agents.sb3.envs import EnvFactory, make_vec_env
from arbiter_env.agents.sb3.fitting import CheckpointEveryCallback, make_rl_agent, train_rl_agent
from arbiter_env.agents.sb3.hyperparams import (
    A2CHyperparams,
    DQNHyperparams,
    PPOHyperparams,
    SACHyperparams,
    TD3Hyperparams,
    # model.zip files saved while this package was one module pickle a linear learning-rate
    # schedule by reference as `arbiter_env.agents.sb3._LinearSchedule`; SB3's loader (resume,
    # trusted=True) must still find it here.
    _LinearSchedule,  # noqa: F401
)
from arbiter_env.agents.sb3.runtime import preserved_global_rngs, torch_threads
from arbiter_env.config import ConfigError

__all__ = [
    "ACTIVATIONS",
    "ALGORITHMS",
    "ALGORITHM_SPECS",
    "CONFIG_DIR_ENV_VAR",
    "CONFIG_FILE",
    "CONTINUOUS_ENCODINGS",
    "DISCRETE_ENCODINGS",
    "HYPERPARAMS",
    "MODEL_FILE",
    "REPLAY_BUFFER_FILE",
    "VECNORMALIZE_FILE",
    "A2CHyperparams",
    "AgentConfig",
    "Algo",
    "AlgorithmSpec",
    "CheckpointEveryCallback",
    "ConfigError",
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
    "algorithm_spec",
    "algorithms_for",
    "check_action_space",
    "check_spaces",
    "checkpoint_timesteps",
    "default_config_dir",
    "evaluate_rl_agent",
    "latest_checkpoint",
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
