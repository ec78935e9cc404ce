"""How far validation losses rise above their initial value, per task and fixed batch size.

    python benchmarks/divergence_ratios.py digits-mlp mnist1d-mlp synthetic-teacher

For every batch size of the ladder and seeds 0 and 1, runs a fixed-size episode with the finite
divergence rule switched off and prints the initial validation loss ``L_0``, the largest ratio
``L_val / L_0`` over the episode and the final loss. This is the measurement behind the default
``DivergenceRule(loss_ratio=10)`` (see ``arbiter_env/envs/divergence.py``).
"""

from __future__ import annotations

import math
import sys

from arbiter_env.envs.batch_size import BatchSizeEnv


def main(tasks: list[str]) -> None:
    for task in tasks:
        env = BatchSizeEnv(task, record_wall_time=False, divergence={"loss_ratio": None})
        for batch_size in env.ladder:
            for seed in (0, 1):
                _, info = env.reset(seed=seed)
                initial, worst, terminated = info["val_loss"], 1.0, False
                action = env.encode(int(batch_size))
                while not terminated:
                    _, _, terminated, _, info = env.step(action)
                    loss = info["val_loss"]
                    worst = max(worst, loss / initial) if math.isfinite(loss) else math.inf
                print(
                    f"{task} B={batch_size} seed={seed}: L_0={initial:.3f} "
                    f"max L/L_0={worst:.2f} final={info['val_loss']:.3f} "
                    f"non-finite={info['diverged']}",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:] or ["digits-mlp"])
