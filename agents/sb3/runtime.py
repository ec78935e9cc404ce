"""Process-wide state around SB3 calls: the global random generators and torch's thread count."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def preserved_global_rngs() -> Iterator[None]:
    """Restores Python's, numpy's and torch's global RNG states on exit.

    SB3 seeds the process-global generators (``set_random_seed``) and samples actions from
    torch's; this keeps the caller's streams untouched by agent creation and training.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()  # noqa: NPY002 -- saving, not drawing
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)  # noqa: NPY002 -- restoring the caller's state


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Sets torch's intra-op thread count inside the context (``None``: unchanged)."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
