"""The algorithm table: one record per stable-baselines3 algorithm, the one place that knows them.

Everything that differs by algorithm (its class, its hyperparameters, the action encodings it can
act in, whether it learns on- or off-policy, which ``policy_kwargs`` it takes) is read from
:data:`ALGORITHM_SPECS`; nothing else in :mod:`arbiter_env.agents.sb3` branches on an
algorithm's name. Adding an algorithm is one record here (and, optionally, its YAML file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from arbiter_env.agents.sb3.hyperparams import (
    A2CHyperparams,
    DQNHyperparams,
    PPOHyperparams,
    SACHyperparams,
    TD3Hyperparams,
)

Algo = Literal["ppo", "a2c", "dqn", "sac", "td3"]

DISCRETE_ENCODINGS = ("discrete", "relative")
CONTINUOUS_ENCODINGS = ("continuous",)


@dataclass(frozen=True)
class AlgorithmSpec:
    """What the rest of the package needs to know about one algorithm.

    Args:
        name: The config's ``algo`` value (``"ppo"``).
        sb3_class: The stable-baselines3 class.
        hyperparams: Its hyperparameter dataclass (the ``hyperparams:`` section of a config).
        encodings: The action encodings it can act in.
        on_policy: ``True`` for rollout-based learners (PPO, A2C), ``False`` for replay-based ones.
        net_arch_heads: The keys a ``policy_kwargs.net_arch`` mapping may use; ``None``: it takes
            a list of layer sizes only.
        ortho_init: It accepts ``policy_kwargs.ortho_init``.
        log_std_init: It accepts ``policy_kwargs.log_std_init``.
    """

    name: str
    sb3_class: type[BaseAlgorithm]
    hyperparams: type
    encodings: tuple[str, ...]
    on_policy: bool
    net_arch_heads: frozenset[str] | None
    ortho_init: bool = False
    log_std_init: bool = False

    @property
    def label(self) -> str:
        """The name as written in messages (``"PPO"``)."""
        return self.name.upper()

    @property
    def discrete_only(self) -> bool:
        """Whether the algorithm supports none of the continuous encodings (DQN)."""
        return not set(self.encodings) & set(CONTINUOUS_ENCODINGS)

    @property
    def continuous_only(self) -> bool:
        """Whether the algorithm supports none of the discrete encodings (SAC, TD3)."""
        return not set(self.encodings) & set(DISCRETE_ENCODINGS)


_ACTOR_CRITIC = frozenset({"pi", "vf"})
_ACTOR_Q = frozenset({"pi", "qf"})
_ALL_ENCODINGS = DISCRETE_ENCODINGS + CONTINUOUS_ENCODINGS

ALGORITHM_SPECS: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        AlgorithmSpec("ppo", PPO, PPOHyperparams, _ALL_ENCODINGS, True, _ACTOR_CRITIC, True, True),
        AlgorithmSpec("a2c", A2C, A2CHyperparams, _ALL_ENCODINGS, True, _ACTOR_CRITIC, True, True),
        AlgorithmSpec("dqn", DQN, DQNHyperparams, DISCRETE_ENCODINGS, False, None),
        AlgorithmSpec(
            "sac", SAC, SACHyperparams, CONTINUOUS_ENCODINGS, False, _ACTOR_Q, log_std_init=True
        ),
        AlgorithmSpec("td3", TD3, TD3Hyperparams, CONTINUOUS_ENCODINGS, False, _ACTOR_Q),
    )
}
"""Algorithm name → its record, in the order messages list them."""

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    name: spec.sb3_class for name, spec in ALGORITHM_SPECS.items()
}
"""Algorithm name → stable-baselines3 class."""

HYPERPARAMS: dict[str, type] = {name: spec.hyperparams for name, spec in ALGORITHM_SPECS.items()}
"""Algorithm name → its hyperparameter dataclass (the ``hyperparams:`` section of a config)."""


def algorithm_spec(algo: str) -> AlgorithmSpec:
    """The record of ``algo``; ``ValueError`` naming the known algorithms otherwise."""
    try:
        return ALGORITHM_SPECS[algo]
    except KeyError:
        raise ValueError(
            f"Unknown algorithm {algo!r}; choose one of {sorted(ALGORITHM_SPECS)}."
        ) from None


def algorithms_for(encoding: str) -> list[str]:
    """The algorithms that can act in ``encoding``, in table order."""
    return [name for name, spec in ALGORITHM_SPECS.items() if encoding in spec.encodings]


def listed(names: list[str], conjunction: str = "or") -> str:
    """``["ppo", "a2c", "dqn"]`` → ``"PPO, A2C or DQN"``, for messages."""
    labels = [name.upper() for name in names]
    if len(labels) < 2:
        return "".join(labels)
    return ", ".join(labels[:-1]) + f" {conjunction} {labels[-1]}"


def check_action_space(algo: str, action_space: spaces.Space) -> None:
    """Raises ``ValueError`` when ``algo`` cannot act in ``action_space``."""
    spec = algorithm_spec(algo)
    if spec.discrete_only and not isinstance(action_space, spaces.Discrete):
        raise ValueError(
            f"{spec.label} needs a discrete action space, got {action_space}: build the env with "
            f"action_encoding={' or '.join(map(repr, DISCRETE_ENCODINGS))}, or use "
            f"{listed(algorithms_for('continuous'))} for action_encoding='continuous'."
        )
    if spec.continuous_only and not isinstance(action_space, spaces.Box):
        raise ValueError(
            f"{spec.label} needs the continuous action space, got {action_space}: build the env "
            f"with action_encoding='continuous', or use {listed(algorithms_for('discrete'))} "
            "for the discrete encodings."
        )
