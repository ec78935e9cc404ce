"""What a comparison shows while it runs: a bar in a terminal, one line per run anywhere else.

* In a terminal (stdout is a TTY): a rich progress bar over runs with the elapsed time and an
  ETA, naming the runs in progress; a training run shows its own unit, the timesteps done of
  those asked for (read from the training log as it grows), so a long training does not look
  like a stalled bar.
* Anywhere else (piped through ``tee``, under ``nohup``, in CI): the run folder at the start,
  then one flushed line per finished run: ``[done/total] label task seed: key metric (run
  time); elapsed, ETA``.

The ETA is the elapsed time per finished run times the runs left, or, when longer, what a
training in progress still needs at its pace so far (its timesteps done against those asked
for): a rough guide, since runs differ in length.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from arbiter_env.lab.experiments.plan import RunSpec
from arbiter_env.lab.runlog import INTERVALS_FILE


def describe_run(spec: RunSpec) -> str:
    """``label task seed S`` or ``label task training``."""
    what = "training" if spec.kind == "train" else f"seed {spec.seed}"
    return f"{spec.label} {spec.task} {what}"


def key_metric(result: dict[str, Any]) -> str:
    """A finished run's headline: test accuracy and validation loss, divergence, or the error."""
    if result.get("status") != "ok":
        return f"FAILED: {result.get('error')}"
    if result.get("kind") == "train":
        steps = result.get("train_timesteps") or result.get("timesteps")
        return f"trained{f' {int(steps):,} timesteps' if steps else ''}"
    if result.get("diverged"):
        return "diverged"
    parts = []
    for key, name, fmt in (
        ("test_accuracy", "test acc", "{:.4f}"),
        ("final_val_loss", "val loss", "{:.4f}"),
    ):
        value = result.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            parts.append(f"{name} {fmt.format(value)}")
    return ", ".join(parts) or "finished"


def clock(seconds: float) -> str:
    """``M:SS`` or ``H:MM:SS``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def training_timesteps(spec: RunSpec) -> int | None:
    """Timesteps a training run has logged so far (the last interval row's), if any."""
    path = Path(spec.folder) / INTERVALS_FILE
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            value = json.loads(line).get("timesteps")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, int):
            return value
    return None


class Progress:
    """Progress of a comparison's runs (see the module docstring).

    Args:
        total: Runs to execute now.
        skipped: Runs finished before (resume).
        run_dir: The run folder, printed at the start.
        enabled: ``False`` prints nothing.
        slots: Runs that execute at once; runs start in submission order, so the first
            ``slots`` unfinished ones are those running.
        stream: Where to write (default stdout); a TTY gets the bar.
    """

    def __init__(
        self,
        total: int,
        skipped: int,
        *,
        run_dir: Path | None = None,
        enabled: bool = True,
        slots: int = 1,
        stream: TextIO | None = None,
    ):
        self.total = total
        self.slots = max(1, slots)
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.started = time.monotonic()
        self.done = 0
        self.bar: Any = None
        self._running: list[RunSpec] = []
        self._run_started: dict[str, float] = {}
        if not enabled:
            return
        resumed = f" ({skipped} finished before, skipped)" if skipped else ""
        self._print(f"compare: {total} run(s) to execute{resumed}; run folder: {run_dir}")
        if total and _is_terminal(self.stream):
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]compare"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=Console(file=self.stream),
            refresh_per_second=2,
        )
        self.task = self.bar.add_task("starting workers", total=self.total)
        self.bar.start()

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)

    def eta(self) -> float | None:
        """Seconds left (see the module docstring); ``None`` before the first run finished."""
        if not self.done:
            return None
        now = time.monotonic()
        estimates = [(now - self.started) / self.done * (self.total - self.done)]
        for spec, done in self._trainings():
            if done:
                ran = now - self._run_started.get(describe_run(spec), now)
                estimates.append(ran * (spec.train_timesteps / done - 1))
        return max(estimates)

    def _trainings(self) -> list[tuple[RunSpec, int]]:
        """The training runs in progress and their timesteps done so far."""
        return [
            (spec, training_timesteps(spec) or 0)
            for spec in self._running
            if spec.kind == "train" and spec.train_timesteps
        ]

    def running(self, specs: list[RunSpec]) -> None:
        """Names the runs in progress: the first ``slots`` of those submitted and unfinished."""
        self._running = specs[: self.slots]
        now = time.monotonic()
        for spec in self._running:
            self._run_started.setdefault(describe_run(spec), now)
        self.refresh(queued=len(specs) - len(self._running))

    def refresh(self, queued: int | None = None) -> None:
        """Updates the bar's description (training runs: timesteps done of those asked for)."""
        if self.bar is None:
            return
        trainings = dict((describe_run(spec), done) for spec, done in self._trainings())
        names = []
        for spec in self._running:
            name = describe_run(spec)
            if name in trainings:
                name += f" ({trainings[name]:,}/{spec.train_timesteps:,} timesteps)"
            names.append(name)
        text = "running: " + ", ".join(names) if names else ""
        if queued:
            text += f" (+{queued} queued)"
        self.bar.update(self.task, description=text)

    def advance(self, spec: RunSpec, result: dict[str, Any]) -> None:
        """One run finished: a line with its headline (always, failures included)."""
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        seconds = result.get("run_seconds")
        took = f" in {seconds:.1f} s" if isinstance(seconds, int | float) else ""
        eta = self.eta()
        left = f", ETA {clock(eta)}" if eta is not None and self.done < self.total else ""
        trainings = "".join(
            f"; {describe_run(other)} at {done:,}/{other.train_timesteps:,} timesteps"
            for other, done in self._trainings()
            if other is not spec
        )
        self._print(
            f"[{self.done}/{self.total}] {describe_run(spec)}: {key_metric(result)}{took}; "
            f"elapsed {clock(elapsed)}{left}{trainings}"
        )
        if self.bar is not None:
            self.bar.update(self.task, advance=1)

    def close(self) -> None:
        """Stops the bar (lines need no closing)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
