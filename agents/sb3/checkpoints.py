"""Checkpoint folders: ``model.zip``, ``vecnormalize.npz``, ``replay_buffer.pkl``, ``config.yaml``.

``VecNormalize`` statistics are kept as plain arrays, so that loading them never unpickles
anything. stable-baselines3 saves ``VecNormalize`` with ``pickle`` (the whole wrapper object), and
loading such a file runs whatever code it names. What a checkpoint needs from it is only numbers:
the running mean, variance and count of observations and returns, and the wrapper's settings.
They are written to ``vecnormalize.npz`` and read back with ``numpy.load(allow_pickle=False)``,
which cannot execute code; a fresh ``VecNormalize`` is then built around the caller's environment
and given those statistics.

``model.zip`` itself is SB3's format, which keeps some entries (the spaces, the learning-rate
schedule) as cloudpickle; :mod:`arbiter_env.agents.sb3.safe_load` loads it without unpickling them.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from arbiter_env.agents.sb3.config import AgentConfig
from arbiter_env.agents.tensor_files import first_line
from arbiter_env.config import from_dict, read_config_mapping, save_yaml

MODEL_FILE = "model.zip"
VECNORMALIZE_FILE = "vecnormalize.npz"
LEGACY_PICKLE_FILE = "vecnormalize.pkl"
"""Statistics of checkpoints written before the ``.npz`` format; read only as a fallback, with a
warning."""
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
        save_vecnormalize(vec_normalize, folder)
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


def save_vecnormalize(vec_normalize: VecNormalize, folder: Path) -> Path:
    """Writes the statistics and settings of ``vec_normalize`` to ``folder/vecnormalize.npz``."""
    if isinstance(vec_normalize.obs_rms, dict):
        raise TypeError("Dict observation spaces are not supported by the arbiter environments.")
    path = folder / VECNORMALIZE_FILE
    partial = folder / (VECNORMALIZE_FILE + ".partial.npz")
    np.savez(
        partial,
        obs_mean=vec_normalize.obs_rms.mean,
        obs_var=vec_normalize.obs_rms.var,
        obs_count=np.float64(vec_normalize.obs_rms.count),
        ret_mean=vec_normalize.ret_rms.mean,
        ret_var=vec_normalize.ret_rms.var,
        ret_count=np.float64(vec_normalize.ret_rms.count),
        returns=np.asarray(vec_normalize.returns, dtype=np.float64),
        clip_obs=np.float64(vec_normalize.clip_obs),
        clip_reward=np.float64(vec_normalize.clip_reward),
        gamma=np.float64(vec_normalize.gamma),
        epsilon=np.float64(vec_normalize.epsilon),
        norm_obs=np.bool_(vec_normalize.norm_obs),
        norm_reward=np.bool_(vec_normalize.norm_reward),
    )
    partial.replace(path)
    return path


def stats_present(folder: Path) -> bool:
    """Whether ``folder`` holds saved statistics (new or legacy format)."""
    return (folder / VECNORMALIZE_FILE).is_file() or (folder / LEGACY_PICKLE_FILE).is_file()


def _load_legacy_pickle(folder: Path, venv: VecEnv) -> VecNormalize:
    """The statistics of an older checkpoint, saved as SB3's pickle, after a warning."""
    legacy = folder / LEGACY_PICKLE_FILE
    if not legacy.is_file():
        raise FileNotFoundError(
            f"{folder} holds neither {VECNORMALIZE_FILE} nor {LEGACY_PICKLE_FILE}."
        )
    warnings.warn(
        f"{legacy} is an SB3 pickle from an older checkpoint; loading it can run code, so "
        "load only checkpoints you trust (saving the checkpoint again writes the safe "
        f"{VECNORMALIZE_FILE}).",
        stacklevel=3,
    )
    return VecNormalize.load(str(legacy), venv)


_STATS_KEYS = (
    "obs_mean",
    "obs_var",
    "obs_count",
    "ret_mean",
    "ret_var",
    "ret_count",
    "returns",
    "clip_obs",
    "clip_reward",
    "gamma",
    "epsilon",
    "norm_obs",
    "norm_reward",
)


def _read_stats(path: Path) -> dict[str, np.ndarray]:
    """The arrays of ``path``; a damaged or incomplete file raises one ``ValueError`` line."""
    try:
        with np.load(path, allow_pickle=False) as stats:
            values = {key: stats[key] for key in stats.files}
    except (EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{path} is damaged ({first_line(error)}); save the checkpoint again."
        ) from None
    missing = [key for key in _STATS_KEYS if key not in values]
    if missing:
        raise ValueError(f"{path} is incomplete: it lacks {', '.join(missing)}.")
    return values


class _SpacesOnly(gym.Env):
    """An environment that only has spaces: enough for a ``VecNormalize`` that only normalises."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space = observation_space
        self.action_space = action_space


def load_vecnormalize(
    folder: Path,
    venv: VecEnv | None = None,
    *,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
) -> VecNormalize:
    """Rebuilds the ``VecNormalize`` saved in ``folder`` around ``venv``.

    Without ``venv`` (a controller that only normalises observations) the wrapper is built around
    a stand-in environment with the given spaces.

    Raises:
        FileNotFoundError: ``folder`` holds no statistics.
        ValueError: The statistics do not fit the observation space.
    """
    if venv is None:
        if observation_space is None or action_space is None:
            raise ValueError("Pass either venv or both spaces.")
        spaces_only = _SpacesOnly(observation_space, action_space)
        venv = DummyVecEnv([lambda: spaces_only])
    path = folder / VECNORMALIZE_FILE
    if not path.is_file():
        return _load_legacy_pickle(folder, venv)
    values = _read_stats(path)
    vec_normalize = VecNormalize(
        venv,
        norm_obs=bool(values["norm_obs"]),
        norm_reward=bool(values["norm_reward"]),
        clip_obs=float(values["clip_obs"]),
        clip_reward=float(values["clip_reward"]),
        gamma=float(values["gamma"]),
        epsilon=float(values["epsilon"]),
    )
    obs_rms = vec_normalize.obs_rms
    if isinstance(obs_rms, dict):
        raise TypeError("Dict observation spaces are not supported by the arbiter environments.")
    if values["obs_mean"].shape != obs_rms.mean.shape:
        raise ValueError(
            f"{path} holds statistics for observations of shape {values['obs_mean'].shape}, but "
            f"the environment's are {obs_rms.mean.shape}."
        )
    obs_rms.mean = values["obs_mean"]
    obs_rms.var = values["obs_var"]
    obs_rms.count = float(values["obs_count"])
    vec_normalize.ret_rms.mean = values["ret_mean"]
    vec_normalize.ret_rms.var = values["ret_var"]
    vec_normalize.ret_rms.count = float(values["ret_count"])
    if values["returns"].shape == vec_normalize.returns.shape:
        vec_normalize.returns = values["returns"].copy()
    return vec_normalize
