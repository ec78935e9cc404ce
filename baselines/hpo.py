"""Static hyperparameter optimisation of one fixed batch size (random search, Optuna TPE and GP).

Each trial picks one size from the environment's ladder and trains a full seeded episode with it
(one per ``search_seeds`` entry); the objective is the mean final validation loss, lower is better,
and a diverged episode scores ``+inf``. ``learn()`` runs the search, ``predict`` then plays the best
size found.

The study lives in ``<run_dir>/<study_name>.db`` (SQLite), where ``run_dir`` is the config's, else
the work folder ``learn(work_dir=...)`` is given (a comparison's training folder, ``arbiter evaluate
--learn``'s run folder), else ``runs/hpo``; and every finished trial is written at
once, so a search that is interrupted (Ctrl-C, a killed job) resumes where it stopped: ``learn()``
counts the completed trials, marks the trial that was running when it stopped as failed, and runs
only the missing ones. The study records what it searched (task, ladder, seeds, sampler); resuming
with different settings raises ``ValueError`` instead of mixing two searches. One process at a time
should run a given study.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import optuna
from optuna.trial import TrialState

from arbiter_env.baselines.common import Baseline, require
from arbiter_env.baselines.schedules import FixedBatchSize, FixedConfig
from arbiter_env.config import from_dict, to_dict
from arbiter_env.controllers import run_episode

DEFAULT_RUN_DIR = "runs/hpo"
"""The study's folder when neither the config nor ``learn`` names one."""


@dataclass(frozen=True)
class HPOConfig:
    """The search's settings.

    Args:
    n_trials: Trials (distinct fixed-size episodes per seed) of the whole search, counting those
        already in the storage.
    search_seeds: Episode seeds of every trial; the objective is the mean final validation loss
        over them. Keep them apart from your evaluation seeds (default 1000).
    run_dir: Folder of the SQLite storage ``<study_name>.db``; ``None``: the ``work_dir`` given to
        ``learn``, else ``runs/hpo``.
    study_name: Name of the study (and its file); ``None`` derives it from the sampler and task.
    sampler_seed: Seed of the sampler's own generator (offset by the number of trials already
        run, so a resumed search does not replay its first proposals).
    n_startup_trials: Random trials before TPE or GP model the objective; ``None`` keeps
        Optuna's default (10). Ignored by random search.
    """

    n_trials: int = 20
    search_seeds: tuple[int, ...] = (1000,)
    run_dir: str | None = None
    study_name: str | None = None
    sampler_seed: int = 0
    n_startup_trials: int | None = None

    def __post_init__(self) -> None:
        require(self.n_trials >= 1, f"n_trials must be >= 1, got {self.n_trials}.")
        require(len(self.search_seeds) >= 1, "search_seeds needs at least one seed.")
        require(
            self.run_dir is None or bool(self.run_dir),
            "run_dir must name a folder for the study's SQLite file (or be null).",
        )
        require(
            self.n_startup_trials is None or self.n_startup_trials >= 1,
            f"n_startup_trials must be >= 1 (or null for Optuna's default), got "
            f"{self.n_startup_trials}.",
        )


