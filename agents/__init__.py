"""Agents that choose the batch size: Arbiter (hyper-learning) and the RL agents."""

from arbiter_env.agents.arbiter import Arbiter, ArbiterConfig
from arbiter_env.agents.arbiter_la import ArbiterLA, ArbiterLAConfig
from arbiter_env.controller_registry import register_controller

register_controller("arbiter", Arbiter)
# Our extension of the paper: a meta-objective that models progress as a function of B.
register_controller("arbiter-la", ArbiterLA)

# RL agents (stable-baselines3): "ppo", "a2c", "dqn", "sac", "td3"; each takes checkpoint=...
# to load a trained agent, or builds a new one for the env (see arbiter_env.agents.sb3).
from functools import partial  # noqa: E402

from arbiter_env.agents.sb3 import ALGORITHMS, make_sb3_controller  # noqa: E402

for _algo in ALGORITHMS:
    register_controller(_algo, partial(make_sb3_controller, _algo))

__all__ = ["Arbiter", "ArbiterConfig", "ArbiterLA", "ArbiterLAConfig"]
