"""The run logger: local JSONL logs, the offline W&B run, and surviving W&B failures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import wandb

from arbiter_env.controllers import BatchSizeController, run_episode
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.lab.runlog import RunLogger, make_run_dir, resolve_wandb_mode


class Ladder(BatchSizeController):
    """Walks up the ladder, so the schedule is not constant."""

    def choose_batch_size(self, observation: np.ndarray) -> int:
        return int(min(self.batch_env.batch_size * 2, self.batch_env.task.batch_max))


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline W&B with every wandb folder inside tmp_path and no key that could go online."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable, folder in [
        ("WANDB_DIR", "wandb-dir"),
        ("WANDB_DATA_DIR", "wandb-data"),
        ("WANDB_CACHE_DIR", "wandb-cache"),
        ("WANDB_CONFIG_DIR", "wandb-config"),
    ]:
        (tmp_path / folder).mkdir()
        monkeypatch.setenv(variable, str(tmp_path / folder))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_wandb_records(run_dir: Path) -> list[dict]:
    """The records of the offline run in ``run_dir``, read back by wandb's own reader."""
    (wandb_run,) = (run_dir / "wandb").glob("offline-run-*")
    wandb_cli = Path(sys.executable).with_name("wandb")
    result = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--json", str(wandb_run)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def close(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def run_logged_episodes(run_dir: Path, task, seeds=(0,), **logger_kwargs) -> RunLogger:
    env = BatchSizeEnv(task)
    config = {"task": task.name, "controller": "ladder", "seeds": list(seeds)}
    with RunLogger(run_dir, config, **logger_kwargs) as log:
        for seed in seeds:
            log.run_episode(env, Ladder(env), seed, controller_name="ladder")
    return log


def test_offline_wandb_history_holds_batch_size_and_loss_and_agrees_with_local_logs(
    tmp_path, tiny_task, wandb_offline
):
    run_dir = tmp_path / "run"
    log = run_logged_episodes(
        run_dir, tiny_task, seeds=(0, 1), group="exp-1", job_type="evaluate", tags=["a", "b"]
    )
    assert log.wandb_mode == "offline" and log.wandb_error is None
    assert log.wandb_run_dir is not None and log.wandb_run_dir.parent == run_dir / "wandb"

    intervals = read_jsonl(run_dir / "intervals.jsonl")
    episodes = read_jsonl(run_dir / "episodes.jsonl")
    assert len(intervals) == 2 * tiny_task.num_intervals and len(episodes) == 2

    records = read_wandb_records(run_dir)
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    interval_rows = [h for h in history if "schedule/batch_size" in h]
    assert len(interval_rows) == len(intervals)
    # Interval metrics sit in dashboard sections; bookkeeping is not charted.
    sections = {
        "samples": "samples",
        "batch_size": "schedule/batch_size",
        "lr": "schedule/lr",
        "train_loss": "inner/train_loss",
        "val_loss": "val/loss",
        "val_accuracy": "val/accuracy",
        "reward": "env/reward",
    }
    for local, remote in zip(intervals, interval_rows, strict=True):
        for key, name in sections.items():
            assert close(local[key], remote[name]), key
        # The noise scale is charted only where |G|² was measurable (B_simple < probe size).
        if local["noise_scale"] < local["probe_size"]:
            assert close(local["noise_scale"], remote["grad_stats/noise_scale"])
        else:
            assert "grad_stats/noise_scale" not in remote
        assert "grad_stats/probe_size" not in remote
        assert all(
            "/" in key or key in ("samples", "_step", "_runtime", "_timestamp") for key in remote
        )
        assert not {"episode", "env_index", "interval"} & set(remote)
    # The samples axis runs on over both episodes.
    samples = [row["samples"] for row in intervals]
    assert samples == sorted(samples) and len(set(samples)) == len(samples)
    assert samples[-1] == 2 * intervals[tiny_task.num_intervals - 1]["episode_samples"]

    episode_rows = [h for h in history if "episode/return" in h]
    assert len(episode_rows) == 2
    for local, remote in zip(episodes, episode_rows, strict=True):
        assert close(local["return"], remote["episode/return"])
        assert close(local["final_val_loss"], remote["episode/final_val_loss"])
        assert "episode/seed" not in remote and "episode/env_index" not in remote

    run = next(r["run"] for r in records if r["type"] == "run")
    assert (run["run_group"], run["job_type"], run["tags"]) == (
        "exp-1",
        "evaluate",
        ["a", "b", "kind:other"],
    )
    assert run["config"]["update"]["task"] == tiny_task.name
    assert run["display_name"] == "run"  # the run folder's name
    assert any(
        r["type"] == "metric"
        and r["metric"].get("glob_name") == "*"
        and r["metric"].get("step_metric") == "samples"
        for r in records
    )
    # The schedule went up as a table in the summary, matching the local intervals.
    (table_file,) = log.wandb_run_dir.glob("files/media/table/batch_size_schedule_*.table.json")
    table = json.loads(table_file.read_text())
    column = table["columns"].index("batch_size")
    assert [row[column] for row in table["data"]] == [r["batch_size"] for r in intervals]
    # No table in the history, so no charts of table sizes.
    assert not any(key.endswith((".ncols", ".nrows")) for h in history for key in h)

    assert yaml_config(run_dir)["seeds"] == [0, 1]
    # The resolved task and env arguments, in config.yaml and wandb.config alike.
    resolved = yaml_config(run_dir)["resolved"]
    assert resolved["env"]["task"]["epochs"] == tiny_task.epochs
    assert resolved["env"]["ladder"] == [4, 8, 16, 32, 64]
    assert resolved["controller"]["class"].endswith("Ladder")
    updates = [r["config"]["update"] for r in records if r["type"] == "config"]
    assert any(
        u.get("resolved", {}).get("env", {}).get("task") == resolved["env"]["task"] for u in updates
    )
    assert json.loads((run_dir / "run.json").read_text())["wandb_error"] is None


