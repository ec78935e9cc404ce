"""The JSON format of ``benchmarks/perf.py`` stays stable (timings themselves are not tested)."""

import json
import math
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import perf  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def check_report(report: dict) -> None:
    assert set(report) == {"schema", "created", "device", "host", "results"}
    assert report["schema"] == perf.SCHEMA == 1
    assert set(report["host"]) == {"cpus", "python", "torch"}
    for row in report["results"]:
        assert tuple(row) == perf.ROW_KEYS
        base = row["measurement"].split("@")[0]
        assert row["target"] == perf.TARGETS.get(base)
        assert row["unit"] == ("steps/s" if base.startswith("ppo") else "ratio")
        assert row["value"] is None or (math.isfinite(row["value"]) and row["value"] > 0)
        assert isinstance(row["interval_samples"], int) and row["interval_samples"] > 0


def test_perf_writes_the_documented_json_format(tmp_path):
    output = tmp_path / "perf.json"
    perf.main(
        [
            "--tasks",
            "digits-mlp",
            "--skip",
            "sampler",
            "arbiter",
            "ppo",
            "--repeats",
            "1",
            "--json",
            str(output),
        ]
    )
    report = json.loads(output.read_text())
    check_report(report)
    assert report["device"] == "cpu"
    assert [row["measurement"] for row in report["results"]] == [
        "env_over_plain",
        "env_with_stats_over_plain",
        "stats_over_training",
        "env_total_over_plain@8",
        "env_total_over_plain@32",
        "env_total_over_plain@128",
        "env_total_over_plain@512",
    ]
    assert {row["interval_samples"] for row in report["results"]} == {575}


def test_the_kept_record_follows_the_format():
    check_report(json.loads((BENCHMARKS / "results" / "perf.json").read_text()))


def test_table_marks_targets_met_strictly_only_where_ours_must_be_faster():
    assert perf.meets_target("env_over_plain", 1.05) is True
    assert perf.meets_target("arbiter_over_fixed@meta_period=4", 1.51) is False
    assert perf.meets_target("sampler_over_dataloader@64", 0.99) is True
    assert perf.meets_target("sampler_over_dataloader@64", 1.0) is False
    assert perf.meets_target("env_with_stats_over_plain", 3.0) is None


def test_the_env_with_its_statistics_is_held_to_1_05_at_every_batch_size():
    assert perf.meets_target("env_total_over_plain@512", 1.05) is True
    assert perf.meets_target("env_total_over_plain@8", 1.051) is False
    assert perf.meets_target("env_total_over_plain[probe]@128", 2.0) is None
    assert perf.meets_target("env_without_stats_over_plain@128", 2.0) is None
    assert perf.DEFAULT_SIZES == {"digits-mlp": [8, 32, 128, 512], "mnist1d-cnn": [32, 128]}


def test_breakdown_rows_follow_the_format(tmp_path):
    output = tmp_path / "perf.json"
    command = "--tasks digits-mlp --skip env sampler arbiter ppo --repeats 1 --sizes 512"
    perf.main([*command.split(), "--breakdown", "--json", str(output)])
    report = json.loads(output.read_text())
    check_report(report)
    names = [row["measurement"] for row in report["results"]]
    assert names[0] == "env_total_over_plain@512"
    assert names[-2:] == ["stats_over_update@512", "stats_ops_over_update_ops@512"]
    assert report["results"][-1]["value"] > 0
    parts = {name.split("]")[0].removeprefix("breakdown[") for name in names[1:-2]}
    assert parts == {
        "env:steps",
        "env:statistics",
        "env:interval_end",
        "env:train_rest",
        "env:validation",
        "env:env_rest",
        "plain:steps",
        "plain:validation",
    }
    assert perf.meets_target("stats_over_update@512", 0.25) is True
    assert perf.meets_target("stats_over_update@8", 0.26) is False
