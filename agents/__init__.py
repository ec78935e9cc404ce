"""Agents that choose the batch size: Arbiter (hyper-learning) and the RL agents."""

from arbiter_env.agents.arbiter import Arbiter, ArbiterConfig
from arbiter_env.agents.arbiter_checkpoint import make_arbiter
from arbiter_env.agents.arbiter_la import ArbiterLA, ArbiterLAConfig
from arbiter_env.controller_registry import register_controller

# Arbiter decides integer sizes, not ladder rungs: by default it acts through the continuous
# encoding (as `arbiter train --agent arbiter` does), in `evaluate` and in comparisons alike.
_ARBITER_ENV = {"action_encoding": "continuous"}
# make_arbiter builds an Arbiter, or loads one with checkpoint=PATH (arbiter train's checkpoint).
register_controller("arbiter", make_arbiter, env_defaults=_ARBITER_ENV)
# Our extension of the paper: a meta-objective that models progress as a function of B.
register_controller("arbiter-la", ArbiterLA, env_defaults=_ARBITER_ENV)

# RL agents (stable-baselines3): "ppo", "a2c", "dqn", "sac", "td3"; each takes checkpoint=...
# to load a trained agent, or builds a new one for the env (see arbiter_env.agents.sb3).
from functools import partial  # noqa: E402

from arbiter_env.agents.sb3 import ALGORITHMS  # noqa: E402
from arbiter_env.agents.zoo import make_rl_controller  # noqa: E402

for _algo in ALGORITHMS:
    # make_rl_controller also loads models saved by rl-zoo3 (checkpoint=RUN_FOLDER or .zip).
    register_controller(
        _algo,
        partial(make_rl_controller, _algo),
        description=f"stable-baselines3 {_algo.upper()} policy; checkpoint=PATH loads a trained "
        f"one (arbiter train --agent {_algo}, or an rl-zoo3 model)",
    )

__all__ = ["Arbiter", "ArbiterConfig", "ArbiterLA", "ArbiterLAConfig"]
