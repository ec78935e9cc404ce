"""One logging layer for every controller: local JSONL files first, Weights & Biases on top.

A :class:`RunLogger` owns a *run folder*. Whatever it is given (per-interval environment infos,
per-episode summaries, free-form metrics such as stable-baselines3's own logger output) is
written to JSONL files in that folder first, one flushed line per record, and then sent to W&B,
whose failures never stop training (:mod:`~arbiter_env.lab.runlog.writers`).

Run folder layout::

    RUN_DIR/
      config.yaml       the resolved config (also in ``wandb.config``)
      intervals.jsonl   one record per scheduling interval (env step)
      episodes.jsonl    one summary per episode
      metrics.jsonl     free-form metrics (SB3's logger, agent internals)
      run.json          written on close: counts, W&B mode, run path, any W&B error
      wandb/            the W&B run (``offline-run-*`` in offline mode; ``wandb sync`` uploads it)

The x-axis of every W&B chart is ``samples``: training samples seen by the inner networks over
the whole run (all episodes, all parallel environments), so it increases monotonically even
when a run holds many episodes. ``episode_samples`` is the position within the episode.

Typical use::

    with RunLogger("runs/demo", config, group="digits", job_type="evaluate") as log:
        record = log.run_episode(env, controller, seed=0, controller_name="fixed-64")

and with stable-baselines3 (:mod:`arbiter_env.agents.sb3_logging`)::

    with RunLogger(run_dir, config, job_type="train") as log:
        attach_sb3_logger(model, log)
        model.learn(10_000, callback=IntervalLoggingCallback(log))
"""

from __future__ import annotations

import contextlib
import datetime as _datetime
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from arbiter_env.controllers import Controller, EpisodeRecord, StepCallback, run_episode
from arbiter_env.lab.runlog.describe import (
    config_labels,
    describe_controller,
    describe_env,
    kind_tag,
)
from arbiter_env.lab.runlog.summary import EpisodeProgress, summarise_episode
from arbiter_env.lab.runlog.values import dumps_strict, flatten, is_number, plain_config, scalar
from arbiter_env.lab.runlog.writers import (
    CONFIG_FILE,
    DEFAULT_PROJECT,
    EPISODES_FILE,
    INTERVALS_FILE,
    METRICS_FILE,
    RUN_FILE,
    SCHEDULE_COLUMNS,
    JsonlWriter,
    WandbMode,
    WandbWriter,
    read_jsonl,
    resolve_wandb_mode,
)
from arbiter_env.lab.wandb_utils import BOOKKEEPING_KEYS, sectioned, unique_tags


def make_run_dir(job: str, root: str | os.PathLike[str] = "runs") -> Path:
    """Creates and returns a fresh ``ROOT/<YYYYmmdd-HHMMSS>-<job>`` folder (suffixed if taken)."""
    stamp = _datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{job}"
    candidate, suffix = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            candidate = base.with_name(f"{base.name}-{suffix}")
            suffix += 1


