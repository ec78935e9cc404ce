"""Where a run's records go: local JSONL files first, then Weights & Biases, each guarded.

The :class:`JsonlWriter` appends one flushed line per record, so the local logs are complete
whatever happens later; :func:`read_jsonl` reads them back. W&B is optional and fragile (keys,
networks, background processes), so the :class:`WandbWriter` wraps every W&B call: the first
failure warns once and turns W&B off for the rest of the run, and nothing written locally is lost.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO, get_args

from arbiter_env.files import atomic_write_text
from arbiter_env.lab.runlog.values import dumps_strict, is_number
from arbiter_env.lab.wandb_utils import WandbMode, prepare_wandb, wandb_api_key_configured

WANDB_MODES: tuple[WandbMode, ...] = get_args(WandbMode)

DEFAULT_PROJECT = "arbiter-env"
INTERVALS_FILE = "intervals.jsonl"
EPISODES_FILE = "episodes.jsonl"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
SCHEDULE_TABLE_KEY = "batch_size_schedule"
SCHEDULE_COLUMNS = (
    "episode",
    "seed",
    "interval",
    "episode_samples",
    "samples",
    "batch_size",
    "lr",
)

# Every accepted spelling of a mode: ours, and wandb's own aliases (from the WANDB_MODE variable).
_MODE_NAMES: dict[str, WandbMode] = {
    **{mode: mode for mode in WANDB_MODES},
    "dryrun": "offline",
    "run": "online",
}

WANDB_INIT_TIMEOUT_ENV = "ARBITER_WANDB_INIT_TIMEOUT"
DEFAULT_WANDB_INIT_TIMEOUT = 10.0


def resolve_wandb_mode(mode: str | None = None) -> WandbMode:
    """The W&B mode to use: ``mode`` if given, else ``WANDB_MODE``, else a safe default.

    The default is ``"online"`` only when an API key is configured
    (:func:`wandb_api_key_configured`) and ``"offline"`` otherwise, so nothing reaches the
    network unless the user has set W&B up. ``WANDB_DISABLED=true`` means ``"disabled"``.

    Raises:
        ValueError: ``mode`` (or ``WANDB_MODE``) is not a known mode.
    """
    source = "wandb mode"
    if mode is None:
        if os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
            return "disabled"
        mode, source = os.environ.get("WANDB_MODE") or None, "WANDB_MODE"
    if mode is None:
        return "online" if wandb_api_key_configured() else "offline"
    resolved = _MODE_NAMES.get(mode)
    if resolved is None:
        raise ValueError(f"Unknown {source} {mode!r}; use one of {', '.join(WANDB_MODES)}.")
    return resolved


def wandb_init_timeout() -> float:
    """Seconds ``wandb.init`` may take before W&B is given up for the run (local logs go on).

    ``$ARBITER_WANDB_INIT_TIMEOUT`` if set, else 10 s (wandb's own default is 90 s, paid by every
    run of a comparison when the server is unreachable).
    """
    raw = os.environ.get(WANDB_INIT_TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_WANDB_INIT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"${WANDB_INIT_TIMEOUT_ENV}={raw!r} must be a positive number of seconds.")
    return value


class JsonlWriter:
    """Line-buffered JSONL files in one folder: each record reaches its file as it is written.

    Args:
        folder: Where the files live (must exist).
        names: The files' names; records are written to one of them by name.
    """

    def __init__(self, folder: Path, names: Iterable[str]):
        self.folder = folder
        self._files: dict[str, TextIO] = {name: self._open(name) for name in names}

    def write(self, name: str, record: Mapping[str, Any]) -> None:
        """Appends ``record`` (NaN and inf as ``null``) to file ``name`` and flushes it."""
        handle = self._files[name]
        handle.write(dumps_strict(record) + "\n")
        handle.flush()

    def replace(self, name: str, records: Iterable[Mapping[str, Any]]) -> None:
        """Rewrites file ``name`` atomically with ``records``; later writes append to it."""
        self._files[name].close()
        atomic_write_text(
            self.folder / name,
            "".join(dumps_strict(r) + "\n" for r in records),
        )
        self._files[name] = self._open(name)

    def close(self) -> None:
        """Closes every file."""
        for handle in self._files.values():
            handle.close()

    def _open(self, name: str) -> TextIO:
        return (self.folder / name).open("a", buffering=1, encoding="utf-8")


def read_jsonl(path: Path, *, warn: bool = True) -> list[dict[str, Any]]:
    """The JSON-object lines of ``path`` (``[]`` if missing); damaged lines skipped (``warn``: named)."""
    if not path.is_file():
        return []
    rows, bad = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(number)
    if bad and warn:
        warnings.warn(
            f"{path}: skipped {len(bad)} damaged line(s) ({', '.join(map(str, bad[:5]))}"
            f"{', ...' if len(bad) > 5 else ''}); rerun the run to repair it.",
            stacklevel=2,
        )
    return rows


class WandbWriter:
    """A W&B run in which no failure escapes: it warns once, then W&B is off for the run.

    Args:
        run_dir: The run folder (the W&B run goes to ``run_dir/wandb``; named in warnings).
        mode: ``"offline"`` or ``"online"`` (``"disabled"`` starts nothing).

    Attributes:
        run: The live W&B run, or ``None`` when disabled, not started or after a failure.
        error: Description of the W&B failure that turned W&B off, if any.
        run_dir: Folder of the W&B run (``RUN_DIR/wandb/offline-run-*`` offline), once started.
    """

    def __init__(self, run_dir: Path, mode: WandbMode):
        self.log_dir = run_dir
        self.mode = mode
        self.run: Any = None
        self.error: str | None = None
        self.run_dir: Path | None = None

    def start(self, config: Mapping[str, Any], **init_kwargs: Any) -> None:
        """Starts the W&B run (``wandb.init``) with ``config``; a failure turns W&B off."""
        if self.mode == "disabled":
            return
        try:
            import wandb

            # Process-wide, before the run: see arbiter_env.lab.wandb_utils.prepare_wandb.
            prepare_wandb(self.mode)
            run = wandb.init(
                config=dict(config),
                dir=str(self.log_dir),
                mode=self.mode,
                # Our own run object, independent of any other active run in the process.
                reinit="create_new",
                # Console capture would record every progress-bar redraw, and the end-of-run
                # history dump would bury the caller's own summary; the local files and the
                # terminal already have both.
                # An unreachable server must cost seconds, not wandb's default 90 s per run.
                settings=wandb.Settings(
                    console="off", quiet=True, init_timeout=wandb_init_timeout()
                ),
                **init_kwargs,
            )
            run.define_metric("samples")
            run.define_metric("*", step_metric="samples")
        except Exception as error:  # any failure inside wandb must not stop training
            self._disable("init", error)
            return
        self.run = run
        run_dir = getattr(run, "dir", None)  # RUN_DIR/wandb/<run>/files
        self.run_dir = Path(run_dir).parent if run_dir else None

    def log(self, metrics: Mapping[str, Any]) -> None:
        """Logs the numbers and booleans of ``metrics`` (the rest is dropped)."""
        if self.run is None:
            return
        payload = {k: v for k, v in metrics.items() if is_number(v)}
        self._guard("log", lambda: self.run.log(payload))

    def update_config(self, values: Mapping[str, Any]) -> None:
        """Adds ``values`` to ``wandb.config``."""
        if self.run is not None:
            self._guard("config update", lambda: self.run.config.update(dict(values)))

    def log_schedule(self, rows: list[list[Any]]) -> None:
        """Puts the batch-size schedule (:data:`SCHEDULE_COLUMNS` rows) in the run's summary.

        A table in the summary, not the history: a logged table adds charts of its row and
        column counts. The schedule's chart is ``schedule/batch_size`` against ``samples``.
        """
        if self.run is not None and rows:
            self._guard("schedule table", lambda: self._log_schedule(rows))

    def finish(self, summary: Mapping[str, Any], exit_code: int) -> None:
        """Sets the run summary and ends the W&B run."""
        run = self.run
        if run is None:
            return

        def finish() -> None:
            for key, value in summary.items():
                run.summary[key] = value
            run.finish(exit_code=exit_code)

        self._guard("finish", finish)
        self.run = None

    def _log_schedule(self, rows: list[list[Any]]) -> None:
        import wandb

        self.run.summary[SCHEDULE_TABLE_KEY] = wandb.Table(
            columns=list(SCHEDULE_COLUMNS), data=rows
        )

    def _guard(self, stage: str, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as error:  # any failure inside wandb must not stop training
            self._disable(stage, error)

    def _disable(self, stage: str, error: Exception) -> None:
        self.error = f"W&B {stage} failed: {type(error).__name__}: {error}"
        warnings.warn(
            f"{self.error}. W&B logging is off for the rest of this run; the local logs "
            f"in {self.log_dir} are complete.",
            RuntimeWarning,
            stacklevel=4,
        )
        run, self.run = self.run, None
        if run is not None:
            # Stop wandb's background work; it may well fail again.
            with contextlib.suppress(Exception):
                run.finish(exit_code=1)
