"""Loading a stable-baselines3 ``model.zip`` for evaluation without unpickling anything.

SB3's ``model.zip`` holds the network weights (read by SB3 with ``torch.load(weights_only=True)``,
which builds tensors only) and a JSON ``data`` entry. Values that JSON cannot express -- the
spaces, the policy class and its keyword arguments, schedules, buffer classes, the last
observation -- are stored there as base64 cloudpickle, and ``BaseAlgorithm.load`` unpickles them:
a crafted checkpoint runs its author's code. But every one of those values is either determined by
the checkpoint's plain ``config.yaml`` (read with ``yaml.safe_load``) and the environment, or only
matters for continuing training. SB3's ``custom_objects`` argument replaces an entry *instead of*
unpickling it, so :func:`load_model_safely` supplies a replacement for each pickled entry and
refuses a checkpoint that holds any other pickled entry. The weights must then fit the network the
config describes, or loading fails with torch's shape error.

Used by :func:`arbiter_env.agents.sb3.load_rl_controller` (evaluation). Resuming training
(``train_rl_agent(resume_from=...)``) still uses SB3's own loader, which needs the training state;
resume only from checkpoints you trust.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.base_class import BaseAlgorithm

from arbiter_env.agents.sb3.algorithms import ALGORITHMS

__all__ = ["UnsafeCheckpointError", "load_model_safely", "pickled_entries"]


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds a pickled entry that cannot be replaced from its config."""


def pickled_entries(model_file: Path) -> list[str]:
    """Names of the cloudpickled entries of ``model.zip``'s ``data`` (read as JSON only)."""
    try:
        with zipfile.ZipFile(model_file) as archive:
            data = json.loads(archive.read("data"))
    except (KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{model_file} is not a stable-baselines3 model: {error}.") from None
    return sorted(
        key for key, value in data.items() if isinstance(value, dict) and ":serialized:" in value
    )


def _constant(value: float) -> Any:
    from stable_baselines3.common.utils import ConstantSchedule

    return ConstantSchedule(float(value))


def load_model_safely(
    model_file: Path,
    config: Any,
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    device: str = "cpu",
) -> BaseAlgorithm:
    """Loads ``model_file`` for prediction with every pickled entry replaced, never unpickled.

    Args:
        model_file: The checkpoint's ``model.zip``.
        config: The checkpoint's ``AgentConfig`` (from its ``config.yaml``).
        observation_space: The environment's observation space.
        action_space: The environment's action space.
        device: Torch device of the networks.

    Raises:
        UnsafeCheckpointError: The checkpoint pickles something this loader cannot rebuild.
    """
    algorithm = ALGORITHMS[config.algo]
    hyperparams = config.hyperparams.to_kwargs()
    learning_rate = getattr(config.hyperparams, "learning_rate", 0.0)
    replacements: dict[str, Any] = {
        "policy_class": algorithm.policy_aliases["MlpPolicy"],
        "policy_kwargs": config.policy_kwargs.to_sb3(config.algo),
        "observation_space": observation_space,
        "action_space": action_space,
        "lr_schedule": _constant(learning_rate),
        "learning_rate": learning_rate,
        # Rebuilt by SB3's _setup_model from plain settings, or only used to continue training.
        "clip_range": _constant(getattr(config.hyperparams, "clip_range", 0.2)),
        "exploration_schedule": None,
        "rollout_buffer_class": None,
        "replay_buffer_class": None,
        "train_freq": hyperparams.get("train_freq", 1),
        "action_noise": hyperparams.get("action_noise"),
        "_last_obs": None,
        "_last_original_obs": None,
        "_last_episode_starts": None,
        "ep_info_buffer": None,
        "ep_success_buffer": None,
    }
    pickled = pickled_entries(model_file)
    unknown = [key for key in pickled if key not in replacements]
    if unknown:
        raise UnsafeCheckpointError(
            f"{model_file} holds pickled entries {unknown} that cannot be rebuilt from its "
            "config; loading them would run code from the file. Load it only if you trust it "
            "(load_rl_controller(..., trusted=True), or `arbiter evaluate --trust-checkpoint`)."
        )
    # Only the pickled entries are replaced: plain JSON values stay as saved.
    custom_objects = {key: replacements[key] for key in pickled}
    return algorithm.load(model_file, device=device, custom_objects=custom_objects)
