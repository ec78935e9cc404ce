"""Cost of the environment against plain PyTorch, measured side by side in one run.

    python benchmarks/perf.py                      # all tasks, all measurements, JSON to benchmarks/results/perf.json
    python benchmarks/perf.py --tasks digits-mlp --skip ppo arbiter --json /tmp/perf.json

Measurements (each a ratio of two timings taken in the same run, repeats interleaved, median):

* ``env_over_plain``: an episode of ``env.step`` calls at a fixed batch size, *excluding* the
  gradient statistics (reported separately below), divided by the same updates and the same
  measurements (validation loss and accuracy after each interval, test loss and accuracy at the
  end) written as a plain PyTorch loop on the same tensors (per-epoch ``randperm``, one index
  gather per batch). Target <= 1.05.
* ``env_with_stats_over_plain``: the same with the statistics included (no target; for the record).
  These two and the next row use the probe (``gradient_statistics="probe"``), as they always
  have; the default statistics, from the training batches, are in the by-size rows.
* ``env_total_over_plain@B``: the env with its statistics, everything included, over the plain
  loop, at each batch size B (8, 32, 128, 512 on digits-mlp; 32, 128 on mnist1d-cnn; ``--sizes``
  to choose), all sizes interleaved in each repeat, median of the per-repeat ratios. Target <=
  1.05 (issue 16). The statistics come from the training batches unless
  ``--statistics probe``, which also reports ``env_without_stats_over_plain@B``: the env with
  the probe's time taken out, the cost of everything but the statistics.
* ``breakdown[env:PART]@B`` and ``breakdown[plain:PART]@B`` (``--breakdown``): where the time
  goes, each part over the plain loop's total (see ``measure_breakdown``).
* ``stats_over_update@B`` (``--breakdown``): what the gradient statistics cost per interval, in
  updates of the plain loop at that size (``breakdown[env:statistics]`` per interval over the
  plain loop's time per update). Target <= 0.25.
* ``stats_ops_over_update_ops@B`` (``--breakdown``): the same in dispatched ATen operations
  instead of seconds, which the machine's load does not change (no target; the evidence for
  what the statistics can cost at small sizes).
* ``stats_over_training``: time of the per-interval gradient statistics divided by the rest of the
  step (the interval's training and validation). Target <= 0.10.
* ``arbiter_over_fixed``: an episode at a fixed size with Arbiter doing all its work (warm-up to
  that size, a meta-step after every update, a decision per interval; its decisions ignored)
  divided by the same episode without it. Target <= 1.5. ``arbiter_over_fixed@meta_period=4``
  is the same with a meta-step after every fourth update.
* ``sampler_over_dataloader@B``: our ``EpochSampler`` divided by a shuffling ``DataLoader`` over a
  ``TensorDataset`` of the same tensors, drawing one epoch. Target < 1 at every ladder size.
* ``ppo_steps_per_second@VEC xN``: SB3 PPO env steps per second with 1, 2 and 4 envs,
  ``DummyVecEnv`` and ``SubprocVecEnv`` (no target; measured on the CPU only).

Arbiter on the WRN-16-4 runs only on CUDA. Each process uses the threads torch chooses unless
``--threads`` is given.

The JSON has a stable format: ``{"schema": 1, "created": ..., "device": ..., "results": [
{"task", "measurement", "value", "target", "unit", "interval_samples"}]}``; compare two commits
by task and measurement name. ``interval_samples`` is the size of one scheduling interval, which
ratio (b) depends on.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, TensorDataset

from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.tasks import Task, from_tensors, make_task
from arbiter_env.tasks.models import wide_resnet
from arbiter_env.tasks.spec import OptimizerConfig
from arbiter_env.training.sampler import EpochSampler

TARGETS = {
    "env_over_plain": 1.05,
    "env_total_over_plain": 1.05,
    "stats_over_training": 0.10,
    "stats_over_update": 0.25,
    "arbiter_over_fixed": 1.5,
    "sampler_over_dataloader": 1.0,
}
# Batch sizes of the env-with-statistics rows, by task.
DEFAULT_SIZES = {"digits-mlp": [8, 32, 128, 512], "mnist1d-cnn": [32, 128]}
# Targets that must be beaten, not just reached ("ours is faster").
STRICT_TARGETS = {"sampler_over_dataloader"}


def meets_target(measurement: str, value: float) -> bool | None:
    """Whether ``value`` meets the target of ``measurement``; ``None`` when it has no target."""
    base = measurement.split("@")[0]
    target = TARGETS.get(base)
    if target is None:
        return None
    return value < target if base in STRICT_TARGETS else value <= target


def random_cifar(num_train: int, num_test: int = 64) -> object:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(num_train + num_test, 3, 32, 32, generator=generator)
    labels = torch.randint(10, (num_train + num_test,), generator=generator)
    return from_tensors(
        images[:num_train], labels[:num_train], images[num_train:], labels[num_train:], 10
    )


def benchmark_task(name: str, device: str) -> tuple[Task, int]:
    """The task measured under ``name`` and the fixed batch size used for it."""
    if name == "wrn-16-4-random":
        if device.startswith("cuda"):
            # The interval of the registry's cifar10-wrn-16-4 task: 40,000 training images (the
            # 50,000 minus the 20% validation part), 10 epochs in 20 intervals, so 20,000
            # samples (313 updates at B=64). Two intervals are measured.
            num_train, epochs, intervals, microbatches = 50_000, 1.0, 2, None
        else:
            # A WRN-16-4 update takes about a second on a CPU: one interval of 1,024 samples
            # (16 updates), with the micro-batch statistics (8 micro-batches) that a CPU run
            # should use; exact per-sample statistics cost about twice as much there.
            num_train, epochs, intervals, microbatches = 1_600, 0.8, 1, 8
        task = Task(
            name=name,
            data=partial(random_cifar, num_train),
            model=wide_resnet,
            optimizer=OptimizerConfig(lr=0.05, momentum=0.9, weight_decay=5e-4),
            epochs=epochs,
            num_intervals=intervals,
            batch_min=8,
            batch_max=512,
            batch_start=128,
            probe_microbatches=microbatches,
            device=device,
        )
        return task, 64
    return make_task(name, device=device), 32


def plain_episode(task: Task, env: BatchSizeEnv, batch_size: int, seed: int) -> float:
    """The same updates and validation evaluations, as a researcher would write them by hand."""
    data = env.trainer.data
    torch.manual_seed(seed)
    model = task.model(data.input_shape, data.num_classes).to(data.x_train.device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=task.optimizer.lr,
        momentum=task.optimizer.momentum,
        weight_decay=task.optimizer.weight_decay,
    )
    n = data.x_train.shape[0]
    _sync(data.x_train)
    start = time.perf_counter()
    order, cursor = torch.randperm(n, device=data.x_train.device), 0
    for first, last in zip(env.interval_boundaries, env.interval_boundaries[1:], strict=False):
        remaining = last - first
        model.train()
        while remaining > 0:
            size = min(batch_size, remaining, n - cursor)
            index = order[cursor : cursor + size]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(data.x_train[index]), data.y_train[index])
            loss.backward()
            optimizer.step()
            cursor += size
            remaining -= size
            if cursor == n:
                order, cursor = torch.randperm(n, device=data.x_train.device), 0
        validation_loss_and_accuracy(model, data.x_val, data.y_val)
    validation_loss_and_accuracy(model, data.x_test, data.y_test)  # the env reports test too
    return time.perf_counter() - start


def validation_loss_and_accuracy(
    model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor
) -> tuple[float, float]:
    """What the env's observation and ``info`` report after each interval, written plainly."""
    model.eval()
    with torch.no_grad():
        logits = model(inputs)
        loss = F.cross_entropy(logits, targets)
        accuracy = (logits.argmax(1) == targets).float().mean()
        return tuple(torch.stack([loss, accuracy]).tolist())


