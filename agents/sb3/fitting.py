"""Training: creating an agent, training it into a run folder (with checkpoints on the way), resuming."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from arbiter_env.agents.sb3.algorithms import ALGORITHMS, check_action_space
from arbiter_env.agents.sb3.checkpoints import (
    CONFIG_FILE,
    MODEL_FILE,
    REPLAY_BUFFER_FILE,
    check_spaces,
    checkpoint_folder,
    load_checkpoint_config,
    load_vecnormalize,
    save_checkpoint,
    stats_present,
)
from arbiter_env.agents.sb3.config import AgentConfig, load_agent_config
from arbiter_env.agents.sb3.envs import make_vec_env, wrap_vec_normalize
from arbiter_env.agents.sb3.runtime import preserved_global_rngs, torch_threads
from arbiter_env.config import save_yaml


def make_rl_agent(
    algo: str, env_or_venv: gym.Env | VecEnv, config: AgentConfig | None = None
) -> BaseAlgorithm:
    """Creates an untrained stable-baselines3 agent for ``env_or_venv``.

    Args:
        algo: ``"ppo"``, ``"a2c"``, ``"dqn"``, ``"sac"`` or ``"td3"``.
        env_or_venv: A single env (SB3 wraps it in a ``DummyVecEnv``) or a ``VecEnv``.
        config: Hyperparameters and policy; default: :func:`load_agent_config` ``(algo)``. Its
            ``algo`` must equal ``algo``.
    """
    check_action_space(algo, env_or_venv.action_space)
    if config is None:
        encoding = "continuous" if isinstance(env_or_venv.action_space, spaces.Box) else "discrete"
        config = load_agent_config(algo, overrides=[f"env.action_encoding={encoding}"])
    if config.algo != algo:
        raise ValueError(f"make_rl_agent({algo!r}, ...) got a config for algo={config.algo!r}.")
    with preserved_global_rngs():
        return ALGORITHMS[algo](
            "MlpPolicy",
            env_or_venv,
            policy_kwargs=config.policy_kwargs.to_sb3(algo),
            seed=config.seed,
            device=config.device,
            verbose=config.verbose,
            **config.hyperparams.to_kwargs(),
        )


def train_rl_agent(
    config: AgentConfig,
    run_dir: str | Path,
    callbacks: list[BaseCallback] | None = None,
    resume_from: str | Path | None = None,
    *,
    progress_bar: bool = False,
) -> Path:
    """Trains an agent on ``config.env`` and returns the folder of its final checkpoint.

    Args:
        config: The resolved agent config (:func:`load_agent_config`).
        run_dir: Run folder; receives ``config.yaml``, ``checkpoints/step_*`` (every
            ``config.checkpoint_every`` timesteps) and ``final/`` (returned).
        callbacks: Extra SB3 callbacks (for example a logger), called during ``learn``.
        resume_from: A checkpoint folder to continue from: the model, its timestep counter,
            VecNormalize statistics and replay buffer are restored, and training runs until
            ``config.total_timesteps`` in total. ``config.algo`` must match the checkpoint's.
        progress_bar: Show SB3's progress bar (needs ``tqdm`` and ``rich``).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(config, run_dir / CONFIG_FILE)
    with preserved_global_rngs(), torch_threads(config.torch_threads):
        model, vec_normalize = _build_for_training(config, resume_from)
        try:
            remaining = config.total_timesteps - model.num_timesteps
            if remaining > 0:
                callback_list: list[BaseCallback] = [
                    CheckpointEveryCallback(config.checkpoint_every, run_dir, config, vec_normalize)
                ]
                callback_list += list(callbacks or [])
                model.learn(
                    remaining,
                    callback=CallbackList(callback_list),
                    reset_num_timesteps=False,
                    progress_bar=progress_bar,
                )
            return save_checkpoint(model, run_dir / "final", config, vec_normalize)
        finally:
            env = model.get_env()
            if env is not None:
                env.close()


def _build_for_training(
    config: AgentConfig, resume_from: str | Path | None
) -> tuple[BaseAlgorithm, VecNormalize | None]:
    if resume_from is None:
        venv = make_vec_env(config)
        vec_normalize = wrap_vec_normalize(venv, config)
        model = make_rl_agent(config.algo, vec_normalize or venv, config)
        return model, vec_normalize
    return _resume(config, checkpoint_folder(resume_from))


def _resume(config: AgentConfig, folder: Path) -> tuple[BaseAlgorithm, VecNormalize | None]:
    """The agent saved in ``folder``, with fresh envs, its statistics and its replay buffer."""
    saved = load_checkpoint_config(folder)
    if saved.algo != config.algo:
        raise ValueError(
            f"Cannot resume {config.algo!r} from {folder}: it holds a {saved.algo!r} agent."
        )
    model = ALGORITHMS[config.algo].load(folder / MODEL_FILE, device=config.device)
    # Fresh episode seeds after the ones already trained on (still below the evaluation seeds).
    venv = make_vec_env(config, seed=config.seed + model.num_timesteps)
    vec_normalize: VecNormalize | None = None
    if stats_present(folder):
        vec_normalize = load_vecnormalize(folder, venv)
        vec_normalize.training = True
    elif config.vec_normalize.enabled:
        vec_normalize = wrap_vec_normalize(venv, config)
    check_action_space(config.algo, venv.action_space)
    check_spaces(model, venv.observation_space, venv.action_space, folder)
    model.set_env(vec_normalize or venv)
    model.set_random_seed(config.seed + model.num_timesteps)
    if isinstance(model, OffPolicyAlgorithm) and (folder / REPLAY_BUFFER_FILE).is_file():
        model.load_replay_buffer(folder / REPLAY_BUFFER_FILE)
    return model, vec_normalize


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
