"""YAML configs are strict: no duplicate keys, no alias bombs, no runaway nesting, real files only."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from arbiter_env.config import ConfigError, apply_overrides, read_yaml_file
from arbiter_env.lab.cli import main

EXPERIMENT = """\
name: strict
tasks: [digits-mlp]
controllers: [{name: b64, controller: fixed, kwargs: {batch_size: 64}}]
wandb: {mode: disabled}
"""


def _one_line_error(capsys: pytest.CaptureFixture, *fragments: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_a_duplicate_key_is_refused_naming_both_lines(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("seeds: [0]\nname: a\nseeds: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"config.yaml:3:1: .*duplicate key 'seeds' \(first at"):
        read_yaml_file(file)


def test_a_duplicate_nested_key_is_refused_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    file = tmp_path / "experiment.yaml"
    file.write_text(EXPERIMENT + "engine: {max_workers: 1, max_workers: 2}\n")
    assert main(["compare", "--config", str(file), "--run-dir", str(tmp_path / "run")]) == 2
    assert "duplicate key 'max_workers'" in capsys.readouterr().err


def test_a_duplicate_key_in_an_override_value_is_refused() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'lr'"):
        apply_overrides({}, ["optimizer={lr: 0.1, lr: 0.2}"])


def test_aliases_and_merge_keys_still_work() -> None:
    from arbiter_env.config import parse_yaml

    data = parse_yaml("base: &base {lr: 0.1, momentum: 0.9}\nrun:\n  <<: *base\n  lr: 0.2\n")
    assert data["run"] == {"lr": 0.2, "momentum": 0.9}


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    # 9 levels of 9 references: 9**9 (387 million) values once expanded, in 600 bytes.
    lines = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    file = tmp_path / "bomb.yaml"
    file.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="once aliases are expanded"):
        read_yaml_file(file)
    assert time.perf_counter() - started < 2.0


def test_deep_nesting_is_refused_without_a_recursion_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    file = tmp_path / "deep.yaml"
    file.write_text("name: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nesting deeper than"):
        read_yaml_file(file)
    assert main(["compare", "--config", str(file), "--run-dir", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, "nesting deeper than")


@pytest.mark.parametrize("command", ["compare", "train"])
def test_config_on_a_folder_or_a_device_says_what_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture, command: str
) -> None:
    agent = ["--agent", "ppo"] if command == "train" else []
    for path, what in ((tmp_path, "is a folder"), (Path("/dev/null"), "is not a regular file")):
        argv = [command, *agent, "--config", str(path), "--run-dir", str(tmp_path / "run")]
        assert main(argv) == 2
        _one_line_error(capsys, str(path), what)


def test_train_config_python_tags_and_duplicates_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for text, what in (
        ("seed: !!python/object/apply:os.getcwd []\n", "python/object/apply"),
        ("seed: 1\nseed: 2\n", "duplicate key 'seed'"),
    ):
        file = tmp_path / "agent.yaml"
        file.write_text(text)
        argv = ["train", "--agent", "ppo", "--config", str(file)]
        assert main([*argv, "--run-dir", str(tmp_path / "run")]) == 2
        _one_line_error(capsys, str(file), what)


def test_safe_yaml_is_still_what_the_strict_loader_builds() -> None:
    from arbiter_env.config import parse_yaml

    text = "a: [1, 2.5, true, null, 'x']\nb: {c: 2019-01-01}\n"
    assert parse_yaml(text) == yaml.safe_load(text)
