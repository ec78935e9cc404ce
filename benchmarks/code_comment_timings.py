"""The timings that the package's comments and docstrings point to (benchmarks/RESULTS.md).

    python benchmarks/code_comment_timings.py [--repeats 7] [--json FILE]

Each comparison times two ways of doing the same thing, alternating them, and prints the median
of the per-repeat ratios (so a machine whose speed drifts between minutes still compares like
with like):

* ``linear statistics``: the gradient statistics of a 64-example probe on the digits-mlp network,
  closed form (``method="linear"``) against ``torch.func`` per-sample gradients (``"vmap"``);
  ``arbiter_env/training/stats.py``.
* ``micro-batch step``: one training step of mnist1d-cnn at B=128 back-propagated as 2 and as 4
  micro-batches, against one backward pass (``DEFAULT_MICROBATCHES`` in
  ``arbiter_env/training/step_stats.py``).
* ``seeding``: ``torch.manual_seed`` against ``torch.default_generator.manual_seed``, which the
  trainer calls once per interval for networks with dropout (``arbiter_env/training/trainer.py``).
* ``observation``: the clipping loop of ``build_observation`` (fourteen numbers, plain Python)
  against the same with numpy (``arbiter_env/features.py``).
* ``threads``: a digits-mlp episode at B=32 with one torch thread against two (the CPU count of
  the development machine; ``--threads`` of the CLI and the agents' ``torch_threads``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from arbiter_env.env import BatchSizeEnv
from arbiter_env.features import OBSERVATION_FIELDS
from arbiter_env.tasks import make_task
from arbiter_env.training.data import split_task_data
from arbiter_env.training.stats import gradient_statistics
from arbiter_env.training.step_stats import microbatch_backward


def seconds(function: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls


def compare(
    slow: Callable[[], object], fast: Callable[[], object], calls: int, repeats: int
) -> tuple[float, float, float]:
    """Median seconds per call of each, and the median of the per-repeat ratios slow / fast."""
    slow()
    fast()  # warm-up
    slow_times, fast_times = [], []
    for _ in range(repeats):
        slow_times.append(seconds(slow, calls))
        fast_times.append(seconds(fast, calls))
    ratios = [s / f for s, f in zip(slow_times, fast_times, strict=True)]
    return statistics.median(slow_times), statistics.median(fast_times), statistics.median(ratios)


def task_model(name: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    task = make_task(name)
    data = split_task_data(task)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = task.model(data.input_shape, data.num_classes)
    return model, data.x_train, data.y_train


def linear_statistics(repeats: int) -> dict[str, float]:
    model, x, y = task_model("digits-mlp")
    x, y = x[:64], y[:64]
    vmap_s, linear_s, ratio = compare(
        lambda: gradient_statistics(model, x, y, method="vmap"),
        lambda: gradient_statistics(model, x, y, method="linear"),
        calls=20,
        repeats=repeats,
    )
    return {"vmap_ms": vmap_s * 1e3, "linear_ms": linear_s * 1e3, "vmap_over_linear": ratio}


def microbatch_step(repeats: int) -> dict[str, float]:
    model, x, y = task_model("mnist1d-cnn")
    x, y = x[:128], y[:128]
    params = [p for p in model.parameters() if p.requires_grad]

    def plain() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    def split(parts: int) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            microbatch_backward(model, params, x, y, parts)

        return run

    result: dict[str, float] = {}
    for parts in (2, 4):
        split_s, plain_s, ratio = compare(split(parts), plain, calls=10, repeats=repeats)
        result[f"split_{parts}_over_plain"] = ratio
        result[f"split_{parts}_ms"] = split_s * 1e3
        result[f"plain_ms@{parts}"] = plain_s * 1e3
    return result


def seeding(repeats: int) -> dict[str, float]:
    with torch.random.fork_rng(devices=[]):
        full_s, generator_s, ratio = compare(
            lambda: torch.manual_seed(1234),
            lambda: torch.default_generator.manual_seed(1234),
            calls=2000,
            repeats=repeats,
        )
    return {
        "manual_seed_us": full_s * 1e6,
        "generator_seed_us": generator_s * 1e6,
        "manual_seed_over_generator": ratio,
    }


def observation(repeats: int) -> dict[str, float]:
    """The clipping step of ``build_observation``: from a list of 14 floats to the array."""
    low = np.array([f.low for f in OBSERVATION_FIELDS], dtype=np.float64)
    high = np.array([f.high for f in OBSERVATION_FIELDS], dtype=np.float64)
    raw = [0.5, 5.0, -1.3, 0.4, 0.5, 0.9, 0.01, -0.5, 0.3, 0.8, 0.4, -0.2, 6.0, 0.0]

    def with_python() -> np.ndarray:  # the loop of build_observation
        values = list(raw)
        flagged = False
        for index, (value, field) in enumerate(zip(values, OBSERVATION_FIELDS, strict=True)):
            if math.isnan(value):
                value = field.high
            bounded = min(max(value, field.low), field.high)
            flagged = flagged or bounded != value or not math.isfinite(values[index])
            values[index] = bounded
        values[-1] = float(flagged)
        return np.array(values, dtype=np.float32)

    def with_numpy() -> np.ndarray:
        values = np.array(raw, dtype=np.float64)
        values = np.where(np.isnan(values), high, values)
        bounded = np.clip(values, low, high)
        flagged = bool(np.any(bounded != values) or not np.all(np.isfinite(values)))
        bounded[-1] = float(flagged)
        return bounded.astype(np.float32)

    numpy_s, python_s, ratio = compare(with_numpy, with_python, calls=5000, repeats=repeats)
    return {"numpy_us": numpy_s * 1e6, "python_us": python_s * 1e6, "numpy_over_python": ratio}


def threads(repeats: int) -> dict[str, float]:
    env = BatchSizeEnv("digits-mlp", action_encoding="discrete")
    action = env.encode(32)
    before = torch.get_num_threads()

    def episode(count: int) -> Callable[[], None]:
        def run() -> None:
            torch.set_num_threads(count)
            env.reset(seed=0)
            done = False
            while not done:
                _, _, terminated, truncated, _ = env.step(action)
                done = terminated or truncated

        return run

    try:
        two_s, one_s, ratio = compare(episode(2), episode(1), calls=1, repeats=repeats)
    finally:
        torch.set_num_threads(before)
    return {"two_threads_s": two_s, "one_thread_s": one_s, "two_over_one": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {
        "linear statistics": linear_statistics(args.repeats),
        "micro-batch step": microbatch_step(args.repeats),
        "seeding": seeding(args.repeats),
        "observation": observation(args.repeats),
        "threads": threads(args.repeats),
    }
    for name, values in results.items():
        shown = ", ".join(
            f"{key} {value:.3g}" for key, value in values.items() if math.isfinite(value)
        )
        print(f"{name}: {shown}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
