"""The benchmark suite: its tasks, its comparison, and the leaderboard's numbers by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbiter_env.config import ConfigError
from arbiter_env.lab.experiments.benchmark import experiment_config, load_benchmark, suite_tasks
from arbiter_env.training.lr_schedule import LrSchedule

SUITE = Path(__file__).resolve().parents[3] / "configs" / "experiments" / "benchmark.yaml"


def test_the_suite_config_loads_and_every_name_in_it_exists():
    from arbiter_env.lab.experiments.config import validate_names

    config = load_benchmark(SUITE)
    for full in (False, True):
        validate_names(experiment_config(config, full))  # imports the suite's task names


def test_default_and_full_runs_take_the_documented_tasks_and_seeds():
    config = load_benchmark(SUITE)
    default = suite_tasks(config)
    assert default[:4] == [
        "digits-mlp",
        "digits-mlp@cosine",
        "synthetic-teacher",
        "synthetic-teacher@cosine",
    ]
    assert default[4:] == [
        "digits-mlp-family-test-3",
        "synthetic-teacher-family-test-3",
        "mnist1d-mlp-family-test-3",
    ]
    full = suite_tasks(config, full=True)
    assert len(full) == 4 * 4 + 3 * 16  # four tasks under four schedules, every test instance
    assert experiment_config(config, full=True).seeds == [0, 1, 2, 3, 4]


def test_suite_task_names_build_the_scheduled_task_and_the_family_instance():
    from arbiter_env.tasks import make_task
    from arbiter_env.tasks.families import get_family
    from arbiter_env.tasks.suite import SUITE_LR_SCHEDULES

    assert make_task("digits-mlp@wsd").lr_schedule == SUITE_LR_SCHEDULES["wsd"]
    assert make_task("digits-mlp").lr_schedule == LrSchedule()
    family = get_family("digits-mlp-family")
    instance = next(i for i in family.instances("test") if i.index == 3)
    built, expected = make_task("digits-mlp-family-test-3"), family.make_task(instance)
    assert built.name == expected.name and built.optimizer == expected.optimizer
    assert built.model.keywords == expected.model.keywords  # partials compare by identity


def test_the_comparison_has_the_ladder_the_baselines_and_the_oracle():
    config = load_benchmark(SUITE)
    labels = [spec.name for spec in experiment_config(config).controllers]
    assert labels[:7] == [f"fixed-{b}" for b in (8, 16, 32, 64, 128, 256, 512)]
    for name in ("batch-ramp", "seesaw", "adascale", "goodput", "cbs-warmup"):
        assert name in labels
    assert experiment_config(config).controllers[-1].controller == "oracle-greedy"
    without = load_benchmark(SUITE, ["oracle=null"])
    assert "oracle-greedy" not in [spec.name for spec in experiment_config(without).controllers]


def test_an_unknown_oracle_is_an_error_naming_it():
    from arbiter_env.lab.experiments.config import validate_names

    config = load_benchmark(SUITE, ["oracle=oracle-greedier"])
    with pytest.raises(ConfigError, match="oracle-greedier"):
        validate_names(experiment_config(config))


def test_unknown_schedules_are_rejected(tmp_path):
    file = tmp_path / "suite.yaml"
    file.write_text(SUITE.read_text())
    with pytest.raises(ConfigError, match="unknown schedule 'cosin'"):
        load_benchmark(file, ["lr_schedules=[constant, cosin]"])


def test_arbiter_benchmark_is_a_command():
    from arbiter_env.lab.cli.parser import build_parser

    args = build_parser().parse_args(["benchmark", "--full", "--engine", "ray"])
    assert args.full and args.engine == "ray"


def test_the_default_suite_config_is_found_from_any_working_folder(tmp_path, monkeypatch):
    from arbiter_env.lab.cli.parser import build_parser
    from arbiter_env.lab.experiments.commands import experiment_file

    monkeypatch.chdir(tmp_path)  # no configs/ here: the source checkout's is used
    args = build_parser().parse_args(["benchmark"])
    assert experiment_file(args.config).resolve() == SUITE.resolve()
