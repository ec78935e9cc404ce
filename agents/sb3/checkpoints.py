"""Checkpoint folders: ``model.zip``, ``vecnormalize.npz``, ``replay_buffer.pkl``, ``config.yaml``."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from arbiter_env.agents import vecnormalize_io
from arbiter_env.agents.sb3.config import AgentConfig
from arbiter_env.config import from_dict, read_config_mapping, save_yaml

MODEL_FILE = "model.zip"
VECNORMALIZE_FILE = vecnormalize_io.STATS_FILE
REPLAY_BUFFER_FILE = "replay_buffer.pkl"
CONFIG_FILE = "config.yaml"


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
    folder = checkpoint_folder(checkpoint)
    try:
        with zipfile.ZipFile(folder / MODEL_FILE) as archive:
            return int(json.loads(archive.read("data"))["num_timesteps"])
    except (KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{folder / MODEL_FILE} is damaged: {error}.") from None


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a training run folder (``final`` wins), if any."""
    run_dir = Path(run_dir)
    candidates = [
        run_dir / "final",
        *sorted((run_dir / "checkpoints").glob("step_*"), reverse=True),
    ]
    for folder in candidates:
        if (folder / MODEL_FILE).is_file() and (folder / CONFIG_FILE).is_file():
            return folder
    return None


def load_checkpoint_config(checkpoint: str | Path) -> AgentConfig:
    """The resolved config saved in ``checkpoint``."""
    folder = checkpoint_folder(checkpoint)
    return from_dict(AgentConfig, read_config_mapping(folder / CONFIG_FILE))


def checkpoint_folder(checkpoint: str | Path) -> Path:
    """The folder of ``checkpoint`` (a folder or its ``model.zip``), checked to be complete."""
    path = Path(checkpoint)
    folder = path.parent if path.name == MODEL_FILE else path
    missing = [name for name in (MODEL_FILE, CONFIG_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a checkpoint folder: missing {', '.join(missing)} (a checkpoint "
            f"holds {MODEL_FILE}, {CONFIG_FILE} and, when used, {VECNORMALIZE_FILE})."
        )
    return folder


def check_spaces(
    model: BaseAlgorithm, observation_space: spaces.Space, action_space: spaces.Space, where: Path
) -> None:
    """Raises ``ValueError`` when the agent saved in ``where`` cannot act in these spaces."""
    if model.observation_space.shape != observation_space.shape:
        raise ValueError(
            f"The agent in {where} observes {model.observation_space}, the env {observation_space}."
        )
    if model.action_space != action_space:
        raise ValueError(
            f"The agent in {where} acts in {model.action_space}, but the env's action space is "
            f"{action_space}; build the env with the agent's env.action_encoding and ladder."
        )
