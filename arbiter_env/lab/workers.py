"""Worker processes that die with the process that started them.

The local engine's workers are forked by multiprocessing's fork server, not by the driver, so when
the driver is killed (SIGKILL, out of memory) nothing tells them, and they would go on training
and writing into a run folder that a resumed driver is already planning. :func:`die_with_driver`
is the pool's initializer: each worker

* asks Linux to send it SIGKILL when its parent, the fork server, dies
  (``prctl(PR_SET_PDEATHSIG)``); the server asks the same of its own parent, the driver, in
  :mod:`arbiter_env.lab.forkserver_guard`, so a killed driver takes the whole tree with it, and
* starts a daemon thread that checks every ``poll_seconds`` whether the driver is still alive and
  ends the worker if it is not (the portable fallback, and a second line on Linux).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

__all__ = ["die_with_driver", "driver_alive", "exit_if_driver_gone", "kill_me_when_parent_dies"]

_PR_SET_PDEATHSIG = 1
# Set by die_with_driver in pool workers; None in the driver itself and under other engines.
_driver_pid: int | None = None


def driver_alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (and is not a zombie, where that can be told)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat") as handle:
        # The state follows the parenthesised command name; Z is a zombie: dead, not reaped.
        return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def kill_me_when_parent_dies(expected_parent: int) -> None:
    """Asks Linux to SIGKILL this process when its parent ends; exits now if it already has.

    Elsewhere than on Linux only the check runs.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != expected_parent:  # the parent died before the request took effect
        os._exit(1)


def die_with_driver(driver_pid: int, poll_seconds: float = 0.2) -> None:
    """Makes the calling worker end when ``driver_pid`` ends (see the module docstring)."""
    global _driver_pid
    _driver_pid = driver_pid
    kill_me_when_parent_dies(expected_parent=os.getppid())
    if not driver_alive(driver_pid):  # died before the request above took effect
        os._exit(1)

    def watch() -> None:
        while driver_alive(driver_pid):
            time.sleep(poll_seconds)
        # The driver is gone: nobody will read this worker's result, and a resumed driver may
        # already own the folder. Exit at once, without cleanup that could write anything.
        os._exit(1)

    threading.Thread(target=watch, name="die-with-driver", daemon=True).start()


def exit_if_driver_gone() -> None:
    """Ends a pool worker whose driver has died; a no-op anywhere else.

    The watcher thread polls, so a run can finish in the moment between the driver's death and
    the next poll. Workers call this just before they commit a result, which shrinks that window
    from ``poll_seconds`` to the time one atomic rename takes.
    """
    if _driver_pid is not None and not driver_alive(_driver_pid):
        os._exit(1)
