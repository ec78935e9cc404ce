"""The summary of one episode: the one place its return, losses and mean batch size are computed.

:func:`record_metrics` summarises an :class:`EpisodeRecord` (a comparison's result, the command
line's tables); :func:`summarise_episode` the logged intervals of an episode (``episodes.jsonl``),
taking the record's values where it has one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from arbiter_env.controllers import EpisodeRecord


@dataclasses.dataclass
class EpisodeProgress:
    """Intervals of one episode in progress, for its summary and the schedule table."""

    episode: int
    env_index: int
    samples: int = 0
    intervals: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def mean_batch_size(batch_sizes: Sequence[int], samples: Sequence[int]) -> float | None:
    """The sample-weighted mean batch size of an episode (``None`` if it trained on nothing).

    Args:
        batch_sizes: Each interval's batch size.
        samples: Training samples seen in the episode after each interval (cumulative), so that
            interval i trained on ``samples[i] - samples[i - 1]`` of them.
    """
    if not samples:
        return None
    slices = [b - a for a, b in zip([0, *samples[:-1]], samples, strict=True)]
    total = sum(slices)
    if not total:
        return None
    return sum(s * b for s, b in zip(slices, batch_sizes, strict=False)) / total


def record_metrics(record: EpisodeRecord) -> dict[str, Any]:
    """The outcome of a recorded episode (NaN for a value it never reached)."""
    mean = mean_batch_size(record.batch_sizes, record.samples)
    return {
        "final_val_loss": record.final_val_loss,
        "final_val_accuracy": record.final_val_accuracy,
        "test_loss": record.test_loss,
        "test_accuracy": record.test_accuracy,
        "samples": record.samples[-1] if record.samples else 0,
        "updates": record.total_updates,
        "diverged": record.diverged,
        "episode_return": record.episode_return,
        "intervals": len(record.batch_sizes),
        "mean_batch_size": math.nan if mean is None else mean,
    }


def summarise_episode(
    episode: EpisodeProgress,
    *,
    seed: int | None,
    controller: str | None,
    record: EpisodeRecord | None,
) -> dict[str, Any]:
    """The summary written to ``episodes.jsonl`` for ``episode``.

    ``mean_batch_size`` weights each interval's batch size by the samples it trained on. Where
    ``record`` (the episode's :class:`EpisodeRecord`) has a value, it wins over the intervals.
    """
    rows = episode.intervals
    last = rows[-1] if rows else {}
    batch_sizes = [int(r["batch_size"]) for r in rows if r.get("batch_size") is not None]
    rewards = [r["reward"] for r in rows if r.get("reward") is not None]
    summary: dict[str, Any] = {
        "episode": episode.episode,
        "env_index": episode.env_index,
        "seed": seed,
        "controller": controller,
        "intervals": len(rows),
        "episode_samples": last.get("episode_samples", 0),
        "updates": last.get("updates"),
        "return": float(sum(rewards)) if rewards else None,
        "final_val_loss": last.get("val_loss"),
        "final_val_accuracy": last.get("val_accuracy"),
        "test_loss": last.get("test_loss"),
        "test_accuracy": last.get("test_accuracy"),
        "diverged": any(bool(r.get("diverged")) for r in rows),
        "wall_time": last.get("episode_wall_time"),
        "mean_batch_size": mean_batch_size(batch_sizes, [r["episode_samples"] for r in rows]),
        "min_batch_size": min(batch_sizes) if batch_sizes else None,
        "max_batch_size": max(batch_sizes) if batch_sizes else None,
        "batch_sizes": batch_sizes,
    }
    # Which task instance the episode ran (task families draw one per episode).
    for key in ("task", "family", "family_split", "family_instance"):
        if key in last:
            summary[key] = last[key]
    if record is not None:
        # The record is authoritative where it has the value (e.g. a test result).
        metrics = record_metrics(record)
        summary["return"] = metrics["episode_return"]
        summary.update({k: metrics[k] for k in ("test_loss", "test_accuracy", "diverged")})
        summary["wall_time"] = record.wall_time
    return summary
