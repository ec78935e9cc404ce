"""Trained agents as controllers: loading a checkpoint, evaluating it, and the registry factory."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from arbiter_env.agents.sb3.algorithms import ALGORITHMS
from arbiter_env.agents.sb3.checkpoints import (
    LEGACY_PICKLE_FILE,
    MODEL_FILE,
    VECNORMALIZE_FILE,
    check_spaces,
    checkpoint_folder,
    load_checkpoint_config,
    load_vecnormalize,
    stats_present,
)
from arbiter_env.agents.sb3.config import AgentConfig, load_agent_config
from arbiter_env.agents.sb3.envs import wrap_vec_normalize
from arbiter_env.agents.sb3.fitting import make_rl_agent
from arbiter_env.agents.sb3.runtime import preserved_global_rngs
from arbiter_env.agents.sb3.safe_load import UnsafeCheckpointError, load_model_safely
from arbiter_env.agents.tensor_files import first_line
from arbiter_env.controllers import EpisodeRecord, evaluate
from arbiter_env.envs.batch_size import BatchSizeEnv


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
        """The agent's action, the observation normalised as in training."""
        observation = np.asarray(observation, dtype=np.float32)
        if self.vec_normalize is not None:
            normalized = self.vec_normalize.normalize_obs(observation)
            observation = np.asarray(normalized, dtype=np.float32)
        return self.model.predict(
            observation, state=state, episode_start=episode_start, deterministic=deterministic
        )

    def learn(
        self, total_timesteps: int, *, work_dir: str | Path | None = None, **kwargs: Any
    ) -> SB3Controller:
        """Trains the wrapped agent further (on the env it was created with).

        ``work_dir`` is accepted for the :class:`~arbiter_env.controllers.Learner` signature and
        unused: the agent keeps everything in memory; ``kwargs`` go to SB3's ``learn``.
        """
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

    By default nothing in the checkpoint is unpickled (see :mod:`arbiter_env.agents.sb3.safe_load`):
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
    folder = checkpoint_folder(checkpoint)
    config = load_checkpoint_config(folder)
    require_trust_for_pickles(folder, trusted)
    try:
        with preserved_global_rngs():  # SB3's load reseeds the global generators
            if trusted:
                model = ALGORITHMS[config.algo].load(folder / MODEL_FILE, device=device)
            else:
                model = _load_model_safely(folder, config, env, device)
    except pickle.UnpicklingError:  # torch's weights-only loader refused an object
        raise UnsafeCheckpointError(
            f"{folder / MODEL_FILE} was refused: its weights hold objects other than tensors, "
            "which only a code-running unpickler could build; nothing in it was run."
        ) from None
    except (RuntimeError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{folder / MODEL_FILE} is damaged or does not fit its config.yaml "
            f"({first_line(error)})."
        ) from None
    vec_normalize = _load_frozen_vec_normalize(folder, model)
    if env is not None:
        check_spaces(model, env.observation_space, env.action_space, folder)
    return SB3Controller(model, vec_normalize, config)


def require_trust_for_pickles(checkpoint: str | Path, trusted: bool) -> None:
    """Refuses a checkpoint whose statistics exist only as a pickle, unless ``trusted``.

    Raises:
        UnsafeCheckpointError: one line naming the pickle and the flag that allows it.
    """
    folder = checkpoint_folder(checkpoint)
    legacy = folder / LEGACY_PICKLE_FILE
    if trusted or not legacy.is_file() or (folder / VECNORMALIZE_FILE).is_file():
        return
    raise UnsafeCheckpointError(
        f"{legacy}: the VecNormalize statistics of this checkpoint are a pickle, which runs any "
        "code its author put there when loaded; load it only if you made or trust it: arbiter "
        "evaluate --trust-checkpoint (trusted=True in Python)."
    )


def _load_model_safely(
    folder: Path, config: AgentConfig, env: gym.Env | None, device: str
) -> BaseAlgorithm:
    """The model of ``folder`` without unpickling, for the spaces of ``env`` (or its config's)."""
    spaces_from = env if env is not None else BatchSizeEnv.from_config(config.env)
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
        return load_model_safely(
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


def _load_frozen_vec_normalize(folder: Path, model: BaseAlgorithm) -> VecNormalize | None:
    """The saved ``VecNormalize`` statistics, frozen for evaluation; ``None`` if there are none."""
    if not stats_present(folder):
        return None
    vec_normalize = load_vecnormalize(
        folder, observation_space=model.observation_space, action_space=model.action_space
    )
    # Evaluation must not move the statistics, and rewards are not the controller's business.
    vec_normalize.training = False
    vec_normalize.norm_reward = False
    return vec_normalize


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
    env = env if env is not None else BatchSizeEnv.from_config(config.env, family_split)
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
    trusted: bool = False,
) -> SB3Controller:
    """Controller-registry factory: a trained agent from ``checkpoint``, or a new one for ``env``.

    ``trusted`` loads the checkpoint with SB3's own, unpickling loader (see
    :func:`load_rl_controller`).

    Without a checkpoint, the agent is created for ``env`` from ``config`` (an
    :class:`AgentConfig`, a YAML path, or the ``algo``'s default file, with ``overrides``) and
    trained for ``total_timesteps`` steps in ``env`` itself (0: untrained; train later with
    ``controller.learn(n)``).
    """
    if checkpoint is not None:
        controller = load_rl_controller(checkpoint, env, trusted=trusted)
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
    vec_normalize = wrap_vec_normalize(venv, config)
    model = make_rl_agent(algo, vec_normalize or venv, config)
    controller = SB3Controller(model, vec_normalize, config)
    if total_timesteps > 0:
        controller.learn(total_timesteps)
    if vec_normalize is not None:
        vec_normalize.training = False
    return controller
