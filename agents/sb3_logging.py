"""Logging stable-baselines3 training to a :class:`~arbiter_env.lab.runlog.RunLogger`.

SB3's own logger (``train/*``, ``rollout/*``, ``time/*``) is forwarded through a ``KVWriter``,
and every environment interval through a callback::

    with RunLogger(run_dir, config, job_type="train") as log:
        attach_sb3_logger(model, log)
        model.learn(10_000, callback=IntervalLoggingCallback(log))

It lives with the RL agents so that the core package does not need stable-baselines3.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger, make_output_format
from stable_baselines3.common.vec_env import unwrap_vec_normalize

if TYPE_CHECKING:
    from arbiter_env.lab.runlog import RunLogger


class WandbKVWriter(KVWriter):
    """Forwards stable-baselines3's logger to a :class:`RunLogger`.

    SB3's ``train/*``, ``rollout/*`` and ``time/*`` keys hence reach ``metrics.jsonl`` and W&B,
    without tensorboard.

    Keys excluded for ``"wandb"`` in SB3's ``logger.record(..., exclude=...)`` are skipped, as are
    values that are not scalars (videos, figures, images, hyperparameter records).
    """

    def __init__(self, run_logger: RunLogger):
        self.run_logger = run_logger

    def write(
        self,
        key_values: dict[str, Any],
        key_excluded: dict[str, tuple[str, ...]],
        step: int = 0,
    ) -> None:
        """Logs one SB3 ``dump`` at ``step``, without the keys excluded for ``"wandb"``."""
        metrics = {
            key: value
            for key, value in key_values.items()
            if "wandb" not in (key_excluded.get(key) or ())
        }
        self.run_logger.log_metrics(metrics, step=step)

    def close(self) -> None:
        """The :class:`RunLogger` owns the W&B run and closes it; nothing to do here."""


def attach_sb3_logger(
    model: Any,
    run_logger: RunLogger,
    *,
    formats: Iterable[str] = ("csv",),
    folder: str | os.PathLike[str] | None = None,
) -> Logger:
    """Replaces ``model``'s logger by one that also writes to ``run_logger``.

    Args:
        model: A stable-baselines3 model.
        run_logger: Where SB3's metrics go (``metrics.jsonl`` and W&B).
        formats: SB3's own output formats as well (``"stdout"``, ``"csv"``, ``"log"``,
            ``"json"``; ``"tensorboard"`` needs the tensorboard package).
        folder: Where those formats write (default ``RUN_DIR/sb3``).

    Returns:
        The new logger (already set with ``model.set_logger``).
    """
    folder = Path(folder) if folder is not None else run_logger.run_dir / "sb3"
    folder.mkdir(parents=True, exist_ok=True)
    outputs: list[KVWriter] = [make_output_format(f, str(folder)) for f in formats]
    logger = Logger(str(folder), [*outputs, WandbKVWriter(run_logger)])
    model.set_logger(logger)
    return logger


class IntervalLoggingCallback(BaseCallback):
    """Logs every environment interval, and episode summaries, during stable-baselines3 training.

    Everything goes to a :class:`RunLogger`.

    Works with any number of parallel environments; with ``VecNormalize`` the logged reward is
    the environment's original, unnormalised one.

    Args:
        run_logger: The run's logger.
        controller: Name written into the episode summaries (e.g. ``"ppo"``).
        forward_sb3_logger: Also send SB3's own logger (``train/*``, ``rollout/*``, ``time/*``) to
            the run (:func:`attach_sb3_logger`, when training starts), unless the model's logger
            already writes to this run. On by default, so SB3 training logs its metrics
            wherever it runs.
        sb3_formats: SB3's own output formats when forwarding (see :func:`attach_sb3_logger`).
        progress: Called with the model's timestep count after every step (e.g. a progress bar).
    """

    def __init__(
        self,
        run_logger: RunLogger,
        controller: str | None = None,
        *,
        forward_sb3_logger: bool = True,
        sb3_formats: Iterable[str] = ("csv",),
        progress: Callable[[int], None] | None = None,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        self.run_logger = run_logger
        self.controller = controller
        self.forward_sb3_logger = forward_sb3_logger
        self.sb3_formats = tuple(sb3_formats)
        self.progress = progress

    def _on_training_start(self) -> None:
        formats = getattr(self.model.logger, "output_formats", None) or []
        if self.forward_sb3_logger and not any(
            isinstance(f, WandbKVWriter) and f.run_logger is self.run_logger for f in formats
        ):
            attach_sb3_logger(self.model, self.run_logger, formats=self.sb3_formats)
        self.run_logger.describe(self.training_env, self.model)

    def _on_training_end(self) -> None:
        # learn() stops at a timestep count, usually mid-episode in every environment: close
        # those episodes as incomplete, so that nothing logged later joins them.
        for index in range(self.training_env.num_envs if self.training_env else 0):
            self.run_logger.end_open_episode(index)

    def _on_step(self) -> bool:
        infos = self.locals.get("infos") or []
        rewards = self.locals.get("rewards")
        dones = self.locals.get("dones")
        normalizer = unwrap_vec_normalize(self.training_env) if self.training_env else None
        if normalizer is not None:
            rewards = normalizer.get_original_reward()
        for index, info in enumerate(infos):
            if "samples" not in info or "batch_size" not in info:
                continue  # not a BatchSizeEnv step
            reward = float(rewards[index]) if rewards is not None else None
            self.run_logger.log_interval(
                info, reward=reward, env_index=index, extra={"timesteps": self.num_timesteps}
            )
            if dones is not None and bool(dones[index]):
                self.run_logger.end_episode(index, controller=self.controller)
        if self.progress is not None:
            self.progress(self.num_timesteps)
        return True


__all__ = ["IntervalLoggingCallback", "WandbKVWriter", "attach_sb3_logger"]
