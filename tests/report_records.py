"""Hand-made result records for the report's tests (no process, no training)."""

from __future__ import annotations

import math


def result(label, seed, accuracy, *, task="t1", controller=None, diverged=False, **extra):
    registered = controller or ("fixed" if label.startswith("fixed") else label)
    return {
        "task": task,
        "label": label,
        "controller": registered,
        "seed": seed,
        "status": "ok",
        "diverged": diverged,
        "test_accuracy": math.nan if diverged else accuracy,
        "final_val_loss": math.nan if diverged else 1.0 - accuracy,
        "mean_batch_size": extra.pop("mean_batch_size", 64.0),
        "samples": 1000,
        "updates": 10,
        "wall_time": 1.0,
        **extra,
    }


def experiment() -> list[dict]:
    return [
        result("fixed-8", 0, 0.90),
        result("fixed-8", 1, 0.0, diverged=True),
        result("fixed-8", 2, 0.92),
        result("fixed-64", 0, 0.80),
        result("fixed-64", 1, 0.82),
        result("fixed-64", 2, 0.84),
        result("arbiter", 0, 0.95, mean_batch_size=37.5),
        result("arbiter", 1, 0.85, mean_batch_size=40.5),
        {"task": "t1", "label": "broken", "controller": "broken", "seed": 0, "status": "failed"},
    ]


def ladder(task, losses, *, seeds=(0, 1), offset=0.0):
    """Fixed sizes with the given final validation losses (accuracy = offset + 1 - loss)."""
    return [
        result(f"fixed-{2**i}", seed, 0.0, task=task, final_val_loss=loss)
        | {"test_accuracy": offset + 1.0 - loss}
        for i, loss in enumerate(losses)
        for seed in seeds
    ]
