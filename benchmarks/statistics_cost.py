"""What the gradient statistics of one 64-example probe cost on a WRN-16-4, by estimator.

    python benchmarks/statistics_cost.py                 # CPU
    python benchmarks/statistics_cost.py --device cuda

Prints milliseconds per call, beside a training update at B=64 and one forward and backward pass
of the probe (the least any estimator can cost):

* ``exact (vmap)``: per-sample gradients with ``torch.func`` (what a task uses by default);
* ``micro-batch M``: the micro-batch estimator with M micro-batches, one backward pass each
  (``Task.probe_microbatches``);
* ``micro-batch M, vmap``: only the micro-batch gradients, through ``vmap`` in one pass instead
  of M backward passes; kept for comparison (the table is in ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from arbiter_env.tasks.models import wide_resnet
from arbiter_env.training.stats import gradient_statistics


def milliseconds(function: Callable[[], object], device: torch.device, repeats: int) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    function()  # warm-up: allocator, kernels, vmap tracing
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    sync()
    return (time.perf_counter() - started) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = wide_resnet((3, 32, 32), 10).to(device)
    inputs = torch.randn(64, 3, 32, 32, generator=generator).to(device)
    targets = torch.randint(10, (64,), generator=generator).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    parameters = list(model.parameters())

    def update() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), targets).backward()
        optimizer.step()

    rows = {"training update, B=64": milliseconds(update, device, args.repeats)}
    model.eval()  # the statistics are measured in evaluation mode
    rows["forward + backward of the probe"] = milliseconds(
        lambda: torch.autograd.grad(F.cross_entropy(model(inputs), targets), parameters),
        device,
        args.repeats,
    )
    rows["exact (vmap)"] = milliseconds(
        lambda: gradient_statistics(model, inputs, targets, method="vmap"), device, args.repeats
    )
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def microbatch_loss(p, x, y):
        return F.cross_entropy(functional_call(model, (p, buffers), (x,)), y)

    for count in (4, 8):
        rows[f"micro-batch {count}"] = milliseconds(
            lambda count=count: gradient_statistics(
                model, inputs, targets, method="microbatch", num_microbatches=count
            ),
            device,
            args.repeats,
        )
        split_inputs = inputs.reshape(count, -1, *inputs.shape[1:])
        split_targets = targets.reshape(count, -1)
        rows[f"micro-batch {count}, vmap"] = milliseconds(
            lambda x=split_inputs, y=split_targets: vmap(grad(microbatch_loss), (None, 0, 0))(
                params, x, y
            ),
            device,
            args.repeats,
        )
    print(f"WRN-16-4, probe of 64, {args.device}, torch {torch.__version__}")
    for name, value in rows.items():
        print(f"  {name:<34} {value:9.1f} ms")


if __name__ == "__main__":
    main()