def env_episode(
    env: BatchSizeEnv,
    batch_size: int,
    seed: int,
    after_reset: Callable[[], object] | None = None,
) -> tuple[float, float]:
    """Wall time of the episode's steps and the part of it spent on gradient statistics.

    ``after_reset`` is called between the (untimed) reset and the first step.
    """
    trainer = env.trainer
    measure = trainer.gradient_statistics
    spent = [0.0]

    def timed_statistics():
        started = time.perf_counter()
        result = measure()
        spent[0] += time.perf_counter() - started
        return result

    env.reset(seed=seed)
    if after_reset is not None:
        after_reset()
    trainer.gradient_statistics = timed_statistics
    action, terminated = env.encode(batch_size), False
    _sync(trainer.data.x_train)
    start = time.perf_counter()
    try:
        while not terminated:
            _, _, terminated, _, _ = env.step(action)
    finally:
        del trainer.gradient_statistics
    return time.perf_counter() - start, spent[0]


def measure_env(task: Task, batch_size: int, repeats: int) -> dict[str, float]:
    # With the probe, whose cost these three rows have always recorded: the statistics from the
    # training batches are measured by size (measure_env_sizes).
    env = BatchSizeEnv(task, record_wall_time=False, gradient_statistics="probe")
    env_times, stats_times, plain_times = [], [], []
    for repeat in range(repeats + 1):  # the first round warms caches and is discarded
        total, stats = env_episode(env, batch_size, seed=repeat)
        plain = plain_episode(task, env, batch_size, seed=repeat)
        if repeat:
            env_times.append(total)
            stats_times.append(stats)
            plain_times.append(plain)
    env_s, stats_s, plain_s = (statistics.median(t) for t in (env_times, stats_times, plain_times))
    return {
        "env_over_plain": (env_s - stats_s) / plain_s,
        "env_with_stats_over_plain": env_s / plain_s,
        "stats_over_training": stats_s / (env_s - stats_s),
    }


