"""The observation vector: a fixed-length, bounded, always-finite ``float32`` summary.

Each entry is documented in :data:`OBSERVATION_FIELDS` and in the ``BatchSizeEnv`` docstring. Raw
values are squashed into documented bounds; a value that was non-finite is replaced by its bound
and raises the ``clipped`` flag, so that a diverging run still yields a valid observation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from arbiter_env.training.stats import GradientStatistics

LOG_FLOOR = 1e-30


@dataclass(frozen=True)
class ObservationField:
    """One entry of the observation vector: its name, its ``Box`` bounds and what it means."""

    name: str
    low: float
    high: float
    meaning: str


OBSERVATION_FIELDS: tuple[ObservationField, ...] = (
    ObservationField("progress", 0.0, 1.0, "fraction of the sample budget consumed"),
    ObservationField(
        "log2_batch_size", 0.0, 20.0, "log2 of the batch size used in the last interval"
    ),
    ObservationField(
        "log10_lr", -10.0, 2.0, "log10 of the learning rate used in the last interval"
    ),
    ObservationField("train_loss", 0.0, 100.0, "mean training loss over the last interval"),
    ObservationField("val_loss", 0.0, 100.0, "validation loss after the interval"),
    ObservationField("val_accuracy", 0.0, 1.0, "validation accuracy after the interval"),
    ObservationField(
        "val_log_loss_change", -10.0, 10.0, "log(val loss) now minus before the interval"
    ),
    ObservationField(
        "log10_grad_sq_norm", -30.0, 30.0, "log10 |G|², unbiased squared gradient norm"
    ),
    ObservationField("log10_trace_cov", -30.0, 30.0, "log10 tr(Σ), per-sample gradient variance"),
    ObservationField("log10_noise_scale", -30.0, 30.0, "log10 B_simple = tr(Σ)/|G|²"),
    ObservationField("half_batch_cosine", -1.0, 1.0, "cosine between the two half-probe gradients"),
    ObservationField("log10_mean_grad_norm", -30.0, 30.0, "log10 ‖ḡ‖ of the probe's mean gradient"),
    ObservationField("log2_probe_size", 0.0, 20.0, "log2 of the probe batch size P"),
    ObservationField("clipped", 0.0, 1.0, "1 if any entry was non-finite or clipped, else 0"),
)
OBSERVATION_INDEX = {field.name: index for index, field in enumerate(OBSERVATION_FIELDS)}
OBSERVATION_LOW = np.array([f.low for f in OBSERVATION_FIELDS], dtype=np.float32)
OBSERVATION_HIGH = np.array([f.high for f in OBSERVATION_FIELDS], dtype=np.float32)


def build_observation(
    *,
    progress: float,
    batch_size: int,
    lr: float,
    train_loss: float,
    val_loss: float,
    val_accuracy: float,
    val_log_loss_change: float,
    stats: GradientStatistics,
) -> np.ndarray:
    """Assembles the observation vector from raw measurements."""
    raw = [
        progress,
        _log(batch_size, 2),
        _log(lr, 10),
        train_loss,
        val_loss,
        val_accuracy,
        val_log_loss_change,
        _log(stats.grad_sq_norm, 10),
        _log(stats.trace_covariance, 10),
        _log(stats.noise_scale, 10),
        stats.half_batch_cosine,
        _log(stats.mean_grad_norm, 10),
        _log(stats.probe_size, 2),
        0.0,
    ]
    # Fourteen numbers: plain Python, which spares numpy's per-call overhead.
    flagged = False
    for index, (value, field) in enumerate(zip(raw, OBSERVATION_FIELDS, strict=True)):
        if math.isnan(value):  # a NaN stands at the upper bound, like +inf
            value = field.high
        bounded = min(max(value, field.low), field.high)
        flagged = flagged or bounded != value or not math.isfinite(raw[index])
        raw[index] = bounded
    raw[-1] = float(flagged)
    return np.array(raw, dtype=np.float32)


def observation_value(observation: np.ndarray, name: str) -> float:
    """Reads one named entry, undoing the log scaling for names that start with ``log2_``/``log10_``."""
    value = float(observation[OBSERVATION_INDEX[name]])
    if name.startswith("log10_"):
        return 10.0**value
    if name.startswith("log2_"):
        return 2.0**value
    return value


def _log(value: float, base: int) -> float:
    if not math.isfinite(value):
        return value
    return math.log(max(value, LOG_FLOOR), base)
