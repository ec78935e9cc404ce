"""Grid of fixed batch sizes on a task: final validation loss and test accuracy, mean over seeds.

Used to choose the default task's settings so that the batch size matters in both directions
(the best fixed size is interior to the ladder).

    python benchmarks/fixed_batch_grid.py --task digits-mlp --lrs 0.05 0.1 0.2 --seeds 0 1 2
"""

import argparse
import math

import numpy as np

from arbiter_env.envs.batch_size import BatchSizeEnv


def run_fixed(env: BatchSizeEnv, batch_size: int, seed: int) -> dict:
    env.reset(seed=seed)
    action = env.encode(batch_size)
    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step(action)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="digits-mlp")
    parser.add_argument("--lrs", type=float, nargs="+", default=[None])
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    for lr in args.lrs:
        overrides = {} if lr is None else {"optimizer": {"lr": lr}}
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        env = BatchSizeEnv(args.task, task_kwargs=overrides)
        print(
            f"\n{args.task}  lr={env.task.optimizer.lr}  epochs={env.task.epochs}  seeds={args.seeds}"
        )
        print(f"{'batch':>6} {'val loss':>10} {'test acc':>9} {'diverged':>9}")
        for batch_size in env.ladder:
            infos = [run_fixed(env, int(batch_size), seed) for seed in args.seeds]
            losses = [i["val_loss"] if not i["diverged"] else math.inf for i in infos]
            accs = [i.get("test_accuracy", 0.0) for i in infos]
            print(
                f"{batch_size:>6} {np.mean(losses):>10.4f} {np.mean(accs):>9.4f} "
                f"{sum(i['diverged'] for i in infos):>9}"
            )


if __name__ == "__main__":
    main()
