"""One writer per run folder; results files are whole or absent; damaged records are re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from arbiter_env.files import atomic_write_text
from arbiter_env.lab.cli import main
from arbiter_env.lab.experiments import (
    commands,
    load_experiment,
    rebuild_report,
    results,
    run_comparison,
    runner,
)
from arbiter_env.lab.runfolder import RunFolderBusy, RunFolderLock
from arbiter_env.lab.runlog.writers import read_jsonl

HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from arbiter_env.lab.runfolder import RunFolderLock
    lock = RunFolderLock(sys.argv[1], command="test holder").acquire()
    print("locked", flush=True)
    time.sleep(60)
    """
)

EXPERIMENT = {
    "name": "reliability",
    "tasks": ["digits-mlp"],
    "controllers": [{"name": "b64", "controller": "fixed", "kwargs": {"batch_size": 64}}],
    "seeds": [0, 1, 2],
    "task_overrides": {"epochs": 0.25, "num_intervals": 2},
    "engine": {"max_workers": 1},
    "wandb": {"mode": "disabled"},
}


def _write_experiment(folder: Path, **changes) -> Path:
    file = folder / "experiment.yaml"
    file.write_text(yaml.safe_dump({**EXPERIMENT, **changes}))
    return file


def _hold_lock(folder: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_second_writer_exits_with_code_2_naming_the_holder(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    holder = _hold_lock(run_dir)
    try:
        with pytest.raises(RunFolderBusy, match=f"process {holder.pid} .*test holder"):
            RunFolderLock(run_dir).acquire()
        config = _write_experiment(tmp_path)
        started = time.perf_counter()
        argv = ["compare", "--config", str(config), "--run-dir", str(run_dir), "--no-progress"]
        assert main(argv) == 2
        assert time.perf_counter() - started < 5  # at once: before any run starts
        assert f"in use by process {holder.pid}" in capsys.readouterr().err
        assert not (run_dir / "runs").exists()  # it wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The operating system released the dead holder's lock; the stale file blocks nobody.
    with RunFolderLock(run_dir):
        pass


def test_lock_is_reentrant_within_one_process(tmp_path: Path) -> None:
    with RunFolderLock(tmp_path), RunFolderLock(tmp_path):
        pass
    with RunFolderLock(tmp_path):
        pass


def test_atomic_write_leaves_the_old_file_whole_when_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "results.csv"
    atomic_write_text(target, "a,b\n1,2\n3,4\n")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "a,b\n" + "5,6\n" * 1000)
    assert target.read_text() == "a,b\n1,2\n3,4\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temp file left


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("finished")
    config = load_experiment(_write_experiment(folder))
    result = run_comparison(config, folder / "run", progress=False)
    assert result.failed == 0 and result.executed == 3
    rows = {p.parent.name: p.read_text() for p in folder.glob("run/runs/*/*/*/intervals.jsonl")}
    return folder, rows


def test_report_tables_are_replaced_atomically(finished, monkeypatch) -> None:
    folder, _ = finished
    run_dir = folder / "run"
    before = {name: (run_dir / name).read_text() for name in ("results.csv", "runs.csv")}
    written = []
    real = results.atomic_write_text

    def recording(path, text):
        written.append(Path(path).name)
        real(path, text)

    monkeypatch.setattr(results, "atomic_write_text", recording)
    rebuild_report(run_dir)
    assert {"results.csv", "results.md", "runs.csv", "aggregates.json"} <= set(written)
    assert {name: (run_dir / name).read_text() for name in before} == before
    assert len((run_dir / "runs.csv").read_text().splitlines()) == 4  # header + 3 runs


def test_damaged_run_records_are_rerun_with_a_warning_and_match(finished) -> None:
    folder, rows = finished
    run_dir = folder / "run"
    seed = {s: run_dir / "runs" / "digits-mlp" / "b64" / f"seed-{s}" for s in (0, 1, 2)}
    (seed[0] / "result.json").write_text("[]")  # not an object
    record = json.loads((seed[1] / "result.json").read_text())
    record["seed"] = "1"  # a string seed
    (seed[1] / "result.json").write_text(json.dumps(record))
    log = (seed[2] / "intervals.jsonl").read_text()
    (seed[2] / "intervals.jsonl").write_text(log + log)  # a second writer's rows

    # Reports skip the damaged records with a warning instead of a traceback.
    with pytest.warns(UserWarning, match="skipped"):
        report = rebuild_report(run_dir)
    assert len(report["rows"]) == 1

    config = load_experiment(run_dir / "config.yaml")
    with pytest.warns(UserWarning, match="damaged run record") as caught:
        result = run_comparison(config, run_dir, progress=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "not a JSON object" in messages and "seed='1'" in messages
    assert "has 4 rows, the result recorded 2" in messages
    assert result.executed == 3 and result.failed == 0
    for name, text in rows.items():
        again = (run_dir / "runs" / "digits-mlp" / "b64" / name / "intervals.jsonl").read_text()
        strip = lambda t: [  # noqa: E731 - wall-clock fields differ between any two runs
            {k: v for k, v in json.loads(line).items() if "time" not in k and k != "elapsed"}
            for line in t.splitlines()
        ]
        assert strip(again) == strip(text)


def test_bad_middle_line_of_a_log_is_reported_not_silently_truncating(tmp_path: Path) -> None:
    log = tmp_path / "intervals.jsonl"
    log.write_text('{"a": 1}\n{"a": 2\n{"a": 3}\n')
    with pytest.warns(UserWarning, match=r"skipped 1 damaged line\(s\) \(2\)"):
        rows = read_jsonl(log)
    assert rows == [{"a": 1}, {"a": 3}]


def _tagged_processes(tag: str) -> list[int]:
    """Live processes whose environment carries ``tag`` (the driver and everything it started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"ARBITER_TEST_TAG={tag}".encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def _interval_rows(run_dir: Path) -> dict[str, list[dict]]:
    rows = {}
    for log in sorted(run_dir.glob("runs/*/*/*/intervals.jsonl")):
        rows[log.parent.name] = [
            {k: v for k, v in json.loads(line).items() if "time" not in k and k != "elapsed"}
            for line in log.read_text().splitlines()
        ]
    return rows


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc (Linux)")
def test_sigkill_of_the_driver_kills_its_workers_and_resume_matches_row_by_row(
    tmp_path: Path,
) -> None:
    # Seconds per run, so that the kill lands while runs are in flight.
    changes = {"seeds": [0, 1, 2, 3, 4, 5], "task_overrides": {"epochs": 30, "num_intervals": 4}}
    config_file = _write_experiment(tmp_path, engine={"max_workers": 2}, **changes)
    run_dir = tmp_path / "killed"
    tag = f"{os.getpid()}-{time.time_ns()}"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arbiter_env.lab.cli",
            "compare",
            "--config",
            str(config_file),
            "--run-dir",
            str(run_dir),
            "--no-progress",
        ],
        env={**os.environ, "ARBITER_TEST_TAG": tag, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not list(run_dir.glob("runs/*/*/*/result.json")):
        assert driver.poll() is None and time.time() < deadline, "no run finished in time"
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.time() + 5  # the workers poll their driver 5 times a second
    while _tagged_processes(tag) and time.time() < deadline:
        time.sleep(0.1)
    assert _tagged_processes(tag) == [], "workers outlived their driver"
    # A worker that was already renaming its result when the driver died may commit it (a whole
    # file, which resume then trusts); what the kill guarantees is that the workers are gone, so
    # the folder stops changing, and that the runs still in flight were never committed.
    finished = len(list(run_dir.glob("runs/*/*/*/result.json")))
    assert finished < 6, "the driver was killed too late to test anything"
    time.sleep(1.0)
    assert len(list(run_dir.glob("runs/*/*/*/result.json"))) == finished

    config = load_experiment(config_file)
    resumed = run_comparison(config, run_dir, progress=False)
    assert resumed.failed == 0 and resumed.executed == 6 - finished
    reference = run_comparison(config, tmp_path / "uninterrupted", progress=False)
    assert reference.failed == 0
    killed_rows, reference_rows = _interval_rows(run_dir), _interval_rows(tmp_path / "reference")
    reference_rows = _interval_rows(tmp_path / "uninterrupted")
    assert list(killed_rows) == list(reference_rows)
    for seed, rows in reference_rows.items():
        assert killed_rows[seed] == rows, seed  # row by row, no duplicates, nothing missing


@pytest.mark.slow
def test_two_concurrent_compares_one_runs_the_other_exits_2(tmp_path: Path) -> None:
    config_file = _write_experiment(tmp_path)
    run_dir = tmp_path / "shared"
    command = [sys.executable, "-m", "arbiter_env.lab.cli", "compare", "--config", str(config_file)]
    command += ["--run-dir", str(run_dir), "--no-progress"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / ".arbiter.lock").exists() or not (run_dir / "config.yaml").exists():
        assert time.time() < deadline
        time.sleep(0.1)
    second = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and f"process {first.pid}" in second.stderr
    assert first.wait(timeout=300) == 0
    result = json.loads((run_dir / "runs/digits-mlp/b64/seed-0/result.json").read_text())
    assert result["status"] == "ok" and result["log_rows"] == 2


def test_full_disk_is_one_message_with_the_resume_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import errno

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner, "save_yaml", disk_full)
    config = _write_experiment(tmp_path)
    run_dir = tmp_path / "run"
    argv = ["compare", "--config", str(config), "--run-dir", str(run_dir), "--no-progress"]
    assert main(argv) == commands.EXIT_IO_ERROR
    error = capsys.readouterr().err
    assert "No space left on device" in error and "Traceback" not in error
    assert f"arbiter compare --config {config} --run-dir {run_dir}" in error
