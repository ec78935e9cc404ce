"""arbiter-env: neural-network training as a Gymnasium environment whose action is the batch size.

Importing the package registers ``arbiter_env/BatchSize-v0``, and does nothing else::

    import gymnasium as gym
    import arbiter_env

    env = gym.make("arbiter_env/BatchSize-v0", task="digits-mlp")

A fresh worker process that has not imported the package (``SubprocVecEnv`` started from a
notebook or from pytest) finds the id through Gymnasium's module prefix, which imports the
package first: ``gym.make("arbiter_env:arbiter_env/BatchSize-v0")``.
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
