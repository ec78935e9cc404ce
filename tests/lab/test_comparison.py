"""The comparison runner: tables, plots, W&B, engines, failures, resume and rebuild.

One tiny comparison (two constant-batch controllers and one that raises, two seeds, a 3-interval
half-epoch budget on digits) is run once per module and inspected by several tests; the Ray
engine reruns it and must give the same numbers. The controllers live in a small plugin module
written to a temporary folder and named in the experiment's ``imports``, which is how user code
reaches the worker processes.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from arbiter_env.config import ConfigError, from_dict
from arbiter_env.lab.experiments import (
    ExperimentConfig,
    add_comparison_subcommands,
    load_experiment,
    rebuild_report,
    run_comparison,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "experiments"

PLUGIN = textwrap.dedent(
    """
    from arbiter_env.controllers import register_controller
    from arbiter_env.controllers import BatchSizeController


    class Constant(BatchSizeController):
        def __init__(self, env, batch_size=32):
            super().__init__(env)
            self.batch_size = batch_size

        def choose_batch_size(self, observation):
            return self.batch_size


    class Exploding(BatchSizeController):
        def choose_batch_size(self, observation):
            raise RuntimeError("this controller always fails")


    register_controller("test-constant", Constant, overwrite=True)
    register_controller("test-exploding", Exploding, overwrite=True)
    """
)

EXPERIMENT = {
    "name": "tiny",
    "tasks": ["digits-mlp"],
    "controllers": [
        {"name": "b32", "controller": "test-constant", "kwargs": {"batch_size": 32}},
        {"name": "b128", "controller": "test-constant", "kwargs": {"batch_size": 128}},
        {"name": "broken", "controller": "test-exploding"},
    ],
    "seeds": [0, 1],
    "task_overrides": {"epochs": 0.5, "num_intervals": 3},
    "target_accuracy": 0.5,
    "imports": ["comparison_test_plugin"],
    "engine": {"max_workers": 2, "num_cpus": 2},
    "wandb": {"mode": "offline", "group": "tiny-test"},
}

# Everything but wall-clock times must agree between engines and between a run and its rebuild.
DETERMINISTIC = (
    "final_val_loss",
    "final_val_accuracy",
    "test_loss",
    "test_accuracy",
    "samples",
    "updates",
    "samples_to_target",
    "status",
    "error",
)


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "comparison_test_plugin.py").write_text(PLUGIN)
    # Spawned workers inherit sys.path; the local Ray gets it as PYTHONPATH.
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory, plugin_path: Path) -> Path:
    file = tmp_path_factory.mktemp("config") / "tiny.yaml"
    file.write_text(yaml.safe_dump(EXPERIMENT, sort_keys=False))
    return file


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, config_file: Path):
    run_dir = tmp_path_factory.mktemp("runs") / "local"
    result = run_comparison(load_experiment(config_file), run_dir, engine="local", progress=False)
    return result


def _results_by_run(run_dir: Path) -> dict[tuple[str, int], dict]:
    results = {}
    for path in (run_dir / "runs").glob("*/*/seed-*/result.json"):
        result = json.loads(path.read_text())
        results[(result["label"], result["seed"])] = result
    return results


def test_tiny_comparison_writes_config_tables_plots_and_logs(local_run) -> None:
    run_dir = local_run.run_dir
    assert (run_dir / "config.yaml").is_file()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["wandb"]["group"] == "tiny-test" and saved["seeds"] == [0, 1]

    with (run_dir / "results.csv").open() as handle:
        rows = {row["controller"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"b32", "b128", "broken"}
    assert rows["b32"]["ok"] == "2" and float(rows["b32"]["final_val_loss_mean"]) > 0
    assert float(rows["b128"]["updates_mean"]) < float(rows["b32"]["updates_mean"])
    assert "samples_to_target_mean" in rows["b32"]

    markdown = (run_dir / "results.md").read_text()
    assert "| b32 | 2/2 |" in markdown and "±" in markdown
    for name in ("batch_size", "val_loss", "test_accuracy"):
        png = run_dir / "plots" / "digits-mlp" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    assert (run_dir / "plots" / "performance_profile.pdf").is_file()
    assert "## Across tasks and seeds" in markdown and "IQM" in markdown
    aggregates = json.loads((run_dir / "aggregates.json").read_text())
    assert {row["controller"] for row in aggregates} == {"b32", "b128"}

    run_folder = run_dir / "runs" / "digits-mlp" / "b32" / "seed-0"
    intervals = [
        json.loads(line) for line in (run_folder / "intervals.jsonl").read_text().splitlines()
    ]
    assert [row["batch_size"] for row in intervals] == [32, 32, 32]
    assert intervals[-1]["samples"] == local_run.results[0]["samples"]


def test_every_run_and_the_summary_are_logged_to_offline_wandb(local_run) -> None:
    wandb_runs = list(local_run.run_dir.rglob("offline-run-*/run-*.wandb"))
    # 4 successful runs, 2 failed runs that still opened their logger... at least the 4 + summary.
    assert len(wandb_runs) >= 5
    summary = [p for p in local_run.run_dir.glob("wandb/offline-run-*")]
    assert summary, "the comparison's summary run (results table) is in RUN_DIR/wandb"


def _wandb_cli(*args: str, cwd: Path) -> str:
    import shutil
    import subprocess

    wandb = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    # Offline, and pointed at a closed local port: nothing could leave the machine even if the
    # command tried (it does not: both subcommands read local files only).
    environment = os.environ | {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_BASE_URL": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [wandb, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_one_folder_holds_every_wandb_run_and_the_sync_dry_run_counts_them(local_run) -> None:
    folder = local_run.run_dir / "wandb"
    ran = [p for p in local_run.run_dir.rglob("offline-run-*") if p.is_dir() and not p.is_symlink()]
    assert sorted(p.name for p in local_run.wandb_runs) == sorted(p.name for p in ran)
    assert {p.name for p in folder.glob("offline-run-*")} == {p.name for p in ran}
    dry_run = _wandb_cli("sync", "--dry-run", str(folder), cwd=local_run.run_dir)
    assert f"Would sync {len(ran)} run(s)" in dry_run


def test_the_summary_run_holds_the_tables_and_figures_as_media(local_run) -> None:
    (summary_dir,) = (local_run.run_dir / "wandb").glob("offline-run-*-tiny-summary-*")
    inspected = json.loads(
        _wandb_cli("leet", "inspect", "--summary", "--json", str(summary_dir), cwd=summary_dir)
    )
    summary = inspected.get("summary") or inspected.get("metrics") or inspected
    text = json.dumps(summary)
    for key in ("tables/results", "tables/digits-mlp", "tables/across_tasks"):
        assert f'"{key}"' in text and "table-file" in text, key
    for plot in ("plots/digits-mlp/val_loss", "plots/performance_profile"):
        assert f'"{plot}"' in text and "image-file" in text, plot
    assert ".ncols" not in text  # tables in the summary: no chart of their sizes


def test_a_failing_controller_is_reported_and_the_others_finish(local_run) -> None:
    assert local_run.failed == 2
    results = _results_by_run(local_run.run_dir)
    assert results[("broken", 0)]["status"] == "failed"
    assert "this controller always fails" in results[("broken", 1)]["error"]
    # Strict JSON: a failed run's missing numbers are null, never a bare NaN.
    for path in local_run.run_dir.glob("runs/*/*/seed-*/result.json"):
        json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"bare {name}"))
    assert all(
        results[(label, seed)]["status"] == "ok" for label in ("b32", "b128") for seed in (0, 1)
    )
    markdown = (local_run.run_dir / "results.md").read_text()
    assert "| broken | 0/2 |" in markdown
    assert "RuntimeError: this controller always fails" in markdown


def test_plot_rebuilds_identical_tables_from_saved_logs(local_run) -> None:
    run_dir = local_run.run_dir
    before = {name: (run_dir / name).read_bytes() for name in ("results.csv", "results.md")}
    png = run_dir / "plots" / "digits-mlp" / "val_loss.png"
    png.unlink()
    report = rebuild_report(run_dir)
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert png.is_file() and len(report["plots"]) == 4  # 3 per task + the performance profile


def test_plot_command_line_rebuilds_the_report(local_run, capsys) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_comparison_subcommands(parser.add_subparsers())
    args = parser.parse_args(["plot", str(local_run.run_dir)])
    assert args.func(args) == 0
    assert "| b128 | 2/2 |" in capsys.readouterr().out
    missing = parser.parse_args(["plot", str(local_run.run_dir / "nope")])
    assert missing.func(missing) == 2


def test_resuming_skips_finished_runs(local_run, config_file: Path) -> None:
    run_dir = local_run.run_dir
    finished = run_dir / "runs" / "digits-mlp" / "b32" / "seed-0" / "result.json"
    redo = run_dir / "runs" / "digits-mlp" / "b128" / "seed-1" / "result.json"
    mtime = finished.stat().st_mtime_ns
    before = json.loads(redo.read_text())
    redo.unlink()  # as if the comparison was interrupted before this run finished

    again = run_comparison(load_experiment(config_file), run_dir, progress=False)

    # The missing run and the two failed ones ran again; the finished runs were skipped.
    assert again.executed == 3
    assert finished.stat().st_mtime_ns == mtime
    after = json.loads(redo.read_text())
    assert {k: after[k] for k in DETERMINISTIC} == {k: before[k] for k in DETERMINISTIC}


def test_a_run_folder_of_another_experiment_is_refused(local_run, config_file: Path) -> None:
    other = load_experiment(config_file, ["seeds=[5]"])
    with pytest.raises(ConfigError, match=r"different experiment.*seeds"):
        run_comparison(other, local_run.run_dir, progress=False)


@pytest.mark.slow
def test_local_and_ray_engines_give_identical_numbers(local_run, config_file, tmp_path) -> None:
    pytest.importorskip("ray")
    auth_mode = os.environ.get("RAY_AUTH_MODE")
    ray_run = run_comparison(
        load_experiment(config_file), tmp_path / "ray", engine="ray", progress=False
    )
    assert os.environ.get("RAY_AUTH_MODE") == auth_mode, "the local Ray's auth mode must not leak"
    local, ray = _results_by_run(local_run.run_dir), _results_by_run(ray_run.run_dir)
    assert local.keys() == ray.keys()
    for key in local:
        assert {k: ray[key].get(k) for k in DETERMINISTIC} == {
            k: local[key].get(k) for k in DETERMINISTIC
        }, key


def test_a_static_search_is_trained_once_and_keeps_its_study_in_the_run_folder(tmp_path) -> None:
    experiment = {
        "name": "search",
        "tasks": ["digits-mlp"],
        "controllers": [
            {
                "name": "random",
                "controller": "random-search",
                "kwargs": {"n_trials": 2},
                "train_timesteps": 1,
            }
        ],
        "seeds": [0],
        "task_overrides": {"epochs": 0.5, "num_intervals": 3},
        "wandb": {"mode": "disabled"},
    }
    config = from_dict(ExperimentConfig, experiment)
    result = run_comparison(config, tmp_path / "run", engine="local", progress=False)
    (evaluation,) = _results_by_run(result.run_dir).values()
    assert evaluation["status"] == "ok", evaluation["error"]
    model_dir = result.run_dir / "models" / "digits-mlp" / "random"
    assert list(model_dir.glob("*.db"))


def test_unknown_keys_and_wrong_types_are_rejected_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match=r"controllers\[0\]\.kwarg"):
        from_dict(
            ExperimentConfig,
            {
                "name": "x",
                "tasks": ["digits-mlp"],
                "controllers": [{"name": "a", "controller": "f", "kwarg": {}}],
            },
        )
    with pytest.raises(ConfigError, match="seeds\\[1\\]"):
        from_dict(
            ExperimentConfig,
            {
                "name": "x",
                "tasks": ["digits-mlp"],
                "controllers": [{"name": "a", "controller": "f"}],
                "seeds": [0, "one"],
            },
        )
    with pytest.raises(ConfigError, match="used twice"):
        from_dict(
            ExperimentConfig,
            {"name": "x", "tasks": ["t"], "controllers": [{"name": "a", "controller": "f"}] * 2},
        )


def test_unknown_controller_fails_before_anything_runs(tmp_path: Path) -> None:
    config = from_dict(
        ExperimentConfig,
        {
            "name": "x",
            "tasks": ["digits-mlp"],
            "controllers": [{"name": "a", "controller": "no-such"}],
        },
    )
    with pytest.raises(ConfigError, match="unknown controller 'no-such'"):
        run_comparison(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "runs").exists()


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_shipped_experiment_configs_load_and_name_existing_things(name: str) -> None:
    from arbiter_env.lab.experiments import validate_names
    from arbiter_env.lab.experiments.benchmark import experiment_config, load_benchmark

    if name == "benchmark":  # the suite's own format, expanded into its comparison
        config = experiment_config(load_benchmark(CONFIG_DIR / f"{name}.yaml"))
    else:
        config = load_experiment(CONFIG_DIR / f"{name}.yaml")
    validate_names(config)


def test_a_rerun_logs_to_the_same_wandb_summary_run(tmp_path, monkeypatch):
    from arbiter_env.lab.experiments.results import log_wandb_summary

    monkeypatch.setenv("WANDB_SILENT", "true")
    config = from_dict(ExperimentConfig, {**EXPERIMENT, "imports": []})
    report = {"rows": [{"controller": "b32", "test_accuracy": 0.9}], "plots": []}
    for attempt in ("first", "second"):
        (tmp_path / attempt).mkdir()
        log_wandb_summary(config, tmp_path / attempt, report, wall_time=1.0)
    run_ids = [
        next((tmp_path / attempt / "wandb").glob("offline-run-*")).name.split("-", 3)[-1]
        for attempt in ("first", "second")
    ]
    # One id, so `wandb sync` of both folders updates one run instead of adding a second.
    assert run_ids[0] == run_ids[1] and run_ids[0].startswith("tiny-summary-")


def test_a_controller_s_env_defaults_apply_unless_the_experiment_sets_them(tmp_path) -> None:
    from arbiter_env.lab.experiments import plan_runs

    config = from_dict(
        ExperimentConfig,
        {
            "name": "defaults",
            "tasks": ["digits-mlp"],
            "seeds": [0],
            "controllers": [
                {"name": "arbiter", "controller": "arbiter"},
                {
                    "name": "arbiter-discrete",
                    "controller": "arbiter",
                    "env": {"action_encoding": "discrete"},
                },
                {"name": "fixed", "controller": "fixed"},
                {"name": "saved", "controller": "arbiter", "kwargs": {"checkpoint": "ckpt"}},
            ],
        },
    )
    _, runs = plan_runs(config, tmp_path)
    saved = next(run for run in runs if run.label == "saved")
    assert saved.kwargs["checkpoint"] == str(Path("ckpt").resolve())  # absolute for any worker
    runs = [run for run in runs if run.label != "saved"]
    env = {run.label: run.env for run in runs}
    assert env == {
        "arbiter": {"action_encoding": "continuous"},
        "arbiter-discrete": {"action_encoding": "discrete"},
        "fixed": {},
    }
