"""Unreachable services fail in seconds: W&B falls back to local logs, a Ray address errors out."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from arbiter_env.config import ConfigError
from arbiter_env.lab.experiments.engines import _check_ray_address
from arbiter_env.lab.runlog import RunLogger


def _closed_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on: bound, then released
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_wandb_server_costs_seconds_and_keeps_local_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("ARBITER_WANDB_INIT_TIMEOUT", "2")
    started = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="W&B init failed"):
        log = RunLogger(tmp_path, {"a": 1}, wandb_mode="online")
    assert time.perf_counter() - started < 20  # wandb's own default waits 90 s
    log.log_interval({"samples": 10, "batch_size": 32}, reward=0.5)
    log.close()
    assert log.wandb_error is not None
    assert (tmp_path / "intervals.jsonl").read_text().count("\n") == 1


def test_bad_wandb_timeout_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from arbiter_env.lab.runlog import wandb_init_timeout

    monkeypatch.setenv("ARBITER_WANDB_INIT_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="ARBITER_WANDB_INIT_TIMEOUT"):
        wandb_init_timeout()


def test_unreachable_ray_address_fails_in_seconds() -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"cannot reach a Ray cluster at 127\.0\.0\.1"):
        _check_ray_address(f"127.0.0.1:{_closed_port()}", timeout=2)
    assert time.perf_counter() - started < 5
    _check_ray_address("auto")  # left to Ray
