"""arbiter-env: neural-network training as a Gymnasium environment whose action is the batch size.

Importing the package registers ``arbiter_env/BatchSize-v0``::

    import gymnasium as gym
    import arbiter_env

    env = gym.make("arbiter_env/BatchSize-v0", task="digits-mlp")
"""

from gymnasium.envs.registration import register

from arbiter_env.tasks import (
    ClassificationData,
    OptimizerConfig,
    Task,
    from_tensors,
    from_torch_datasets,
    list_tasks,
    make_task,
    register_task,
)

__version__ = "0.1.0"

ENV_ID = "arbiter_env/BatchSize-v0"

register(
    id=ENV_ID,
    entry_point="arbiter_env.envs.batch_size:BatchSizeEnv",
    # gymnasium.make_vec(ENV_ID, num_envs=N, vectorization_mode="vector_entry_point"): N inner
    # networks trained in lockstep (arbiter_env.vector.population).
    vector_entry_point="arbiter_env.vector.population:PopulationVectorEnv",
)


def _preload_in_forkserver() -> None:
    """Makes forkserver worker processes start with this package imported, so the env id exists.

    SB3's ``SubprocVecEnv`` (and so ``make_vec_env(ENV_ID, vec_env_cls=SubprocVecEnv)`` and
    rl-zoo3's ``--vec-env subproc``) starts workers with the ``forkserver`` method where it exists.
    A worker only calls ``gym.make(ENV_ID)``; unless it imports this package, the id is unknown
    there (``NamespaceNotFound``). The server imports ``__main__`` by default, which covers
    scripts that import the package at the top, but not pytest, notebooks or ``python -c``.
    Adding the package to the server's preload list covers them; it takes effect when the server
    starts, which is at the first worker after this import.
    """
    from multiprocessing import forkserver

    # The list has no public getter; keep what is there (``__main__`` by default).
    preload = list(getattr(forkserver._forkserver, "_preload_modules", None) or ["__main__"])
    if __name__ not in preload:
        forkserver.set_forkserver_preload([*preload, __name__])


_preload_in_forkserver()

# User modules named in ARBITER_IMPORTS (set by `arbiter --import MODULE` for its worker
# processes): imported last, once everything they may use from this package exists.
from arbiter_env.lab.user_code import import_from_environment  # noqa: E402

import_from_environment()

__all__ = [
    "ENV_ID",
    "ClassificationData",
    "OptimizerConfig",
    "Task",
    "from_tensors",
    "from_torch_datasets",
    "list_tasks",
    "make_task",
    "register_task",
]
