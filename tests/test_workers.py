"""Pool workers stop before committing anything once their driver is gone."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> int:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], timeout=60).returncode


def test_a_worker_whose_driver_died_exits_before_it_commits() -> None:
    # The "driver" is a child that has already exited and been reaped: its pid is gone.
    code = """
        import subprocess, sys
        from arbiter_env import workers
        gone = subprocess.Popen([sys.executable, "-c", "pass"]); gone.wait()
        workers._driver_pid = gone.pid
        workers.exit_if_driver_gone()
        sys.exit(0)  # only reached if the check let the worker commit
    """
    assert _run(code) == 1


def test_the_commit_check_is_a_no_op_outside_pool_workers_and_with_a_live_driver() -> None:
    code = """
        import os, sys
        from arbiter_env import workers
        workers.exit_if_driver_gone()  # no driver recorded: the driver itself, or Ray
        workers._driver_pid = os.getppid()
        workers.exit_if_driver_gone()
        sys.exit(0)
    """
    assert _run(code) == 0
