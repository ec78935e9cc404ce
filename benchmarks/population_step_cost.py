"""Calibrates the padded grouping's cost model: one batched training step = a + b·(multiply-adds).

`arbiter_env.population_group.STEP_OVERHEAD_MACS` is a / b: the fixed cost of a group's training
step, in multiply-adds. This script times the step the population runs (`mlp_loss_and_grads`
then `MemberSgd.step`) on stacked digits MLPs for N members, batch sizes and hidden widths, fits
time = a + b·(N·B·forward multiply-adds per example) by least squares, and prints a, b and a / b.

    python benchmarks/population_step_cost.py --repeats 20 --json benchmarks/population-step-cost.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from arbiter_env.batched import MemberSgd, SgdSettings, mlp_loss_and_grads

INPUTS, CLASSES = 64, 10


def _step_seconds(members: int, batch: int, width: int, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    shapes = [(width, INPUTS), (width,), (CLASSES, width), (CLASSES,)]
    params = [torch.randn(members, *s, generator=generator) * 0.1 for s in shapes]
    inputs = torch.randn(members, batch, INPUTS, generator=generator)
    targets = torch.randint(CLASSES, (members, batch), generator=generator)
    buffers = [torch.zeros_like(p) for p in params]
    update = MemberSgd.of([SgdSettings(lr=0.05, momentum=0.9)] * members, torch.device("cpu"))
    assert update is not None
    times = []
    for _ in range(repeats + 2):  # the first two warm up the allocator and kernels
        started = time.perf_counter()
        _, grads, _ = mlp_loss_and_grads(params, inputs, targets, record=False)
        update.step(params, grads, buffers, None)
        times.append(time.perf_counter() - started)
    return float(np.median(times[2:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 128, 512])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for members, batch, width in itertools.product(args.members, args.batch_sizes, args.widths):
        macs = members * batch * (INPUTS * width + width * CLASSES)
        seconds = _step_seconds(members, batch, width, args.repeats)
        rows.append(
            {"members": members, "batch": batch, "width": width, "macs": macs, "s": seconds}
        )
        print(f"N={members} B={batch:4d} width={width:4d}: {seconds * 1e6:8.1f} µs")
    design = np.array([[1.0, r["macs"]] for r in rows])
    (fixed, per_mac), *_ = np.linalg.lstsq(design, np.array([r["s"] for r in rows]), rcond=None)
    fit = {"fixed_us": fixed * 1e6, "ns_per_mac": per_mac * 1e9, "overhead_macs": fixed / per_mac}
    print(
        f"fit: {fit['fixed_us']:.0f} µs + {fit['ns_per_mac']:.3f} ns per multiply-add; "
        f"fixed cost = {fit['overhead_macs']:.3g} multiply-adds"
    )
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "fit": fit}, indent=2))


if __name__ == "__main__":
    main()