def measure_env_sizes(
    task: Task, batch_sizes: list[int], repeats: int, statistics_source: str
) -> dict[str, float]:
    """``env_total_over_plain@B`` at each size: the env with its statistics (from the
    training batches unless ``statistics_source="probe"``) over the plain loop. Sizes are
    interleaved inside every repeat, so slow phases of a shared machine hit all of them."""
    env = BatchSizeEnv(task, record_wall_time=False, gradient_statistics=statistics_source)
    times: dict[int, tuple[list[float], list[float]]] = {b: ([], []) for b in batch_sizes}
    without: dict[int, list[float]] = {b: [] for b in batch_sizes}
    for repeat in range(repeats + 1):  # the first round warms caches and is discarded
        for batch_size in batch_sizes:
            total, probe = env_episode(env, batch_size, seed=repeat)
            plain = plain_episode(task, env, batch_size, seed=repeat)
            if repeat:
                times[batch_size][0].append(total)
                times[batch_size][1].append(plain)
                without[batch_size].append((total - probe) / plain)
    # The median of the per-repeat ratios: each pair ran back to back, so a slow phase of the
    # machine cancels within the pair.
    suffix = "" if statistics_source == "training" else f"[{statistics_source}]"
    rows = {
        f"env_total_over_plain{suffix}@{b}": statistics.median(
            e / p for e, p in zip(*times[b], strict=True)
        )
        for b in batch_sizes
    }
    if statistics_source == "probe":
        # The env's own cost beside the plain loop: the probe's time taken out.
        rows |= {
            f"env_without_stats_over_plain@{b}": statistics.median(without[b]) for b in batch_sizes
        }
    return rows


