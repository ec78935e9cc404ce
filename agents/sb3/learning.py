"""How the stable-baselines3 agents train: the registry's :class:`SB3Training`.

A comparison's training run and ``arbiter train --agent ppo`` both reach this module through the
agents' registry entries; nothing outside it needs to know that an agent is an SB3 algorithm.
Training goes through :func:`~arbiter_env.agents.sb3.train_rl_agent` (checkpoint folders), and a
trained agent is loaded back with the registry factory's ``checkpoint=``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from arbiter_env.agents import zoo
from arbiter_env.agents.sb3.algorithms import check_action_space
from arbiter_env.agents.sb3.checkpoints import (
    checkpoint_timesteps,
    latest_checkpoint,
    load_checkpoint_config,
)
from arbiter_env.agents.sb3.config import AgentConfig, load_agent_config, resolve_agent_config
from arbiter_env.agents.sb3.controller import load_rl_controller, require_trust_for_pickles
from arbiter_env.agents.sb3.fitting import train_rl_agent
from arbiter_env.agents.sb3_logging import IntervalLoggingCallback
from arbiter_env.config import ConfigError, to_dict
from arbiter_env.controllers import (
    Controller,
    HeldOutEvaluation,
    TrainingJob,
    TrainOutcome,
    TrainRequest,
    make_controller,
)
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.tasks import is_family

if TYPE_CHECKING:
    from arbiter_env.lab.runlog import RunLogger


def sb3_training_config(job: TrainingJob) -> AgentConfig:
    """The resolved ``AgentConfig`` a comparison's training job uses (checked, not run).

    Raises:
        ConfigError: settings the RL training cannot take, or a bad agent config.
    """
    unknown = sorted(set(job.kwargs) - {"config", "overrides"})
    if unknown:
        raise ConfigError(
            f"{job.label}: kwargs {unknown} are not used to train an SB3 agent here; use "
            "kwargs.config (an agent YAML) and kwargs.overrides (key=value strings)."
        )
    # The same task, overrides and env settings as the evaluation episodes; the comparison's
    # budget and seed (typed values); then the entry's own key=value overrides.
    settings = {
        "total_timesteps": job.total_timesteps,
        "seed": job.seed,
        "env.task_kwargs": job.task_overrides,
        **{f"env.{key}": value for key, value in job.env.items()},
    }
    return load_agent_config(
        job.kwargs.get("config", job.controller),
        task=job.task,
        settings=settings,
        overrides=list(job.kwargs.get("overrides", [])),
    )


class SB3Training:
    """The registry's training of an SB3 algorithm: checkpoint folders from ``train_rl_agent``."""

    has_command = True

    def check(
        self, name: str, kwargs: dict[str, Any], env: gym.Env, job: TrainingJob | None
    ) -> None:
        """A contestant: its training config (if trained) or its checkpoint and kwargs."""
        if job is not None:
            agent = sb3_training_config(job)
            encoding = env.unwrapped.action_encoding.name  # type: ignore[attr-defined]
            if agent.env.action_encoding != encoding:
                raise ConfigError(
                    f"the agent trains with action_encoding={agent.env.action_encoding!r} but is "
                    f"evaluated with {encoding!r}; set it in the controller's env."
                )
            check_action_space(agent.algo, env.action_space)
            return
        _check_untrained(name, kwargs, env)

    def train(self, job: TrainingJob, log: RunLogger) -> None:
        """Trains on the job's task, overrides and env; the model folder is ``job.model_path``."""
        config = sb3_training_config(job)
        final = train_rl_agent(
            config, job.work_dir, callbacks=[IntervalLoggingCallback(log, controller=job.label)]
        )
        log.set_summary({"train_timesteps": job.total_timesteps, "checkpoint": str(final)})
        if Path(final) != job.model_path:
            raise RuntimeError(f"the agent was saved in {final}, not in {job.model_path}.")

    def load(self, job: TrainingJob, env: gym.Env) -> Controller:
        """The registry factory with ``checkpoint=job.model_path``."""
        kwargs = {k: v for k, v in job.kwargs.items() if k not in ("config", "overrides")}
        return make_controller(job.controller, env, checkpoint=job.model_path, **kwargs)

    def prepare(self, request: TrainRequest) -> SB3TrainingPlan:
        """``arbiter train --agent ALGO``: the resolved config, checked before anything runs."""
        overrides = [f"env.task_kwargs.{item}" for item in request.task_overrides]
        # Typed already: set as values, not turned back into strings to parse.
        settings = {f"env.{key}": value for key, value in request.env_args.items()}
        if request.seed is not None:
            overrides.append(f"seed={request.seed}")
        overrides += request.overrides
        if request.config_file is not None:
            overrides.insert(0, f"algo={request.agent}")  # --agent wins over the file
            config = resolve_agent_config(
                request.file_data, task=request.task, overrides=overrides, settings=settings
            )
        else:
            config = load_agent_config(
                request.agent, task=request.task, overrides=overrides, settings=settings
            )
        _preflight(config, request.resume)
        return SB3TrainingPlan(config, request)


