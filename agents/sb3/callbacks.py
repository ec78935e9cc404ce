"""Stable-baselines3 callbacks used while training."""

from __future__ import annotations

from pathlib import Path

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from arbiter_env.agents.sb3.checkpoints import save_checkpoint
from arbiter_env.agents.sb3.config import AgentConfig


class CheckpointEveryCallback(BaseCallback):
    """Saves a checkpoint to ``<run_dir>/checkpoints/step_<timesteps>`` every ``every`` steps.

    On-policy algorithms (PPO, A2C) are saved only at the start of a rollout, that is after the
    previous rollout has been trained on: a checkpoint taken in the middle of collection (or at
    its last step, before ``train()``) would hold timesteps whose rollout is then lost on resume,
    so a resumed run would make fewer gradient updates than an uninterrupted one. The step of a
    saved checkpoint is therefore the first rollout boundary at or after each ``every`` steps.
    Off-policy algorithms train as they collect and are saved at the step itself.
    """

    def __init__(
        self,
        every: int,
        run_dir: Path,
        config: AgentConfig,
        vec_normalize: VecNormalize | None,
    ):
        super().__init__()
        self.every = every
        self.run_dir = run_dir
        self.config = config
        self.vec_normalize = vec_normalize
        self._last_saved = 0

    def _on_training_start(self) -> None:
        self._last_saved = self.num_timesteps

    def _on_step(self) -> bool:
        if not isinstance(self.model, OnPolicyAlgorithm):
            self._maybe_save()
        return True

    def _on_rollout_start(self) -> None:
        if isinstance(self.model, OnPolicyAlgorithm):
            self._maybe_save()

    def _maybe_save(self) -> None:
        if self.every and self.num_timesteps - self._last_saved >= self.every:
            self._last_saved = self.num_timesteps
            folder = self.run_dir / "checkpoints" / f"step_{self.num_timesteps:09d}"
            save_checkpoint(self.model, folder, self.config, self.vec_normalize)
