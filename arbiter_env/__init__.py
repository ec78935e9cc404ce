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

register(id=ENV_ID, entry_point="arbiter_env.env:BatchSizeEnv")

# User modules named in ARBITER_IMPORTS (set by `arbiter --import MODULE` for its worker
# processes): imported last, once everything they may use from this package exists.
from arbiter_env.user_code import import_from_environment  # noqa: E402

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
