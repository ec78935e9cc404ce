"""Controllers: one interface for all of them, the registry, and how each is trained.

- :mod:`~arbiter_env.controllers.base`: :class:`Controller` (``predict``), :class:`Learner`
  (``learn``/``save``/``load``), :class:`BatchSizeController`, :func:`run_episode`.
- :mod:`~arbiter_env.controllers.registry`: controllers by name, each entry saying its kind, env
  defaults and :class:`~arbiter_env.controllers.learning.Training`.
- :mod:`~arbiter_env.controllers.learning`: the :class:`Training` protocol and the default
  :class:`LearnerTraining`.
"""

from arbiter_env.controllers.base import (
    BatchSizeController,
    Controller,
    EpisodeRecord,
    Learner,
    StepCallback,
    evaluate,
    run_episode,
)
from arbiter_env.controllers.learning import (
    HeldOutEvaluation,
    LearnerTraining,
    Training,
    TrainingJob,
    TrainingPlan,
    TrainOutcome,
    TrainRequest,
    inline_value,
)
from arbiter_env.controllers.registry import (
    ControllerEntry,
    controller_entry,
    controller_env_defaults,
    controller_kind,
    describe_controller,
    list_controllers,
    make_controller,
    register_controller,
    trainable_controllers,
)

__all__ = [
    "BatchSizeController",
    "Controller",
    "ControllerEntry",
    "EpisodeRecord",
    "HeldOutEvaluation",
    "Learner",
    "LearnerTraining",
    "StepCallback",
    "TrainOutcome",
    "TrainRequest",
    "Training",
    "TrainingJob",
    "TrainingPlan",
    "controller_entry",
    "controller_env_defaults",
    "controller_kind",
    "describe_controller",
    "evaluate",
    "inline_value",
    "list_controllers",
    "make_controller",
    "register_controller",
    "run_episode",
    "trainable_controllers",
]
