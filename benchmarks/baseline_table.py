"""Table of the batch-size baselines on a task: final validation loss and test accuracy over seeds.

Every registered baseline (with its default config) and every fixed size of the ladder runs one
episode per seed; the HPO baselines first search with a small budget (``--hpo-trials`` trials on
``--search-seed``, which is not an evaluation seed), in a fresh study under ``--run-dir``.

    python benchmarks/baseline_table.py --task digits-mlp --seeds 0 1 2 --hpo-trials 6
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import numpy as np
import optuna

from arbiter_env.baselines import BASELINES, FixedBatchSize, StaticHPO
from arbiter_env.controllers import EpisodeRecord, evaluate, make_controller
from arbiter_env.envs.batch_size import BatchSizeEnv


def summarise(records: list[EpisodeRecord]) -> tuple[str, str, int]:
    losses = np.array([r.final_val_loss if not r.diverged else math.nan for r in records])
    accs = np.array([r.test_accuracy for r in records])
    diverged = sum(r.diverged for r in records)

    def fmt(values: np.ndarray, digits: int) -> str:
        if np.isnan(values).all():
            return "diverged"
        return f"{np.nanmean(values):.{digits}f} ± {np.nanstd(values):.{digits}f}"

    return fmt(losses, 4), fmt(accs, 4), diverged


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="digits-mlp")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--hpo-trials", type=int, default=6)
    parser.add_argument("--search-seed", type=int, default=1000)
    parser.add_argument(
        "--run-dir", default=None, help="folder for the HPO studies (default: temp)"
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is noise here

    env = BatchSizeEnv(args.task)
    run_dir = args.run_dir or tempfile.mkdtemp(prefix="baseline-table-")
    rows: list[tuple[str, str, str, int, str, float]] = []

    def run(label: str, controller, extra: str = "") -> None:
        started = time.perf_counter()
        records = evaluate(env, controller, args.seeds)
        loss, acc, diverged = summarise(records)
        sizes = "→".join(str(b) for b in _compress(records[0].batch_sizes))
        rows.append((label, loss, acc, diverged, extra or sizes, time.perf_counter() - started))
        print(f"  done {label} ({rows[-1][-1]:.0f} s)", flush=True)

    for batch_size in env.ladder:
        run(f"fixed-{int(batch_size)}", FixedBatchSize(env, batch_size=int(batch_size)))
    for name, cls in BASELINES.items():
        if name == "fixed":
            continue  # the ladder rows above
        kwargs = {}
        if issubclass(cls, StaticHPO):
            kwargs = {
                "n_trials": args.hpo_trials,
                "search_seeds": (args.search_seed,),
                "run_dir": run_dir,
                "n_startup_trials": max(1, args.hpo_trials // 2),
            }
        controller = make_controller(name, env, **kwargs)
        controller.learn()
        extra = f"best B={controller.best_batch_size}" if kwargs else ""
        run(name, controller, extra)

    print(
        f"\n{args.task}: epochs={env.task.epochs} intervals={env.task.num_intervals} "
        f"lr={env.task.optimizer.lr} seeds={args.seeds} hpo_trials={args.hpo_trials}\n"
    )
    header = f"| {'controller':<20} | {'final val loss':>17} | {'test accuracy':>17} | div | sizes (seed {args.seeds[0]}) |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for label, loss, acc, diverged, sizes, _ in rows:
        print(f"| {label:<20} | {loss:>17} | {acc:>17} | {diverged:>3} | {sizes} |")


def _compress(sizes: list[int]) -> list[str]:
    """128,128,256 -> ['128×2', '256']."""
    out: list[str] = []
    for size in sizes:
        if out and out[-1].split("×")[0] == str(size):
            count = int(out[-1].split("×")[1]) if "×" in out[-1] else 1
            out[-1] = f"{size}×{count + 1}"
        else:
            out.append(str(size))
    return out


if __name__ == "__main__":
    main()