class StaticHPO(Baseline):
    """Search one fixed batch size with an Optuna sampler; subclasses choose the sampler.

    The search variable is the index of a rung of ``env.ladder`` (an ordered integer, which the
    GP and TPE samplers model better than a categorical). Call :meth:`learn` before
    :meth:`predict`; a study already complete in ``run_dir`` is picked up without new trials.
    It is a :class:`~arbiter_env.controllers.Learner`: ``learn``, ``save``, ``load``.
    """

    Config = HPOConfig
    kind = "hpo"
    sampler_name: ClassVar[str]

    def __init__(self, env: gym.Env, config: Any = None, **overrides: Any):
        super().__init__(env, config, **overrides)
        self._best: int | None = None
        self._work_dir: Path | None = None
        self.episodes_run = 0

    # --- the study ------------------------------------------------------------------------------

    @property
    def study_name(self) -> str:
        """The study's name: the config's, else ``<sampler>-<task>``."""
        return self.config.study_name or f"{self.sampler_name}-{self.batch_env.task.name}"

    @property
    def storage_path(self) -> Path:
        """The study's SQLite file."""
        folder = self.config.run_dir or self._work_dir or DEFAULT_RUN_DIR
        return Path(folder) / f"{self.study_name}.db"

    def _search_space(self) -> dict[str, Any]:
        return {
            "task": self.batch_env.task.name,
            "ladder": [int(b) for b in self.batch_env.ladder],
            "search_seeds": list(self.config.search_seeds),
            "sampler": self.sampler_name,
        }

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """The Optuna sampler of the search, seeded with ``seed``."""
        raise NotImplementedError

    def load_study(self, seed_offset: int = 0) -> optuna.Study:
        """Opens (or creates) the study in ``run_dir`` and checks it searches the same space."""
        self.storage_path.parent.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{self.storage_path}"
        sampler = self.make_sampler(self.config.sampler_seed + seed_offset)
        if not self._exists(storage):
            study = optuna.create_study(
                study_name=self.study_name, storage=storage, direction="minimize", sampler=sampler
            )
            for key, value in self._search_space().items():
                study.set_user_attr(key, value)
            return study
        study = optuna.load_study(study_name=self.study_name, storage=storage, sampler=sampler)
        recorded = {k: study.user_attrs.get(k) for k in self._search_space()}
        if recorded != self._search_space():
            raise ValueError(
                f"The study {self.study_name!r} in {self.storage_path} searched {recorded}, not "
                f"{self._search_space()}; choose another run_dir or study_name to start afresh."
            )
        return study

    def _exists(self, storage: str) -> bool:
        if not self.storage_path.exists():
            return False
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        return self.study_name in names

    # --- search ---------------------------------------------------------------------------------

    def evaluate_batch_size(self, batch_size: int) -> float:
        """Mean final validation loss of full episodes at ``batch_size`` (``inf`` if diverged)."""
        fixed = FixedBatchSize(self.env, FixedConfig(batch_size=batch_size))
        losses = []
        for seed in self.config.search_seeds:
            record = run_episode(self.env, fixed, seed)
            self.episodes_run += 1
            loss = record.final_val_loss
            losses.append(loss if math.isfinite(loss) and not record.diverged else math.inf)
        return float(np.mean(losses))

    def learn(
        self,
        total_timesteps: int = 0,
        n_trials: int | None = None,
        *,
        work_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> StaticHPO:
        """Runs the trials still missing from the study (``total_timesteps`` is ignored).

        Args:
            total_timesteps: Unused; the budget is ``n_trials`` (SB3-compatible signature).
            n_trials: Total trials wanted; defaults to ``config.n_trials``.
            work_dir: Where the study lives unless the config names a ``run_dir``.
            **kwargs: Ignored (SB3-compatible signature).
        """
        if work_dir is not None:
            self._work_dir = Path(work_dir)
        wanted = n_trials if n_trials is not None else self.config.n_trials
        require(wanted >= 1, f"n_trials must be >= 1, got {wanted}.")
        study = self.load_study()
        # A trial left RUNNING was cut off by an interruption: it produced nothing, so it fails.
        for cut_off in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(cut_off.number, state=TrialState.FAIL)
        study = self.load_study(seed_offset=len(study.trials))
        ladder = [int(b) for b in self.batch_env.ladder]
        while self._completed(study) < wanted:
            trial = study.ask()
            batch_size = ladder[trial.suggest_int("rung", 0, len(ladder) - 1)]
            trial.set_user_attr("batch_size", batch_size)
            study.tell(trial, self.evaluate_batch_size(batch_size))
        self._best = self._best_from(study)
        return self

    @staticmethod
    def _completed(study: optuna.Study) -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    @staticmethod
    def _best_from(study: optuna.Study) -> int:
        return int(study.best_trial.user_attrs["batch_size"])

    @property
    def best_batch_size(self) -> int:
        """The best size of the study (loaded from ``run_dir`` if ``learn`` ran elsewhere)."""
        if self._best is None:
            storage = f"sqlite:///{self.storage_path}"
            if not self._exists(storage) or self._completed(self.load_study()) == 0:
                raise ValueError(
                    f"{type(self).__name__} has no finished trial in {self.storage_path}; call "
                    "learn() before predict() (on the command line: arbiter evaluate --learn)."
                )
            self._best = self._best_from(self.load_study())
        return self._best

    def choose_batch_size(self, observation: np.ndarray) -> int:
        """The best size of the search, whatever the observation."""
        return self.best_batch_size

    def save(self, path: str | Path) -> None:
        """Writes the config and the best size found, for :meth:`load` (the study stays put)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"config": to_dict(self.config), "best_batch_size": self.best_batch_size}
        path.write_text(json.dumps(record, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, env: gym.Env) -> StaticHPO:
        """The searched controller saved by :meth:`save`, ready to act in ``env``."""
        record = json.loads(Path(path).read_text())
        controller = cls(env, from_dict(cls.Config, record["config"]))
        controller._best = int(record["best_batch_size"])
        return controller


class RandomSearch(StaticHPO):
    """Random search (Bergstra & Bengio, 2012) over the ladder, with Optuna's ``RandomSampler``."""

    sampler_name = "random-search"

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """Optuna's ``RandomSampler``."""
        return optuna.samplers.RandomSampler(seed=seed)


class OptunaTPE(StaticHPO):
    """Bayesian optimisation with the tree-structured Parzen estimator (Bergstra et al., 2011)."""

    sampler_name = "optuna-tpe"

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """The sampler, with ``n_startup_trials`` if the config sets it."""
        extra = {}
        if self.config.n_startup_trials is not None:
            extra["n_startup_trials"] = self.config.n_startup_trials
        return optuna.samplers.TPESampler(seed=seed, **extra)


class OptunaGP(StaticHPO):
    """Bayesian optimisation with a Gaussian process (Optuna's ``GPSampler``)."""

    sampler_name = "optuna-gp"

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """The sampler, with ``n_startup_trials`` if the config sets it."""
        extra = {}
        if self.config.n_startup_trials is not None:
            extra["n_startup_trials"] = self.config.n_startup_trials
        return optuna.samplers.GPSampler(seed=seed, **extra)
