"""Models trained by rl-zoo3 as controllers: the zoo's save layout, read without the zoo.

rl-zoo3 (``python -m rl_zoo3.train --algo ppo --env arbiter_env/BatchSize-v0 --gym-packages
arbiter_env -conf configs/zoo/ppo.yml``) saves a run as::

    logs/ppo/arbiter_env-BatchSize-v0_1/
      arbiter_env-BatchSize-v0.zip        the final model (model.save)
      best_model.zip                      the best model, when the zoo evaluated during training
      arbiter_env-BatchSize-v0/
        args.yml, config.yml              the command's arguments (env_kwargs) and hyperparameters
        vecnormalize.pkl                  observation normalisation, when normalize: true

:func:`load_zoo_controller` accepts the run folder (final model), or either ``.zip``; it loads the
``VecNormalize`` statistics beside it (frozen) and returns the same
:class:`~arbiter_env.agents.sb3.SB3Controller` that ``arbiter train`` checkpoints give, so
``arbiter evaluate --trust-checkpoint --controller logs/ppo/arbiter_env-BatchSize-v0_1`` and a
comparison entry ``{controller: ppo, kwargs: {checkpoint: logs/ppo/..., trusted: true}}`` both work.

A zoo model has no ``config.yaml`` to rebuild its pickled entries from (the policy class, the
spaces, schedules), and ``vecnormalize.pkl`` is a pickle of the whole wrapper: loading either
runs code the file names. So a zoo model is only loaded when the caller says it trusts it
(``trusted=True``, ``--trust-checkpoint``); otherwise :class:`UnsafeCheckpointError` is raised
before any of its files is opened.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

from arbiter_env.agents.sb3 import (
    ALGORITHMS,
    CONFIG_FILE,
    SB3Controller,
    check_spaces,
    make_sb3_controller,
    preserved_global_rngs,
)
from arbiter_env.agents.sb3.safe_load import UnsafeCheckpointError
from arbiter_env.config import ConfigError, StrictLoader

ENV_NAME = "arbiter_env-BatchSize-v0"
"""The zoo's file name for ``arbiter_env/BatchSize-v0`` (``/`` becomes ``-``)."""
VECNORMALIZE_FILE = "vecnormalize.pkl"


def is_zoo_model(path: str | Path) -> bool:
    """Whether ``path`` is a zoo run folder or a model ``.zip`` saved by the zoo.

    An ``arbiter train`` checkpoint folder (``model.zip`` beside ``config.yaml``) is not.
    """
    path = Path(path)
    if path.is_dir():
        return any(path.glob("*.zip")) and not (path / CONFIG_FILE).is_file()
    return path.suffix == ".zip" and not (path.parent / CONFIG_FILE).is_file()


