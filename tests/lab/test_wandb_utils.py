"""W&B plumbing: truly offline runs, login detection, names, tags and dashboard sections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from arbiter_env.lab.wandb_utils import (
    sectioned,
    summary_run_id,
    unique_tags,
    wandb_api_key_configured,
    wandb_key,
)

# Runs in a fresh interpreter so that wandb's whole life cycle, exit handlers included (its
# telemetry exports when the process ends), happens under the guard.
GUARDED_RUN = textwrap.dedent(
    """
    import atexit, json, socket, sys

    attempts = []
    report = sys.argv[1]
    # Registered first, so it runs last: after wandb's own exit handlers.
    atexit.register(lambda: open(report, "w").write(json.dumps(attempts)))
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family == socket.AF_UNIX:  # wandb talks to its own service over a unix socket
            return real_connect(self, address)
        attempts.append(["connect", repr(address)])
        raise OSError("outgoing connection blocked by the test")

    def getaddrinfo(*args, **kwargs):
        attempts.append(["getaddrinfo", repr(args[:2])])
        raise socket.gaierror("name lookup blocked by the test")

    socket.socket.connect = connect
    socket.socket.connect_ex = lambda self, address: connect(self, address) or 0
    socket.getaddrinfo = getaddrinfo

    import os
    import wandb
    from arbiter_env.envs.batch_size import BatchSizeEnv
    from arbiter_env.controllers import make_controller
    from arbiter_env.lab.runlog import RunLogger

    assert "WANDB_MODE" not in os.environ  # (tests/conftest.py sets it; not imported here)
    env = BatchSizeEnv("digits-mlp", task_kwargs={"epochs": 0.2, "num_intervals": 2})
    with RunLogger(sys.argv[2], {"task": "digits-mlp"}) as log:
        log.run_episode(env, make_controller("fixed", env, batch_size=8), 0)
        # A table, as the schedule at close: what made wandb 0.31's telemetry call home.
        log.wandb_run.log({"extra": wandb.Table(columns=["a"], data=[[1]])})
    assert log.wandb_mode == "offline" and log.wandb_error is None, log.wandb_error
    """
)


@pytest.mark.slow  # ~8-15 s: a fresh interpreter imports torch and wandb
def test_offline_run_makes_no_outgoing_connection_with_wandb_mode_unset(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("WANDB_")  # conftest sets WANDB_MODE; a user normally does not
    }
    env.update(
        NETRC=str(tmp_path / "no-netrc"),  # no key: the mode resolves to offline
        WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
        WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"),
        WANDB_DATA_DIR=str(tmp_path / "wandb-data"),
        OMP_NUM_THREADS="1",
    )
    report = tmp_path / "attempts.json"
    subprocess.run(
        [sys.executable, "-c", GUARDED_RUN, str(report), str(tmp_path / "run")],
        env=env,
        cwd=tmp_path,
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert json.loads(report.read_text()) == []
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path / "netrc"


def netrc_entry(host: str) -> str:
    return f"machine {host}\n  login user\n  password {'a' * 40}\n"


@pytest.mark.parametrize("host", ["api.forge.coreweave.com", "api.wandb.ai"])
def test_wandb_login_of_current_and_older_wandb_versions_counts_as_logged_in(no_credentials, host):
    assert not wandb_api_key_configured()
    # wandb 0.31's `wandb login` writes its default host, CoreWeave's Forge; older ones wrote
    # api.wandb.ai.
    no_credentials.write_text(netrc_entry(host))
    assert wandb_api_key_configured()


def test_login_for_another_server_counts_only_when_that_server_is_configured(
    no_credentials, monkeypatch
):
    no_credentials.write_text(netrc_entry("wandb.example.org"))
    assert not wandb_api_key_configured()
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert wandb_api_key_configured()
    no_credentials.write_text(netrc_entry("api.wandb.ai"))
    assert not wandb_api_key_configured()  # a key for the public cloud is not one for this server


def test_identity_token_file_counts_as_logged_in(no_credentials, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_IDENTITY_TOKEN_FILE", str(tmp_path / "token"))
    assert wandb_api_key_configured()


def test_tags_are_strings_without_duplicates_in_first_seen_order():
    assert unique_tags(["digits-mlp", "arbiter", "arbiter", None, "", 3]) == [
        "digits-mlp",
        "arbiter",
        "3",
    ]


def test_summary_run_id_is_fixed_by_its_parts_and_valid_for_wandb():
    first = summary_run_id("arbiter-env", "my group", "cmp summary")
    assert first == summary_run_id("arbiter-env", "my group", "cmp summary")
    assert first != summary_run_id("arbiter-env", "other group", "cmp summary")
    assert all(c.isalnum() or c in "-_" for c in first) and len(first) <= 64


def test_interval_fields_map_to_dashboard_sections_and_bookkeeping_is_dropped():
    record = {
        "samples": 10,
        "episode": 0,
        "env_index": 1,
        "interval": 3,
        "elapsed": 1.5,
        "val_loss": 0.4,
        "train_loss": 0.5,
        "noise_scale": 12.0,
        "batch_size": 32,
        "hypergradient_mean": 0.1,
        "train/loss": 2.0,
        "arbiter.alpha_0": 0.25,
    }
    assert sectioned(record) == {
        "samples": 10,
        "val/loss": 0.4,
        "inner/train_loss": 0.5,
        "grad_stats/noise_scale": 12.0,
        "schedule/batch_size": 32,
        "interval/hypergradient_mean": 0.1,
        "train/loss": 2.0,
        "arbiter/alpha_0": 0.25,
    }
    assert wandb_key("env_index") is None


def test_the_noise_scale_is_charted_only_where_grad_sq_norm_exceeds_its_noise_term():
    measurable = {
        "grad_sq_norm": 0.5,
        "trace_covariance": 16.0,
        "probe_size": 64,
        "noise_scale": 32,
    }
    # |G|² clamped at 1e-12: B_simple = 1.6e13 is an artefact, not a measurement.
    clamped = measurable | {"grad_sq_norm": 1e-12, "noise_scale": 1.6e13}
    assert sectioned(measurable)["grad_stats/noise_scale"] == 32
    assert "grad_stats/noise_scale" not in sectioned(clamped)
    assert sectioned(clamped)["grad_stats/grad_sq_norm"] == 1e-12
    assert "grad_stats/probe_size" not in sectioned(measurable)


def test_monitor_leftovers_and_env_timings_stay_out_of_sb3_sections():
    record = {
        "episode.r": 1.0,
        "episode.l": 20,
        "episode.t": 3.0,
        "TimeLimit.truncated": False,
        "wall_time": 0.1,
        "episode_wall_time": 2.0,
        "train_loss": 0.3,
    }
    assert sectioned(record) == {
        "env/truncated": False,
        "env/interval_wall_time": 0.1,
        "env/episode_wall_time": 2.0,
        "inner/train_loss": 0.3,
    }
