"""Keeping freed memory in the process (arbiter_env.vector.allocator)."""

import platform
import subprocess
import sys
import textwrap

import pytest

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)

# A fresh interpreter: glibc's thresholds are process state. It prints how many blocks of its
# own mmap one 4 MiB malloc takes (glibc's mallinfo2), after keep_freed_memory() if asked.
_MMAPPED_BLOCKS = textwrap.dedent(
    """
    import ctypes, sys
    libc = ctypes.CDLL("libc.so.6")
    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks "
                    "keepcost".split()]
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    if sys.argv[1] == "tuned":
        from arbiter_env.vector.allocator import keep_freed_memory
        assert keep_freed_memory()
    before = libc.mallinfo2().hblks
    block = libc.malloc(4 << 20)
    print(libc.mallinfo2().hblks - before)
    libc.free(ctypes.c_void_p(block))
    """
)


def _mmapped_blocks_of_one_malloc(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _MMAPPED_BLOCKS, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@glibc_only
def test_a_tuned_process_serves_megabyte_blocks_from_its_heap_instead_of_fresh_mappings():
    assert _mmapped_blocks_of_one_malloc("default") == 1
    assert _mmapped_blocks_of_one_malloc("tuned") == 0