def yaml_config(run_dir: Path) -> dict:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())


def test_wandb_init_failure_warns_once_and_loses_no_local_logs(
    tmp_path, tiny_task, wandb_offline, monkeypatch
):
    def broken_init(*args, **kwargs):
        raise wandb.errors.UsageError("bad API key")

    monkeypatch.setattr(wandb, "init", broken_init)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = run_logged_episodes(tmp_path / "run", tiny_task, seeds=(0, 1))
    assert next(str(w.message) for w in caught if "W&B" in str(w.message)).startswith(
        "W&B init failed: UsageError: bad API key"
    )
    assert sum("W&B" in str(w.message) for w in caught) == 1
    assert not log.wandb_active
    assert len(read_jsonl(tmp_path / "run" / "intervals.jsonl")) == 2 * tiny_task.num_intervals
    assert [e["complete"] for e in read_jsonl(tmp_path / "run" / "episodes.jsonl")] == [True] * 2
    assert "bad API key" in json.loads((tmp_path / "run" / "run.json").read_text())["wandb_error"]


def test_wandb_log_failure_midway_loses_nothing_and_the_episode_finishes(
    tmp_path, tiny_task, wandb_offline, monkeypatch
):
    calls = {"log": 0}
    real_log = wandb.sdk.wandb_run.Run.log

    def flaky_log(self, *args, **kwargs):
        calls["log"] += 1
        if calls["log"] >= 3:  # fails from the third interval on
            raise ConnectionError("network is gone")
        return real_log(self, *args, **kwargs)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", flaky_log)
    with pytest.warns(RuntimeWarning, match="W&B log failed: ConnectionError"):
        log = run_logged_episodes(tmp_path / "run", tiny_task, seeds=(0,))
    assert calls["log"] == 3  # W&B was switched off after the first failure
    intervals = read_jsonl(tmp_path / "run" / "intervals.jsonl")
    assert [r["interval"] for r in intervals] == list(range(1, tiny_task.num_intervals + 1))
    (episode,) = read_jsonl(tmp_path / "run" / "episodes.jsonl")
    assert episode["complete"] and episode["intervals"] == tiny_task.num_intervals
    assert "test_accuracy" in intervals[-1]
    assert log.wandb_error.startswith("W&B log failed")


def test_wandb_finish_failure_still_writes_the_run_summary(
    tmp_path, tiny_task, wandb_offline, monkeypatch
):
    def broken_finish(self, *args, **kwargs):
        raise RuntimeError("wandb-core crashed")

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "finish", broken_finish)
    with pytest.warns(RuntimeWarning, match="W&B finish failed"):
        run_logged_episodes(tmp_path / "run", tiny_task, seeds=(0,))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["episodes"] == 1 and "wandb-core crashed" in info["wandb_error"]


def test_disabled_wandb_writes_only_local_files(tmp_path, tiny_task, monkeypatch):
    monkeypatch.setattr(wandb, "init", lambda *a, **k: pytest.fail("wandb.init was called"))
    log = run_logged_episodes(tmp_path / "run", tiny_task, wandb_mode="disabled")
    assert log.wandb_run_dir is None and not (tmp_path / "run" / "wandb").exists()
    assert len(read_jsonl(tmp_path / "run" / "intervals.jsonl")) == tiny_task.num_intervals


