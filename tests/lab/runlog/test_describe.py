"""What a run ran: labels and tags from its config, and the env as resolved."""

from __future__ import annotations

import gymnasium as gym

import arbiter_env  # noqa: F401 - registers the environment
from arbiter_env.lab.runlog import RunLogger
from arbiter_env.lab.runlog.describe import config_labels, describe_env, kind_tag


def test_a_controller_section_is_not_taken_for_the_controller_s_name() -> None:
    # Arbiter's run config has a `controller` mapping; its tag must not be that dict as text.
    config = {"task": "digits-mlp", "controller": {"phi_lr": 0.001}, "agent": "arbiter"}
    assert config_labels(config) == ("digits-mlp", "arbiter")


def test_every_run_is_tagged_with_its_controller_s_kind(tmp_path) -> None:
    assert kind_tag("fixed") == "kind:fixed" and kind_tag("ppo") == "kind:rl"
    assert kind_tag("my-own") == "kind:other" and kind_tag(None) is None
    with RunLogger(tmp_path, {"task": "t", "controller": "arbiter"}, wandb_mode="disabled") as log:
        assert log.tags == ["t", "arbiter", "kind:arbiter"]
    with RunLogger(
        tmp_path / "b", {"controller": "cabs"}, wandb_mode="disabled", tags=["mine"]
    ) as log:
        assert log.tags == ["mine", "kind:adaptive"]


def test_the_resolved_env_holds_every_setting_that_changes_results() -> None:
    env = gym.make(
        "arbiter_env/BatchSize-v0",
        task="digits-mlp",
        gradient_statistics="probe",
        divergence={"loss_ratio": 5.0},
    )
    described = describe_env(env)
    assert described["gradient_statistics"] == "probe"
    assert described["divergence"]["loss_ratio"] == 5.0
    assert described["task"]["name"] == "digits-mlp"
