"""``arbiter compare``'s arguments: a config by name, and what a bad nested override says."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbiter_env.lab.experiments.commands import experiment_file

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "experiments"


def test_config_name_resolves_to_configs_experiments_name_yaml(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # not the checkout: the checkout's configs are found anyway
    assert experiment_file("digits-mlp").resolve() == (CONFIGS / "digits-mlp.yaml").resolve()
    # In the working folder's configs/experiments/ first.
    mine = tmp_path / "configs" / "experiments" / "digits-mlp.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("name: mine\n")
    assert experiment_file("digits-mlp").resolve() == mine.resolve()
    # A path is taken as given, existing or not (the loader reports a missing file).
    assert experiment_file("other/x.yaml") == Path("other/x.yaml")


def test_an_unknown_config_name_names_the_paths_it_tried(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        experiment_file("no-such-experiment")
    message = str(error.value)
    assert str(tmp_path / "configs" / "experiments" / "no-such-experiment.yaml") in message
    assert str(CONFIGS / "no-such-experiment.yaml") in message


def test_a_bad_nested_task_override_lists_the_valid_keys(tmp_path, capsys) -> None:
    from arbiter_env.lab.cli import main

    code = main(
        [
            "compare",
            "--config",
            "digits-mlp",
            "--run-dir",
            str(tmp_path / "run"),
            "task_overrides.optimizer.lrr=0.1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "Unknown optimizer field(s) ['lrr']" in err and "'lr'" in err and "'momentum'" in err
    assert "TypeError" not in err