class OperationCounter(TorchDispatchMode):
    """Counts the ATen operations dispatched inside it, the backward pass's included.

    On small networks each operation costs about the same fixed overhead, so counts compare the
    parts of a step the way timings do, without the noise of a shared machine.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _timed(
    owner: object,
    name: str,
    spent: dict[str, float],
    label: str,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[None]:
    """Adds what ``clock`` advances during every call of ``owner.name`` to ``spent[label]`` inside
    the context, and counts the calls in ``spent[label + "#"]``."""
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        started = clock()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + clock() - started
            spent[label + "#"] = spent.get(label + "#", 0) + 1

    setattr(owner, name, timed)
    try:
        yield
    finally:
        setattr(owner, name, original)


def measure_breakdown(task: Task, batch_sizes: list[int], repeats: int) -> dict[str, float]:
    """Where the env's time goes beside the plain loop's, as fractions of the plain loop.

    ``breakdown[env:PART]@B``: the interval's training steps (``steps``, recorded steps
    included), the statistics' reductions (``statistics``), the mean loss and divergence check
    (``interval_end``), validation and test passes (``validation``) and everything else of
    ``env.step`` (``env_rest``: action, observation, reward, ``info``). ``breakdown[plain:steps]``
    and ``breakdown[plain:validation]`` split the plain loop the same way. Each part is the median
    over repeats of its time over the plain loop's; the wrappers that time them add a few µs a
    call, so the parts sum to a little more than ``env_total_over_plain``.

    ``statistics`` also holds what recorded training steps cost beyond ordinary ones (the
    micro-batch path back-propagates them in pieces): their time less as many of the interval's
    other steps, at those steps' mean. ``stats_over_update@B`` is the statistics per interval
    over the plain loop's time per update.

    ``stats_ops_over_update_ops@B`` is the same ratio in dispatched ATen operations
    (:class:`OperationCounter`, one more episode per size): a count the machine's load does not
    change.
    """
    from arbiter_env.training.stats import LinearStepRecorder
    from arbiter_env.training.trainer import InnerTrainer

    env = BatchSizeEnv(task, record_wall_time=False)
    bounds = env.interval_boundaries
    intervals = len(bounds) - 1
    parts: dict[str, list[float]] = {}
    timed_parts = (
        (InnerTrainer, "_run_steps", "steps"),
        (InnerTrainer, "evaluate", "validation"),
        (InnerTrainer, "_finish_interval", "interval_end"),
        (InnerTrainer, "train", "train"),
        (InnerTrainer, "_recorded_step", "recorded_steps"),
        (LinearStepRecorder, "sums", "statistics_reduce"),
        (LinearStepRecorder, "statistics", "statistics_host"),
        (sys.modules[__name__], "validation_loss_and_accuracy", "plain_validation"),
    )

    def updates_at(batch_size: int) -> int:
        return sum(-(-(b - a) // batch_size) for a, b in itertools.pairwise(bounds))

    def recording_and_statistics(spent: dict[str, float], batch_size: int) -> tuple[float, float]:
        """What recorded steps cost beyond ordinary ones, and the statistics in all."""
        recorded, recorded_count = spent.get("recorded_steps", 0.0), spent.get("recorded_steps#", 0)
        other_step = (spent.get("steps", 0.0) - recorded) / max(
            updates_at(batch_size) - recorded_count, 1
        )
        recording = max(recorded - recorded_count * other_step, 0.0)
        reductions = spent.get("statistics_reduce", 0.0) + spent.get("statistics_host", 0.0)
        return recording, reductions + recording

    operation_rows: dict[str, float] = {}
    for batch_size in batch_sizes:
        counter = OperationCounter()
        ops: dict[str, float] = {}
        with contextlib.ExitStack() as stack:
            for owner, name, label in timed_parts:
                stack.enter_context(
                    _timed(owner, name, ops, label, clock=partial(getattr, counter, "count"))
                )
            with counter:
                env_episode(env, batch_size, 0, after_reset=ops.clear)
                plain_start = counter.count
                plain_episode(task, env, batch_size, seed=0)
                plain_ops = counter.count - plain_start
        per_update_ops = (plain_ops - ops["plain_validation"]) / updates_at(batch_size)
        statistics_ops = recording_and_statistics(ops, batch_size)[1]
        operation_rows[f"stats_ops_over_update_ops@{batch_size}"] = (
            statistics_ops / intervals / per_update_ops
        )

    for repeat in range(repeats + 1):
        for batch_size in batch_sizes:
            spent: dict[str, float] = {}
            with contextlib.ExitStack() as stack:
                for owner, name, label in timed_parts:
                    stack.enter_context(_timed(owner, name, spent, label))
                # The parts of the reset (a validation pass, a probe) are not in the episode's time.
                total, probe = env_episode(env, batch_size, repeat, after_reset=spent.clear)
                plain = plain_episode(task, env, batch_size, seed=repeat)
            if not repeat:
                continue  # warm-up

            def get(label: str, spent: dict[str, float] = spent) -> float:
                return spent.get(label, 0.0)

            # train = steps + statistics_reduce + interval_end (holding statistics_host) + rest
            updates = updates_at(batch_size)
            recording_s, statistics_s = recording_and_statistics(spent, batch_size)
            statistics_s += probe
            shares = {
                "env:steps": get("steps") - recording_s,
                "env:statistics": statistics_s,
                "env:interval_end": get("interval_end") - get("statistics_host"),
                "env:train_rest": get("train")
                - get("steps")
                - get("interval_end")
                - get("statistics_reduce"),
                "env:validation": get("validation"),
                "env:env_rest": total - get("train") - get("validation") - probe,
                "plain:steps": plain - get("plain_validation"),
                "plain:validation": get("plain_validation"),
            }
            for part, seconds in shares.items():
                parts.setdefault(f"breakdown[{part}]@{batch_size}", []).append(seconds / plain)
            per_update = shares["plain:steps"] / updates
            parts.setdefault(f"stats_over_update@{batch_size}", []).append(
                statistics_s / intervals / per_update
            )
    return {name: statistics.median(values) for name, values in parts.items()} | operation_rows


def measure_sampler(task: Task, repeats: int) -> dict[str, float]:
    env = BatchSizeEnv(task, record_wall_time=False)
    x, y = env.trainer.data.x_train, env.trainer.data.y_train
    ratios = {}
    for batch_size in env.ladder:
        ours, loader = [], []
        for _ in range(repeats):
            sampler = EpochSampler(x, y, torch.Generator().manual_seed(0))
            start = time.perf_counter()
            drawn = 0
            while drawn < x.shape[0]:
                batch, _ = sampler.next_batch(int(min(batch_size, x.shape[0] - drawn)))
                drawn += batch.shape[0]
            ours.append(time.perf_counter() - start)
            data_loader = DataLoader(
                TensorDataset(x, y),
                batch_size=int(batch_size),
                shuffle=True,
                generator=torch.Generator().manual_seed(0),
            )
            start = time.perf_counter()
            for _ in data_loader:
                pass
            loader.append(time.perf_counter() - start)
        ratios[f"sampler_over_dataloader@{batch_size}"] = statistics.median(
            ours
        ) / statistics.median(loader)
    return ratios


def measure_arbiter(task: Task, batch_size: int, repeats: int) -> dict[str, float]:
    """Arbiter against the same fixed-size episode without it, at the paper's meta-step after
    every update (the default) and after every fourth."""
    from arbiter_overhead import measure as arbiter_overhead  # benchmarks/arbiter_overhead.py

    from arbiter_env.agents.arbiter import ArbiterConfig

    # Arbiter warms up to the size training starts with, as in a real episode; otherwise φ would
    # sit at the task's starting size and every meta-objective would use that many examples
    # while training runs at batch_size.
    task = task.replace(batch_start=batch_size)
    env = BatchSizeEnv(task, action_encoding="continuous", record_wall_time=False)
    ratios = {}
    for period, name in ((1, "arbiter_over_fixed"), (4, "arbiter_over_fixed@meta_period=4")):
        config = ArbiterConfig(meta_period=period)
        result = arbiter_overhead(
            env, config, batch_size, repeats, seed=0, own_schedule=False, profile=False
        )
        pairs = [a / b for a, b in zip(result["with"], result["without"], strict=True)]
        ratios[name] = statistics.median(pairs)
    return ratios


def measure_ppo(task_name: str, steps: int) -> dict[str, float]:
    from ppo_throughput import measure as ppo_rate  # benchmarks/ppo_throughput.py

    return {
        f"ppo_steps_per_second@{vec_env}x{n_envs}": ppo_rate(task_name, vec_env, n_envs, steps, 1)
        for vec_env in ("dummy", "subproc")
        for n_envs in (1, 2, 4)
    }


SCHEMA = 1
ROW_KEYS = ("task", "measurement", "value", "target", "unit", "interval_samples")
"""The keys of each result, in the stable JSON format (schema 1)."""


def make_report(rows: list[dict], device: str) -> dict:
    """The JSON report: schema, creation time, device, host, and one row per measurement."""
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device,
        "host": {
            "cpus": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "results": [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows
        ],
    }


def _sync(tensor: torch.Tensor) -> None:
    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tasks", nargs="+", default=["digits-mlp", "mnist1d-cnn", "wrn-16-4-random"]
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["env", "sizes", "sampler", "arbiter", "ppo"],
    )
    parser.add_argument("--ppo-steps", type=int, default=256)
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=None,
        help="batch sizes of the env-with-statistics rows (default: 8 32 128 512 on digits-mlp, "
        "32 128 on mnist1d-cnn, none on the WRN)",
    )
    parser.add_argument(
        "--statistics",
        choices=["training", "probe"],
        default="training",
        help="where the env's gradient statistics come from in the by-size rows",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the parts of the env and of the plain loop at each size (breakdown[...])",
    )
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "perf.json"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return parser


def _measure_task(name: str, args: argparse.Namespace) -> list[dict]:
    """The rows of one task, as ``args`` asks."""
    task, batch_size = benchmark_task(name, args.device)
    measured: dict[str, float] = {}
    interval_samples = BatchSizeEnv(task).interval_boundaries[1]
    if "env" not in args.skip:
        measured |= measure_env(task, batch_size, args.repeats)
    sizes = args.sizes if args.sizes is not None else DEFAULT_SIZES.get(name, [])
    if "sizes" not in args.skip and sizes:
        measured |= measure_env_sizes(task, sizes, args.repeats, args.statistics)
    if args.breakdown and sizes:
        measured |= measure_breakdown(task, sizes, args.repeats)
    if "sampler" not in args.skip and name != "wrn-16-4-random":
        measured |= measure_sampler(task, args.repeats)
    # Arbiter on a WRN-16-4 takes many minutes per episode on a CPU: measured on CUDA only.
    if "arbiter" not in args.skip and (name != "wrn-16-4-random" or args.device != "cpu"):
        measured |= measure_arbiter(task, batch_size, max(2, args.repeats - 1))
    if "ppo" not in args.skip and name == "digits-mlp" and args.device == "cpu":
        measured |= measure_ppo(name, args.ppo_steps)
    return [
        {
            "task": name,
            "measurement": measurement,
            "value": value,
            "target": TARGETS.get(measurement.split("@")[0]),
            "unit": "steps/s" if measurement.startswith("ppo") else "ratio",
            "interval_samples": interval_samples,
        }
        for measurement, value in measured.items()
    ]


def main(argv: list[str] | None = None) -> None:
    """Runs the measurements the command line asks for and writes the JSON report."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [row for name in args.tasks for row in _measure_task(name, args)]
    print(f"\n{'task':<18} {'measurement':<34} {'value':>10} {'target':>8}  ok")
    for row in rows:
        target, met = row["target"], meets_target(row["measurement"], row["value"])
        ok = "" if met is None else ("yes" if met else "NO")
        strict = row["measurement"].split("@")[0] in STRICT_TARGETS
        shown_target = "" if target is None else f"{'<' if strict else '<='}{target}"
        print(
            f"{row['task']:<18} {row['measurement']:<34} {row['value']:>10.3f} {shown_target:>8}  {ok}"
        )
    device = args.device if args.device == "cpu" else torch.cuda.get_device_name()
    report = make_report(rows, device)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
