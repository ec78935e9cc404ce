"""One logging layer for every controller: local JSONL files first, Weights & Biases on top.

- :mod:`~arbiter_env.lab.runlog.logger`: :class:`RunLogger`, which tracks episodes and owns a run
  folder;
- :mod:`~arbiter_env.lab.runlog.writers`: where records go (JSONL files, a guarded W&B run) and the
  W&B mode;
- :mod:`~arbiter_env.lab.runlog.summary`: the summary of one logged episode;
- :mod:`~arbiter_env.lab.runlog.describe`: what a run ran (labels, resolved env and controller);
- :mod:`~arbiter_env.lab.runlog.values`: plain scalars, NaN-free JSON, YAML-safe configs.

Logging stable-baselines3 training (its logger and a callback) lives with the RL agents, in
:mod:`arbiter_env.agents.sb3_logging`, so this package does not need stable-baselines3.
"""

from arbiter_env.lab.runlog.logger import RunLogger, make_run_dir
from arbiter_env.lab.runlog.writers import (
    CONFIG_FILE,
    DEFAULT_PROJECT,
    EPISODES_FILE,
    INTERVALS_FILE,
    METRICS_FILE,
    RUN_FILE,
    WANDB_MODES,
    WandbMode,
    resolve_wandb_mode,
    wandb_init_timeout,
)
from arbiter_env.lab.wandb_utils import wandb_api_key_configured

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_PROJECT",
    "EPISODES_FILE",
    "INTERVALS_FILE",
    "METRICS_FILE",
    "RUN_FILE",
    "WANDB_MODES",
    "RunLogger",
    "WandbMode",
    "make_run_dir",
    "resolve_wandb_mode",
    "wandb_api_key_configured",
    "wandb_init_timeout",
]
