"""Pool workers stop before committing anything once their driver is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from arbiter_env.user_code import IMPORTS_ENV_VAR


def _run(code: str) -> int:
    # A user module named by another test's `arbiter --import` must not fail this import.
    environment = {key: value for key, value in os.environ.items() if key != IMPORTS_ENV_VAR}
    command = [sys.executable, "-c", textwrap.dedent(code)]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
    # os._exit leaves no traceback: an exception (exit status 1 too) must not pass for an exit.
    assert result.stderr == "", result.stderr
    return result.returncode


def test_a_worker_whose_driver_died_exits_before_it_commits() -> None:
    # The "driver" is a child that has already exited and been reaped: its pid is gone.
    code = """
        import subprocess, sys
        from arbiter_env.lab import workers
        gone = subprocess.Popen([sys.executable, "-c", "pass"]); gone.wait()
        workers._driver_pid = gone.pid
        workers.exit_if_driver_gone()
        sys.exit(0)  # only reached if the check let the worker commit
    """
    assert _run(code) == 1


def test_the_commit_check_is_a_no_op_outside_pool_workers_and_with_a_live_driver() -> None:
    code = """
        import os, sys
        from arbiter_env.lab import workers
        workers.exit_if_driver_gone()  # no driver recorded: the driver itself, or Ray
        workers._driver_pid = os.getppid()
        workers.exit_if_driver_gone()
        sys.exit(0)
    """
    assert _run(code) == 0


def test_the_fork_server_guard_kills_the_server_when_its_driver_is_killed() -> None:
    from arbiter_env.lab.forkserver_guard import DRIVER_ENV_VAR
    from arbiter_env.lab.workers import driver_alive

    # A "driver" starts a "server" that imports the guard, reports the server's pid, and is then
    # SIGKILLed, as the OOM killer or `kill -9` would.
    driver_code = f"""
        import os, signal, subprocess, sys
        server = subprocess.Popen(
            [sys.executable, "-c", "import arbiter_env.lab.forkserver_guard, time; print(1, flush=True); time.sleep(60)"],
            env={{**os.environ, "{DRIVER_ENV_VAR}": str(os.getpid())}},
            stdout=subprocess.PIPE,
        )
        server.stdout.readline()
        print(server.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
    environment = {key: value for key, value in os.environ.items() if key != IMPORTS_ENV_VAR}
    driver = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(driver_code)],
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    server_pid = int(driver.stdout.readline())  # type: ignore[union-attr]
    driver.wait(timeout=60)
    deadline = time.time() + 5
    while driver_alive(server_pid) and time.time() < deadline:
        time.sleep(0.05)
    alive = driver_alive(server_pid)
    if alive:
        os.kill(server_pid, signal.SIGKILL)
    assert not alive, "the server outlived its driver"
