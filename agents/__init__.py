"""Agents that choose the batch size: Arbiter (hyper-learning) and the RL agents."""

from functools import partial
from typing import Any

from arbiter_env.agents.arbiter import Arbiter, ArbiterConfig
from arbiter_env.agents.arbiter_la import ArbiterLA, ArbiterLAConfig
from arbiter_env.agents.arbiter_la_v2 import ArbiterLAv2, ArbiterLAv2Config
from arbiter_env.agents.arbiter_learning import ArbiterTraining, make_arbiter
from arbiter_env.agents.oracle import OracleGreedy
from arbiter_env.controllers import register_controller

# Arbiter decides integer sizes, not ladder rungs: by default it acts through the continuous
# encoding (as `arbiter train --agent arbiter` does), in `evaluate` and in comparisons alike.
_ARBITER_ENV = {"action_encoding": "continuous"}
# make_arbiter builds an Arbiter, or loads one with checkpoint=PATH (arbiter train's checkpoint).
register_controller(
    "arbiter",
    make_arbiter,
    env_defaults=_ARBITER_ENV,
    kind="arbiter",
    training=ArbiterTraining(make_arbiter),
    seeded=True,
)
# Our extension of the paper: a model of validation progress as a function of B. "arbiter-la" is
# v2 (heavy-ball model, calibrated online, trust-region arg-min); v1 stays for comparison.
register_controller(
    "arbiter-la", ArbiterLAv2, env_defaults=_ARBITER_ENV, kind="arbiter", seeded=True
)
register_controller(
    "arbiter-la-v1", ArbiterLA, env_defaults=_ARBITER_ENV, kind="arbiter", seeded=True
)
# A reference ceiling, not a deployable controller: it trains copies of the env (agents/oracle.py).
register_controller("oracle-greedy", OracleGreedy, kind="other")

# RL agents (stable-baselines3): "ppo", "a2c", "dqn", "sac", "td3"; each takes checkpoint=...
# to load a trained agent, or builds a new one for the env (see arbiter_env.agents.sb3).
# stable-baselines3 is an optional extra: it is imported when an RL controller is built, not
# when the registry is read, so the heuristic controllers work without it.
RL_ALGORITHMS: tuple[str, ...] = ("ppo", "a2c", "dqn", "sac", "td3")
"""Names of the RL agents (the keys of ``arbiter_env.agents.sb3.ALGORITHMS``, checked by a test)."""

RL_EXTRA_HINT = "pip install 'arbiter-env[rl]'"


def require_sb3(what: str) -> None:
    """Raises a clear ``ImportError`` naming the fix if stable-baselines3 is not installed."""
    try:
        import stable_baselines3  # noqa: F401
    except ImportError as error:
        # A ModuleNotFoundError naming stable_baselines3, so callers that test for a missing
        # module (the CLI) still recognise it.
        raise ModuleNotFoundError(
            f"{what} needs stable-baselines3, which is not installed; install the RL extra: "
            f"{RL_EXTRA_HINT}",
            name="stable_baselines3",
        ) from error


def _make_rl_controller(algo: str, env: Any, **kwargs: Any) -> Any:
    require_sb3(f"The RL controller {algo!r}")
    from arbiter_env.agents.zoo import make_rl_controller

    return make_rl_controller(algo, env, **kwargs)


class _SB3Training:
    """The SB3 agents' training (``arbiter_env.agents.sb3.learning``), imported when first used."""

    has_command = True

    def __getattr__(self, name: str) -> Any:
        require_sb3("Training an RL agent")
        from arbiter_env.agents.sb3.learning import SB3_TRAINING

        return getattr(SB3_TRAINING, name)


_SB3_TRAINING: Any = _SB3Training()

for _algo in RL_ALGORITHMS:
    # make_rl_controller also loads models saved by rl-zoo3 (checkpoint=RUN_FOLDER or .zip).
    register_controller(
        _algo,
        partial(_make_rl_controller, _algo),
        description=f"stable-baselines3 {_algo.upper()} policy; checkpoint=PATH loads a trained "
        f"one (arbiter train --agent {_algo}, or an rl-zoo3 model)",
        kind="rl",
        training=_SB3_TRAINING,
        needs_training=True,
    )

__all__ = [
    "RL_ALGORITHMS",
    "Arbiter",
    "ArbiterConfig",
    "ArbiterLA",
    "ArbiterLAConfig",
    "ArbiterLAv2",
    "ArbiterLAv2Config",
    "OracleGreedy",
    "require_sb3",
]
