"""Keeping freed memory in the process, so that batched training does not fault pages in again.

glibc's ``malloc`` serves blocks above ``M_MMAP_THRESHOLD`` (128 KiB at start, raised as such
blocks are freed) with their own ``mmap`` and returns the heap's free top to the system once it
exceeds ``M_TRIM_THRESHOLD``. The population env's stacked tensors are a few hundred KiB to a few
MiB (N=16 members' hidden activations at B=32 are 256 KiB; in the validation pass on digits' 287
examples, 2.2 MiB), allocated and freed at every step, so each step maps fresh pages and takes a
page fault for every 4 KiB of them. Raising both thresholds keeps the freed blocks in the heap
for the next step.

``benchmarks/population_throughput.py`` with and without ``--no-tune-allocator`` measures what
it gains. The setting is process-wide, as any ``mallopt`` call is;
``Population(tune_allocator=False)`` leaves the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Blocks below this come from the heap (glibc's own ceiling for its dynamic threshold)."""
TRIM_THRESHOLD = 128 << 20
"""The heap keeps up to this much freed memory at its top before returning it."""

_tuned = False


def keep_freed_memory() -> bool:
    """Raises glibc's mmap and trim thresholds for this process (once); ``False`` off glibc."""
    global _tuned
    if _tuned:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    # mallopt returns 1 on success; either failing leaves glibc's defaults, which are only slower.
    _tuned = bool(
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _tuned