def find_zoo_files(path: str | Path) -> tuple[Path, Path | None, Path | None]:
    """``(model zip, vecnormalize.pkl or None, params folder or None)`` of a zoo run."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / f"{ENV_NAME}.zip", *sorted(path.glob("*.zip"))]
        model = next((c for c in candidates if c.is_file() and c.name != "best_model.zip"), None)
        model = model or next((c for c in candidates if c.is_file()), None)
        if model is None:
            raise FileNotFoundError(f"No model .zip in the rl-zoo3 run folder {path}.")
    elif path.is_file():
        model = path
    else:
        raise FileNotFoundError(f"No rl-zoo3 model at {path}.")
    # The params folder is named after the env, beside the models.
    params = [p for p in model.parent.iterdir() if p.is_dir() and (p / "args.yml").is_file()]
    folder = model.parent / model.stem if (model.parent / model.stem).is_dir() else None
    folder = folder or (params[0] if len(params) == 1 else None)
    normalize = folder / VECNORMALIZE_FILE if folder is not None else None
    return model, normalize if normalize is not None and normalize.is_file() else None, folder


class _ZooLoader(StrictLoader):
    """Strict, safe YAML that also reads the ``OrderedDict`` the zoo writes to ``args.yml``."""


def _ordered_dict(loader: StrictLoader, node: yaml.Node) -> dict[str, Any]:
    (pairs,) = loader.construct_sequence(node, deep=True)
    return {key: value for key, value in pairs}


_ZooLoader.add_constructor(
    "tag:yaml.org,2002:python/object/apply:collections.OrderedDict", _ordered_dict
)


def read_zoo_args(path: str | Path) -> dict[str, Any]:
    """The zoo's ``args.yml`` of a run (``{}`` when absent): ``algo``, ``env_kwargs``, ..."""
    _, _, folder = find_zoo_files(path)
    if folder is None or not (folder / "args.yml").is_file():
        return {}
    file = folder / "args.yml"
    try:
        # _ZooLoader is a SafeLoader (plus OrderedDict), so this load runs no code.
        data = yaml.load(file.read_text(), Loader=_ZooLoader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: invalid YAML: {str(error).splitlines()[0]}") from None
    return data if isinstance(data, dict) else {}


def require_trust(path: str | Path, trusted: bool) -> None:
    """Refuses to load the zoo model at ``path`` unless ``trusted``; opens none of its files.

    Raises:
        FileNotFoundError: there is no model ``.zip`` at ``path``.
        UnsafeCheckpointError: one line naming the file that would be unpickled and the flag.
    """
    model_file, normalize_file, _ = find_zoo_files(path)
    if trusted:
        return
    pickles = f"{model_file}" + (f" and {normalize_file}" if normalize_file else "")
    raise UnsafeCheckpointError(
        f"{pickles}: an rl-zoo3 model (no {CONFIG_FILE} beside it) can only be loaded by "
        "unpickling it, which runs any code its author put there; load it only if you made or "
        "trust it: arbiter evaluate --trust-checkpoint (trusted=True in Python or in a "
        "comparison's kwargs)."
    )


def load_zoo_controller(
    path: str | Path,
    env: gym.Env | None = None,
    *,
    algo: str | None = None,
    device: str = "cpu",
    trusted: bool = False,
) -> SB3Controller:
    """A model saved by rl-zoo3 as a controller, with its frozen ``VecNormalize`` statistics.

    Args:
        path: The zoo's run folder or a model ``.zip``.
        env: The env it will act in; its spaces are checked against the model's.
        algo: The algorithm; default: ``algo`` of the zoo's ``args.yml``, else the run folder's
            parent folder name (``logs/ALGO/...``).
        device: Torch device the model is loaded onto.
        trusted: Whether the caller trusts the files; loading unpickles them, so without it the
            model is refused (:func:`require_trust`).

    Raises:
        UnsafeCheckpointError: ``trusted`` is false.
    """
    require_trust(path, trusted)
    model_file, normalize_file, _ = find_zoo_files(path)
    algo = algo or read_zoo_args(path).get("algo") or model_file.parent.parent.name
    if algo not in ALGORITHMS:
        raise ValueError(
            f"Cannot tell which algorithm saved {model_file}; pass it (one of "
            f"{', '.join(ALGORITHMS)}), e.g. --controller ppo checkpoint={model_file} in a "
            "comparison."
        )
    with preserved_global_rngs():  # SB3's load reseeds the global generators
        model = ALGORITHMS[algo].load(model_file, device=device)
    vec_normalize = None
    if normalize_file is not None:
        with normalize_file.open("rb") as handle:
            vec_normalize = pickle.load(handle)
        # Evaluation must not move the statistics; rewards are not the controller's business.
        vec_normalize.training = False
        vec_normalize.norm_reward = False
    if env is not None:
        check_spaces(model, env.observation_space, env.action_space, model_file.parent)
    return SB3Controller(model, vec_normalize, None)


def make_rl_controller(
    algo: str,
    env: gym.Env,
    *,
    checkpoint: str | Path | None = None,
    trusted: bool = False,
    **kwargs: Any,
) -> SB3Controller:
    """Registry factory of the RL agents: a zoo model, an ``arbiter train`` checkpoint, or new.

    ``checkpoint`` may be an rl-zoo3 run folder or model ``.zip`` (loaded only when ``trusted``);
    anything else goes to :func:`arbiter_env.agents.sb3.make_sb3_controller`.
    """
    if checkpoint is not None and is_zoo_model(checkpoint):
        if kwargs:
            raise ValueError(
                f"An rl-zoo3 model takes no controller arguments; got {sorted(kwargs)}."
            )
        return load_zoo_controller(checkpoint, env, algo=algo, trusted=trusted)
    return make_sb3_controller(algo, env, checkpoint=checkpoint, trusted=trusted, **kwargs)


__all__ = [
    "ENV_NAME",
    "find_zoo_files",
    "is_zoo_model",
    "load_zoo_controller",
    "make_rl_controller",
    "read_zoo_args",
    "require_trust",
]
