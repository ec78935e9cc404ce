"""A comparison's progress: a bar with an ETA in a terminal, one line per run anywhere else."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from arbiter_env.lab.experiments.progress import Progress, clock, key_metric


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _spec(kind, label, seed=0, folder="/nonexistent", timesteps=0):
    return SimpleNamespace(
        kind=kind,
        label=label,
        task="digits-mlp",
        seed=seed,
        folder=folder,
        train_timesteps=timesteps,
    )


def test_in_a_terminal_the_bar_names_the_runs_in_progress_with_training_timesteps(
    tmp_path,
) -> None:
    training = tmp_path / "ppo"
    training.mkdir()
    (training / "intervals.jsonl").write_text(
        json.dumps({"timesteps": 128}) + "\n" + json.dumps({"timesteps": 256}) + "\n"
    )
    specs = [
        _spec("train", "ppo", 12345, folder=str(training), timesteps=4096),
        _spec("evaluate", "fixed-8", 0),
        _spec("evaluate", "fixed-8", 1),
    ]
    display = Progress(3, 0, run_dir=tmp_path, slots=2, stream=_Terminal())
    try:
        display.running(specs)
        description = display.bar.tasks[0].description
        columns = [type(column).__name__ for column in display.bar.columns]
    finally:
        display.close()
    assert description == (
        "running: ppo digits-mlp training (256/4,096 timesteps), fixed-8 digits-mlp seed 0 "
        "(+1 queued)"
    )
    assert "TimeRemainingColumn" in columns  # the ETA


def test_without_a_terminal_each_finished_run_prints_one_line(tmp_path) -> None:
    stream = io.StringIO()
    display = Progress(2, 1, run_dir=tmp_path / "run", slots=1, stream=stream)
    display.running([_spec("evaluate", "fixed-8", 0), _spec("evaluate", "fixed-8", 1)])
    display.advance(
        _spec("evaluate", "fixed-8", 0),
        {"status": "ok", "test_accuracy": 0.97, "final_val_loss": 0.0645, "run_seconds": 3.25},
    )
    display.advance(
        _spec("evaluate", "fixed-8", 1), {"status": "failed", "error": "RuntimeError: boom"}
    )
    display.close()
    lines = stream.getvalue().splitlines()
    assert display.bar is None and len(lines) == 3
    assert lines[0] == (
        f"compare: 2 run(s) to execute (1 finished before, skipped); run folder: {tmp_path / 'run'}"
    )
    assert lines[1].startswith(
        "[1/2] fixed-8 digits-mlp seed 0: test acc 0.9700, val loss 0.0645 in 3.2 s; elapsed 0:0"
    )
    assert ", ETA 0:0" in lines[1]
    assert lines[2].startswith("[2/2] fixed-8 digits-mlp seed 1: FAILED: RuntimeError: boom")
    assert "ETA" not in lines[2]


def test_a_long_training_in_progress_sets_the_eta_and_is_reported_in_timesteps(
    tmp_path, monkeypatch
) -> None:
    from arbiter_env.lab.experiments import progress

    training = tmp_path / "ppo"
    training.mkdir()
    (training / "intervals.jsonl").write_text(json.dumps({"timesteps": 1024}) + "\n")
    clock_now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock_now[0])
    stream = io.StringIO()
    display = Progress(3, 0, run_dir=tmp_path, slots=2, stream=stream)
    ppo = _spec("train", "ppo", 12345, folder=str(training), timesteps=4096)
    fixed = _spec("evaluate", "fixed-8", 0)
    display.running([ppo, fixed, _spec("evaluate", "fixed-8", 1)])
    clock_now[0] = 160.0  # 60 s in: the training has done 1/4 of its timesteps
    display.advance(fixed, {"status": "ok", "test_accuracy": 0.9, "run_seconds": 60.0})
    line = stream.getvalue().splitlines()[-1]
    # Pace alone says 60 s × 2 runs left = 2:00; the training needs 3 × 60 s = 3:00 more.
    assert "ETA 3:00" in line
    assert line.endswith("; ppo digits-mlp training at 1,024/4,096 timesteps")


def test_key_metrics_and_clock() -> None:
    assert key_metric({"status": "ok", "diverged": True}) == "diverged"
    assert key_metric({"status": "ok", "kind": "train", "train_timesteps": 4096}) == (
        "trained 4,096 timesteps"
    )
    assert (clock(59.6), clock(61), clock(3725)) == ("1:00", "1:01", "1:02:05")


@pytest.mark.slow  # a real comparison in a subprocess: about 10-20 s of CPU
def test_ctrl_c_stops_a_comparison_within_3_s_and_keeps_finished_runs(tmp_path) -> None:
    config = tmp_path / "slow.yaml"
    config.write_text(
        textwrap.dedent(
            """
            name: slow
            tasks: [digits-mlp]
            seeds: [0, 1, 2, 3, 4, 5]
            task_overrides: {epochs: 4, num_intervals: 8}
            controllers:
              - {name: fixed-8, controller: fixed, kwargs: {batch_size: 8}}
            engine: {name: local, max_workers: 1}
            wandb: {mode: disabled}
            """
        )
    )
    run_dir = tmp_path / "run"
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arbiter_env.lab.cli",
            "compare",
            "--config",
            str(config),
            "--run-dir",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(run_dir.glob("runs/*/*/seed-*/result.json")):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(0.5)  # the next run is under way
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert took < 3.0, f"exited {took:.1f} s after Ctrl-C"
    assert "resume with" in stderr
    finished = list(run_dir.glob("runs/*/*/seed-*/result.json"))
    assert 1 <= len(finished) < 6