def _check_untrained(name: str, kwargs: dict[str, Any], env: gym.Env) -> None:
    """A contestant the comparison does not train: a checkpoint, or training in each run."""
    allowed = {"checkpoint", "config", "overrides", "total_timesteps", "trusted"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(
            f"kwargs {unknown} are not used by {name!r} here (allowed: "
            f"{', '.join(sorted(allowed))}; set train_timesteps to train it)."
        )
    checkpoint = kwargs.get("checkpoint")
    if checkpoint is None and kwargs.get("total_timesteps", 0) > 0:
        # Trained inside each evaluation run: check its config and the encoding.
        encoding = env.unwrapped.action_encoding.name  # type: ignore[attr-defined]
        agent = load_agent_config(
            kwargs.get("config") or name,
            task=env.unwrapped.task.name,  # type: ignore[attr-defined]
            overrides=[f"env.action_encoding={encoding}", *kwargs.get("overrides", [])],
        )
        check_action_space(agent.algo, env.action_space)
        return
    if checkpoint is None:
        raise ConfigError(
            f"{name!r} has neither train_timesteps > 0 nor a checkpoint (nor "
            "kwargs.total_timesteps): it would be evaluated untrained. Set train_timesteps or "
            "kwargs.checkpoint."
        )

    if zoo.is_zoo_model(checkpoint):
        zoo.require_trust(checkpoint, bool(kwargs.get("trusted", False)))  # model file there too
        return
    saved = load_checkpoint_config(checkpoint)
    require_trust_for_pickles(checkpoint, bool(kwargs.get("trusted", False)))
    if saved.algo != name:
        raise ConfigError(f"checkpoint {checkpoint} holds a {saved.algo!r} agent.")
    check_action_space(saved.algo, env.action_space)


@dataclass
class SB3TrainingPlan:
    """``arbiter train`` of an SB3 agent: train, then play held-out seeds (unless ``--no-eval``)."""

    agent: AgentConfig
    request: TrainRequest

    @property
    def config(self) -> dict[str, Any]:
        """The resolved agent config."""
        return to_dict(self.agent)

    @property
    def task(self) -> str:
        """The task or family trained on."""
        return self.agent.env.task_name

    @property
    def total(self) -> int:
        """Env steps to train."""
        return self.agent.total_timesteps

    def run(self, log: RunLogger, progress: Callable[[int], None]) -> TrainOutcome:
        """Trains into ``log.run_dir`` (resuming if asked), then sets up the held-out episodes."""
        request, config = self.request, self.agent
        resume = request.resume
        if resume is not None and Path(resume).resolve().is_relative_to(log.run_dir.resolve()):
            # Resuming in the run's own folder: drop what the interrupted run logged after the
            # checkpoint (it is trained again) and keep counting samples and episodes.
            kept = log.continue_from(checkpoint_timesteps(resume))
            if kept["dropped"]:
                print(
                    f"Resuming in {log.run_dir}: dropped {kept['dropped']} interval rows logged "
                    f"after the checkpoint; {kept['kept']} kept.",
                    file=sys.stderr,
                )
        callback = IntervalLoggingCallback(
            log, controller=request.agent, forward_sb3_logger=True, progress=progress
        )
        checkpoint = train_rl_agent(
            config, log.run_dir, callbacks=[callback], resume_from=request.resume
        )
        evaluation = None
        if request.evaluate:
            env = BatchSizeEnv.from_config(config.env, "test")
            evaluation = HeldOutEvaluation(
                env,
                load_rl_controller(checkpoint, env, device=config.device),
                config.evaluation.seeds(),
                name=f"{request.agent}-eval",
                deterministic=config.evaluation.deterministic,
                extra={"phase": "eval"},
            )
        held_out = "held-out seeds" + (" and test instances" if is_family(self.task) else "")
        return TrainOutcome(
            checkpoint=checkpoint,
            title=f"{request.agent} on {self.task}, {held_out}",
            evaluation=evaluation,
            training_episodes=True,
        )

    def interrupted(self, run_dir: Path) -> Path | str:
        """The newest checkpoint written so far (``--resume`` continues from it)."""
        return latest_checkpoint(run_dir) or (
            f"Interrupted before the first checkpoint; nothing to resume in {run_dir}. Set "
            "checkpoint_every=N to save checkpoints during training."
        )


def _preflight(config: AgentConfig, resume: Path | None) -> None:
    """Everything ``arbiter train`` can check before it creates a run folder, all at once.

    The training and evaluation environments are built (task overrides, env settings, data
    files), the algorithm is checked against their action spaces, and the checkpoint to resume
    from must exist and hold the same algorithm. One line per problem.
    """
    problems: list[str] = []
    if resume is not None:
        try:
            saved = load_checkpoint_config(resume)
            if saved.algo != config.algo:
                problems.append(f"--resume {resume}: it holds a {saved.algo!r} agent.")
        except (FileNotFoundError, ValueError) as error:
            problems.append(f"--resume {resume}: {_first_line(error)}")
    for split in ("train", "test"):
        try:
            env = BatchSizeEnv.from_config(config.env, split)
        except (ValueError, TypeError, FileNotFoundError) as error:
            problems.append(f"env ({split}): {_first_line(error)}")
            continue
        try:
            check_action_space(config.algo, env.action_space)
        except ValueError as error:
            problems.append(f"{config.algo}: {_first_line(error)}")
        if not is_family(config.env.task_name):
            break  # one task: the evaluation env is built the same way
    problems = list(dict.fromkeys(problems))
    if problems:
        raise ConfigError(
            f"{len(problems)} problem(s), nothing was run:\n"
            + "\n".join(f"  {problem}" for problem in problems)
        )


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")


SB3_TRAINING = SB3Training()
"""The training of every SB3 algorithm's registry entry."""