class RunLogger:
    """Writes a run's metrics to local JSONL files and, when it works, to Weights & Biases.

    Args:
        run_dir: The run folder; created if missing. Local logs, the config and the W&B run
            (``wandb/`` inside it) land here.
        config: The resolved configuration; saved as ``config.yaml`` and sent to
            ``wandb.config``. Dataclasses, paths, tuples and numpy values are converted.
        wandb_mode: ``"disabled"``, ``"offline"`` or ``"online"``; ``None`` resolves with
            :func:`resolve_wandb_mode` (offline unless an API key is configured).
        project: W&B project (default ``WANDB_PROJECT`` or ``"arbiter-env"``).
        group: W&B group: the runs of one experiment.
        job_type: W&B job type, e.g. ``"train"``, ``"evaluate"``, ``"episode"``.
        tags: W&B tags (default: task, controller and job). ``kind:KIND`` (the controller's
            kind: fixed, adaptive, rl, arbiter, ...) is always added.
        name: W&B run name (default: W&B's).
        entity: W&B entity (default: W&B's).
        max_table_rows: Most rows of the batch-size schedule sent to W&B as a table (the most
            recent are kept; ``intervals.jsonl`` always holds them all).

    Attributes:
        samples: Training samples seen so far over the whole run (the W&B x-axis).
        episodes: The episode summaries logged so far (as in ``episodes.jsonl``).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        config: Mapping[str, Any] | Any | None = None,
        *,
        wandb_mode: str | None = None,
        project: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        tags: Iterable[str] = (),
        name: str | None = None,
        entity: str | None = None,
        max_table_rows: int = 20_000,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config: dict[str, Any] = plain_config(config)
        self.wandb_mode: WandbMode = resolve_wandb_mode(wandb_mode)
        self._wandb = WandbWriter(self.run_dir, self.wandb_mode)
        self.samples = 0
        self.max_table_rows = max_table_rows
        self._closed = False
        self._next_episode = 0
        self._open_episodes: dict[int, EpisodeProgress] = {}
        self.episodes: list[dict[str, Any]] = []
        self._intervals_logged = 0
        self._schedule_rows: list[list[Any]] = []
        # EpisodeRecords seen by on_step callbacks: id -> (record, summary once closed, env).
        # The record itself is kept so that its id cannot be reused while tracked.
        self._records: dict[int, tuple[EpisodeRecord, dict[str, Any] | None, int]] = {}
        self._controller_names: dict[int, str] = {}
        self._summary: dict[str, Any] = {}
        self._run_file_summary: dict[str, Any] = {}
        if config is not None:
            (self.run_dir / CONFIG_FILE).write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._local = JsonlWriter(self.run_dir, (INTERVALS_FILE, EPISODES_FILE, METRICS_FILE))
        self._described = False
        task, controller = config_labels(self.config)
        # Every run gets a name, a group and tags, so runs can be told apart and gathered on a
        # dashboard: by default the run folder's name, the task, and task/controller/job.
        self.name = name or self.run_dir.resolve().name
        self.group = group or task or job_type or DEFAULT_PROJECT
        given: list[str | None] = list(unique_tags(tags)) or [task, controller, job_type]
        self.tags = unique_tags([*given, kind_tag(controller)])
        if self.wandb_mode != "disabled":
            self._wandb.start(
                self.config,
                project=project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                group=self.group,
                job_type=job_type,
                tags=self.tags,
                name=self.name,
                entity=entity,
            )

    # --- context manager ------------------------------------------------------------------------

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        self.close(exit_code=0 if exc_type is None else 1)

    # --- W&B state -------------------------------------------------------------------------------

    @property
    def wandb_run(self) -> Any:
        """The live W&B run, or ``None`` when disabled or after a W&B failure."""
        return self._wandb.run

    @property
    def wandb_error(self) -> str | None:
        """Description of the W&B failure that turned W&B off, if any."""
        return self._wandb.error

    @property
    def wandb_active(self) -> bool:
        """Whether metrics are still going to W&B."""
        return self._wandb.run is not None

    @property
    def wandb_run_dir(self) -> Path | None:
        """Folder of the W&B run (``RUN_DIR/wandb/offline-run-*`` offline), if one was started."""
        return self._wandb.run_dir

    # --- logging --------------------------------------------------------------------------------

    def log_interval(
        self,
        info: Mapping[str, Any],
        *,
        reward: float | None = None,
        env_index: int = 0,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Logs one scheduling interval from the environment's step ``info``.

        Args:
            info: The ``info`` of ``BatchSizeEnv.step`` (needs ``samples``). Numbers, booleans
                and strings are kept, mappings are flattened to ``key.subkey``, anything else is
                dropped; only numbers and booleans go to W&B.
            reward: The step's reward.
            env_index: Which of several parallel environments stepped; each has its own
                episode in progress.
            extra: More scalar fields for the record (e.g. the agent's own timestep count).

        Returns:
            The record written: the info's scalars, ``reward``, ``episode``, ``env_index``,
            ``episode_samples`` (the info's ``samples``) and ``samples`` (run total).
        """
        self._check_open()
        episode = self._open_episodes.get(env_index)
        if episode is None:
            episode = self._open_episodes[env_index] = EpisodeProgress(
                self._next_episode, env_index
            )
            self._next_episode += 1
        episode_samples = int(info["samples"])
        # Count the samples this interval added, so parallel environments and successive
        # episodes add up to one monotonic x-axis.
        self.samples += max(episode_samples - episode.samples, 0)
        episode.samples = episode_samples
        record: dict[str, Any] = {
            "samples": self.samples,
            "episode": episode.episode,
            "env_index": env_index,
        }
        for key, value in flatten(info).items():
            if key != "samples":
                record[key] = value
        record["episode_samples"] = episode_samples
        if reward is not None:
            record["reward"] = float(reward)
        for key, value in (extra or {}).items():
            item = scalar(value)
            if item is not None:
                record[key] = item
        episode.intervals.append(record)
        self._intervals_logged += 1
        self._local.write(INTERVALS_FILE, record)
        # Charts in sections (val/, grad_stats/, ...); bookkeeping stays in the local files.
        self._wandb.log(sectioned(record))
        return record

    def end_episode(
        self,
        env_index: int = 0,
        *,
        seed: int | None = None,
        controller: str | None = None,
        record: EpisodeRecord | None = None,
        complete: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Closes the episode in progress in environment ``env_index`` and logs its summary.

        Args:
            env_index: The environment whose episode ended.
            seed: The episode's seed, if known.
            controller: Name of the controller that ran it.
            record: The episode's :class:`EpisodeRecord`, if there is one; its intervals are
                logged first when they were not logged as they happened.
            complete: ``False`` for an episode cut short (logged on :meth:`close`).
            extra: More scalar fields for the summary.

        Returns:
            The summary written to ``episodes.jsonl``.
        """
        self._check_open()
        if record is not None and env_index not in self._open_episodes:
            for info, reward in zip(record.infos, record.rewards, strict=True):
                self.log_interval(info, reward=reward, env_index=env_index)
        episode = self._open_episodes.pop(env_index, None)
        if episode is None:
            raise ValueError(f"No episode in progress in environment {env_index} to end.")
        summary = summarise_episode(episode, seed=seed, controller=controller, record=record)
        summary["complete"] = complete
        summary["samples"] = self.samples
        for key, value in (extra or {}).items():
            summary[key] = scalar(value) if scalar(value) is not None else value
        for row in episode.intervals:  # the columns after episode and seed are the row's own
            values = [row.get(column) for column in SCHEDULE_COLUMNS[2:]]
            self._schedule_rows.append([str(episode.episode), seed, *values])
        self.episodes.append(summary)
        self._local.write(EPISODES_FILE, summary)
        self._wandb.log(
            {
                f"episode/{key}": value
                for key, value in summary.items()
                if key != "samples" and key not in BOOKKEEPING_KEYS and is_number(value)
            }
            | {"samples": self.samples}
        )
        return summary

    def end_open_episode(self, env_index: int = 0) -> dict[str, Any] | None:
        """Closes the episode in progress in ``env_index``, if any, as incomplete.

        Call it when something stops stepping an environment mid-episode (SB3's ``learn``
        stops at a timestep count, not at an episode's end), so that whatever logs next in that
        environment starts an episode of its own.
        """
        self._check_open()
        if env_index not in self._open_episodes:
            return None
        return self.end_episode(env_index, complete=False)

    def describe(self, env: Any = None, controller: Any = None) -> None:
        """Adds what the run ran to its config (``config.yaml`` and ``wandb.config``), once.

        ``resolved.env``: the environment's arguments and its task with every field resolved
        (:meth:`BatchSizeEnv.describe`); ``resolved.controller``: the controller's config
        dataclass or hyperparameters, when it has one. ``env`` may be a wrapped env or a SB3
        ``VecEnv`` (asked through ``env_method``).
        """
        if self._described:
            return
        resolved: dict[str, Any] = {}
        with contextlib.suppress(Exception):  # a description must never stop a run
            described_env = describe_env(env)
            if described_env:
                resolved["env"] = described_env
        with contextlib.suppress(Exception):
            described = describe_controller(controller)
            if described:
                resolved["controller"] = described
        if resolved:
            self._described = True
            self.update_config({"resolved": resolved})

    def log_episode(
        self,
        record: EpisodeRecord,
        *,
        controller: str | None = None,
        env_index: int = 0,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Logs the summary of a finished :class:`EpisodeRecord`.

        Its intervals are logged first unless an :meth:`on_step` callback already logged them;
        an episode that callback already closed (because the next one began) is not logged
        twice, so a loop of episodes followed by ``log_episode`` for each record is safe.
        """
        tracked = self._records.get(id(record))
        if tracked is not None and tracked[0] is record:
            summary = tracked[1]
            if summary is not None:  # already closed when the next episode started
                return summary
            env_index = tracked[2]
        summary = self.end_episode(
            env_index,
            seed=record.seed,
            controller=controller or self._controller_names.get(id(record)),
            record=record,
            complete=True,
            extra=extra,
        )
        self._records[id(record)] = (record, summary, env_index)
        return summary

    def log_metrics(self, metrics: Mapping[str, Any], *, step: int | None = None) -> dict[str, Any]:
        """Logs free-form scalar metrics (e.g. SB3's ``train/*``, an agent's internals).

        They are plotted against the current ``samples``; ``step`` (e.g. SB3's timestep count)
        is kept as ``step`` in the local record. Non-scalar values are dropped.
        """
        self._check_open()
        record: dict[str, Any] = {"samples": self.samples}
        if step is not None:
            record["step"] = int(step)
        for key, value in metrics.items():
            item = scalar(value)
            if item is not None and key != "samples":
                record[key] = item
        self._local.write(METRICS_FILE, record)
        self._wandb.log({k: v for k, v in record.items() if k != "step"})
        return record

    def on_step(
        self,
        env_index: int = 0,
        then: StepCallback | None = None,
        *,
        controller: str | None = None,
    ) -> StepCallback:
        """A callback for ``arbiter_env.controllers.run_episode(..., on_step=...)``.

        It logs each interval as it happens; ``then`` (e.g. a progress bar update) is called
        after. When a callback sees a new episode's record, it closes the previous episode, so
        one callback can serve a whole loop of episodes (e.g. inside an agent's own runner).
        Close the last one with :meth:`log_episode` (or use :meth:`run_episode`).

        Args:
            env_index: Which environment the episodes run in.
            then: Called with ``(record, info)`` after logging.
            controller: Name for the episode summaries.
        """
        last: list[EpisodeRecord] = []

        def callback(record: EpisodeRecord, info: dict[str, Any]) -> None:
            if last and last[0] is not record:
                self.log_episode(last[0], controller=controller, env_index=env_index)
            if not last or last[0] is not record:
                # Intervals someone else left open in this env (e.g. the episode that SB3
                # training was in when it stopped) belong to no episode of ours: close them
                # as incomplete rather than merge them into this one.
                self.end_open_episode(env_index)
                last[:] = [record]
                self._records[id(record)] = (record, None, env_index)
                if controller is not None:
                    self._controller_names[id(record)] = controller
            self.log_interval(info, reward=record.rewards[-1], env_index=env_index)
            if then is not None:
                then(record, info)

        return callback

    def run_episode(
        self,
        env: Any,
        controller: Controller,
        seed: int,
        *,
        controller_name: str | None = None,
        deterministic: bool = True,
        on_step: StepCallback | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> EpisodeRecord:
        """Runs one episode with ``arbiter_env.controllers.run_episode`` and logs all of it.

        ``extra`` adds fields to the episode summary (e.g. ``{"phase": "eval"}``). The first call
        adds the resolved environment and controller to the config (:meth:`describe`).
        """
        self.describe(env, controller)
        record = run_episode(
            env,
            controller,
            seed,
            deterministic=deterministic,
            on_step=self.on_step(then=on_step, controller=controller_name),
        )
        self.log_episode(record, controller=controller_name, extra=extra)
        return record

    def update_config(self, values: Mapping[str, Any]) -> None:
        """Adds to the config (``config.yaml`` and ``wandb.config``), e.g. values known later."""
        self._check_open()
        self.config.update(plain_config(values))
        (self.run_dir / CONFIG_FILE).write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._wandb.update_config(values)

    def set_summary(self, values: Mapping[str, Any], *, in_run_file: bool = True) -> None:
        """Sets run-level summary values (written to the W&B run summary and ``run.json``).

        Args:
            values: Names to values.
            in_run_file: Also write them into ``run.json``. A comparison's worker passes
                ``False``: its ``result.json`` is the run's one saved record, and a second copy
                could only drift from it.
        """
        self._check_open()
        plain = plain_config(values)
        self._summary.update(plain)
        if in_run_file:
            self._run_file_summary.update(plain)

    # --- closing --------------------------------------------------------------------------------

    def close(self, exit_code: int = 0) -> None:
        """Logs unfinished episodes and the schedule, writes ``run.json`` and ends the W&B run."""
        if self._closed:
            return
        for env_index in sorted(self._open_episodes):
            self.end_episode(env_index, complete=False)
        self._closed = True
        self._local.close()
        self._wandb.log_schedule(self._schedule_rows[-self.max_table_rows :])
        self._wandb.finish(self._summary, exit_code)
        run_info = {
            "episodes": len(self.episodes),
            "intervals": self._intervals_logged,
            "samples": self.samples,
            "exit_code": exit_code,
            "wandb_mode": self.wandb_mode,
            "wandb_run_dir": str(self.wandb_run_dir) if self.wandb_run_dir else None,
            "wandb_error": self.wandb_error,
            "summary": self._run_file_summary,
        }
        (self.run_dir / RUN_FILE).write_text(dumps_strict(run_info, indent=2))

    # --- internals ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"RunLogger for {self.run_dir} is closed.")

    def continue_from(self, timesteps: int) -> dict[str, int]:
        """Prepares this folder's logs for training resumed from a checkpoint at ``timesteps``.

        Rows logged after the checkpoint (an interrupted run went on past it) would be logged
        again by the resumed training, so they are dropped: interval rows whose ``timesteps`` is
        above it, SB3 metrics whose ``step`` is, and the summaries of the episodes they belong to.
        An episode in progress at the checkpoint keeps its rows up to it and gets a summary with
        ``complete: false`` (the resumed run starts fresh episodes). ``samples`` and episode
        numbers then continue from the kept rows, so the x-axis and the ids keep counting.

        Call it before logging anything. Returns how many interval rows were kept and dropped.
        """
        # Quietly: the interruption may have cut a line short.
        intervals, saved_episodes, saved_metrics = (
            read_jsonl(self.run_dir / name, warn=False)
            for name in (INTERVALS_FILE, EPISODES_FILE, METRICS_FILE)
        )
        kept = [r for r in intervals if int(r.get("timesteps", 0)) <= timesteps]
        cut = {r.get("episode") for r in intervals if int(r.get("timesteps", 0)) > timesteps}
        episodes = [e for e in saved_episodes if e.get("episode") not in cut]
        # Episodes whose summary was never written (killed) or covered dropped rows: summarise
        # what is kept, marked incomplete.
        summarised = {e.get("episode") for e in episodes}
        open_rows: dict[Any, list[dict[str, Any]]] = {}
        for row in kept:
            if row.get("episode") not in summarised:
                open_rows.setdefault(row.get("episode"), []).append(row)
        for episode_id, episode_rows in open_rows.items():
            partial = EpisodeProgress(int(episode_id), int(episode_rows[0].get("env_index", 0)))
            partial.intervals = episode_rows
            summary = summarise_episode(partial, seed=None, controller=None, record=None)
            summary["complete"] = False
            episodes.append(summary)
        episodes.sort(key=lambda e: int(e.get("episode", 0)))
        metrics = [m for m in saved_metrics if int(m.get("step", 0)) <= timesteps]

        for name, records in (
            (INTERVALS_FILE, kept),
            (EPISODES_FILE, episodes),
            (METRICS_FILE, metrics),
        ):
            self._local.replace(name, records)
        self.samples = max((int(r.get("samples", 0)) for r in kept), default=0)
        ids = [int(r["episode"]) for r in [*kept, *episodes] if r.get("episode") is not None]
        self._next_episode = max(ids, default=-1) + 1
        self.episodes = episodes
        self._intervals_logged = len(kept)
        return {"kept": len(kept), "dropped": len(intervals) - len(kept)}


__all__ = ["RunLogger", "make_run_dir"]