def test_wandb_mode_defaults_to_offline_without_a_key_and_online_with_one(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DISABLED", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert resolve_wandb_mode() == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    assert resolve_wandb_mode() == "online"
    (tmp_path / "netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "abc123")
    assert resolve_wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_wandb_mode() == "offline"
    assert resolve_wandb_mode("disabled") == "disabled"
    with pytest.raises(ValueError, match="Unknown wandb mode 'sometimes'"):
        resolve_wandb_mode("sometimes")


def test_samples_axis_is_monotonic_over_parallel_envs_and_episodes(tmp_path):
    with RunLogger(tmp_path, wandb_mode="disabled") as log:
        for step in range(1, 4):  # two envs, interleaved, each ending an episode after 3 steps
            for env_index in (0, 1):
                info = {"samples": 10 * step, "batch_size": 8, "interval": step}
                log.log_interval(info, reward=0.1, env_index=env_index)
        log.end_episode(0)
        log.log_interval({"samples": 10, "batch_size": 16, "interval": 1}, env_index=0)
        log.end_episode(1)
    rows = read_jsonl(tmp_path / "intervals.jsonl")
    assert [r["samples"] for r in rows] == [10, 20, 30, 40, 50, 60, 70]
    assert [r["episode"] for r in rows] == [0, 1, 0, 1, 0, 1, 2]
    episodes = read_jsonl(tmp_path / "episodes.jsonl")
    assert [(e["episode"], e["complete"]) for e in episodes] == [(0, True), (1, True), (2, False)]
    assert math.isclose(episodes[0]["return"], 0.3)


def test_non_finite_values_are_written_as_null_and_strings_stay_local(tmp_path):
    with RunLogger(tmp_path, wandb_mode="disabled") as log:
        log.log_interval(
            {"samples": 5, "val_loss": math.nan, "task": "digits", "family_settings": {"lr": 0.1}}
        )
    (row,) = read_jsonl(tmp_path / "intervals.jsonl")
    assert row["val_loss"] is None and row["task"] == "digits"
    assert row["family_settings.lr"] == 0.1


def test_an_interrupted_run_keeps_its_partial_episode(tmp_path, tiny_task):
    env = BatchSizeEnv(tiny_task)

    def stop_after_two(record, info):
        if len(record.rewards) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), RunLogger(tmp_path, wandb_mode="disabled") as log:
        log.run_episode(env, Ladder(env), 0, on_step=stop_after_two)
    (episode,) = read_jsonl(tmp_path / "episodes.jsonl")
    assert episode["intervals"] == 2 and not episode["complete"]
    assert json.loads((tmp_path / "run.json").read_text())["exit_code"] == 1


def test_make_run_dir_is_timestamped_and_never_reused(tmp_path):
    first, second = make_run_dir("evaluate", tmp_path), make_run_dir("evaluate", tmp_path)
    assert first != second and first.name.endswith("-evaluate") and second.is_dir()


def test_one_on_step_callback_serves_a_loop_of_episodes_without_double_logging(tmp_path, tiny_task):
    """As inside an agent's own runner: run_episode per seed, then log_episode for each."""
    env = BatchSizeEnv(tiny_task)
    with RunLogger(tmp_path, wandb_mode="disabled") as log:
        on_step = log.on_step(controller="ladder")
        records = [run_episode(env, Ladder(env), seed, on_step=on_step) for seed in (4, 5, 6)]
        summaries = [log.log_episode(record) for record in records]
        assert log.log_episode(records[0]) is summaries[0]  # idempotent
    episodes = read_jsonl(tmp_path / "episodes.jsonl")
    assert [(e["seed"], e["controller"], e["intervals"]) for e in episodes] == [
        (seed, "ladder", tiny_task.num_intervals) for seed in (4, 5, 6)
    ]
    assert len(read_jsonl(tmp_path / "intervals.jsonl")) == 3 * tiny_task.num_intervals
    assert [e["return"] for e in episodes] == pytest.approx([r.episode_return for r in records])


def test_runs_get_a_name_a_group_and_unique_tags_by_default(tmp_path):
    config = {"task": "digits-mlp", "controller": "arbiter"}
    with RunLogger(tmp_path / "r1", config, job_type="evaluate", wandb_mode="disabled") as log:
        assert (log.name, log.group) == ("r1", "digits-mlp")
        assert log.tags == ["digits-mlp", "arbiter", "evaluate", "kind:arbiter"]
    tags = ["digits-mlp", "arbiter", "arbiter"]
    with RunLogger(tmp_path / "r2", config, tags=tags, wandb_mode="disabled") as log:
        assert log.tags == ["digits-mlp", "arbiter", "kind:arbiter"]
    agent_config = {"algo": "ppo", "env": {"task": "mnist1d-mlp"}}
    with RunLogger(tmp_path / "r3", agent_config, job_type="train", wandb_mode="disabled") as log:
        assert log.group == "mnist1d-mlp"
        assert log.tags == ["mnist1d-mlp", "ppo", "train", "kind:rl"]


def test_intervals_left_open_by_hand_are_closed_before_a_logged_episode(tmp_path, tiny_task):
    env = BatchSizeEnv(tiny_task)
    with RunLogger(tmp_path, wandb_mode="disabled") as log:
        log.log_interval({"samples": 10, "batch_size": 8}, env_index=0)
        log.run_episode(env, Ladder(env), seed=0)
    episodes = read_jsonl(tmp_path / "episodes.jsonl")
    assert [(e["intervals"], e["complete"]) for e in episodes] == [(1, False), (4, True)]
