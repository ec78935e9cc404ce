"""Where runs execute: a local pool of worker processes, or Ray tasks.

Both engines submit :func:`~arbiter_env.lab.experiments.worker.execute_run` with one
:class:`~arbiter_env.lab.experiments.plan.RunSpec` and hand back ``(handle, result or exception)``
pairs as runs finish; :func:`make_engine` picks one from an :class:`EngineConfig`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Protocol

from arbiter_env.config import ConfigError
from arbiter_env.lab.experiments.config import EngineConfig
from arbiter_env.lab.experiments.plan import RunSpec
from arbiter_env.lab.experiments.worker import execute_run
from arbiter_env.lab.forkserver_guard import DRIVER_ENV_VAR
from arbiter_env.lab.workers import die_with_driver

Outcome = dict[str, Any] | BaseException
"""A run's result record, or the exception that killed its worker."""


class Engine(Protocol):
    """What the runner needs of an engine."""

    def submit(self, spec: RunSpec) -> Any:
        """Starts the run; returns a handle."""
        ...

    def wait(self, handles: list[Any], timeout: float | None = None) -> list[tuple[Any, Outcome]]:
        """Blocks until one of ``handles`` finished or ``timeout`` passed; returns the finished."""
        ...

    def close(self) -> None:
        """Stops the workers (and a Ray started here) once they are idle."""
        ...

    def abort(self) -> None:
        """Stops the workers now, runs in progress included (after Ctrl-C)."""
        ...


def make_engine(config: EngineConfig) -> Engine:
    """The engine ``config`` names, started."""
    if config.name == "local":
        return _LocalEngine(config.max_workers)
    return _RayEngine(config.ray_address, config.num_cpus)


class _LocalEngine:
    """A pool of worker processes on this machine."""

    def __init__(self, max_workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # "forkserver": a plain fork of this process would inherit torch's thread pools and locks,
        # which can deadlock. The fork server imports the heavy modules once (torch alone takes
        # seconds) and forks each worker from that clean, single-threaded state, so workers start
        # fast, and a second comparison in the same process (a resume) reuses the server.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(_PRELOAD))

        # Read by the fork server (started lazily, with this environment) as it imports _PRELOAD.
        os.environ[DRIVER_ENV_VAR] = str(os.getpid())

        # Workers end when this driver ends, however it ends (SIGKILL included): orphans would
        # keep writing into the folder while a resumed driver plans it.
        self.pool = ProcessPoolExecutor(
            max_workers=max_workers,
            mp_context=context,
            initializer=die_with_driver,
            initargs=(os.getpid(),),
        )

    def submit(self, spec: RunSpec) -> Any:
        return self.pool.submit(execute_run, spec)

    def wait(self, handles: list[Any], timeout: float | None = None) -> list[tuple[Any, Outcome]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        results = []
        for future in done:
            try:
                results.append((future, future.result()))
            except BaseException as error:  # broad on purpose: e.g. a worker killed by the OS
                results.append((future, error))
        return results

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        # The executor has no public way to stop a running task before Python 3.14: terminate
        # its processes (a run killed mid-way wrote no result and is run again on resume).
        processes = list(getattr(self.pool, "_processes", {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.terminate()
        for process in processes:
            with contextlib.suppress(Exception):
                process.join(timeout=1.0)


# Imported once by the local engine's fork server; importing them starts no threads.
_PRELOAD = (
    "arbiter_env.lab.forkserver_guard",  # first: the server dies with the driver from here on
    "arbiter_env.lab.experiments.worker",
    "sklearn.datasets",
    "torch._dynamo",
    "wandb",
)


class _RayEngine:
    """Ray tasks, on an existing cluster or on a local Ray started (and stopped) here.

    Ray 2.x turns on token authentication when ``ray.init()`` starts a new local cluster: it sets
    ``RAY_AUTH_MODE=token`` in this process and creates ``~/.ray/auth_token`` if missing. Both are
    local; nothing reaches the network. The variable is restored on close so that it does not leak
    into later Ray use of this process. To join a cluster that uses tokens, set
    ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` (or ``RAY_AUTH_TOKEN_PATH``) yourself.
    """

    def __init__(self, address: str | None, num_cpus: int):
        try:
            import ray
        except ImportError:
            raise RuntimeError(
                "The ray engine needs Ray: pip install 'arbiter-env[ray]'."
            ) from None
        self.ray = ray
        self._saved_auth_mode = os.environ.get("RAY_AUTH_MODE")
        self.owns_cluster = False
        if ray.is_initialized():
            pass  # the caller's Ray session; use it and leave it running
        elif address:
            _check_ray_address(address)
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                # Workers must find the modules the driver finds (configs' `imports`, tests).
                runtime_env={"env_vars": {"PYTHONPATH": _python_path()}},
            )
            self.owns_cluster = True
        self.remote = ray.remote(num_cpus=1, max_retries=0)(execute_run)
        self.submitted: list[Any] = []

    def submit(self, spec: RunSpec) -> Any:
        ref = self.remote.remote(spec)
        self.submitted.append(ref)
        return ref

    def wait(self, handles: list[Any], timeout: float | None = None) -> list[tuple[Any, Outcome]]:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        results = []
        for ref in ready:
            try:
                results.append((ref, self.ray.get(ref)))
            except Exception as error:  # broad on purpose: a worker crash, reported as a failure
                results.append((ref, error))
        return results

    def abort(self) -> None:
        for ref in self.submitted:
            with contextlib.suppress(Exception):  # finished already, or Ray is going down
                self.ray.cancel(ref, force=True)
        self.close()

    def close(self) -> None:
        if self.owns_cluster:
            self.ray.shutdown()
            if self._saved_auth_mode is None:
                os.environ.pop("RAY_AUTH_MODE", None)
            else:
                os.environ["RAY_AUTH_MODE"] = self._saved_auth_mode


RAY_CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a TCP connection to a Ray address before giving up on it."""


def _check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    """Fails fast when a ``host:port`` Ray address does not accept connections.

    ``ray.init(address=...)`` keeps retrying an unreachable address for minutes; a plain TCP
    connection with a time-out tells the same in seconds. ``auto`` and ``local`` are left to Ray.
    """
    import socket

    target = address.removeprefix("ray://")
    if target in ("auto", "local") or ":" not in target:
        return
    host, _, port_text = target.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"engine.ray_address: {address!r} is not host:port.") from None
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            pass
    except OSError as error:
        raise ConfigError(
            f"engine.ray_address: cannot reach a Ray cluster at {address} within {timeout:g} s "
            f"({error}). Start it (ray start --head) or drop --ray-address to start a local Ray."
        ) from None


def _python_path() -> str:
    entries = [p for p in sys.path if p and Path(p).is_dir()]
    return os.pathsep.join(dict.fromkeys(entries))
