import math

import numpy as np
import pytest

from arbiter_env.config import ConfigError
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.envs.config import EnvConfig
from arbiter_env.training.lr_schedule import LrSchedule
from arbiter_env.training.trainer import InnerTrainer

# --- the formulas, by hand in float64 -------------------------------------------------------------


def test_constant_is_one_everywhere():
    schedule = LrSchedule()
    assert [schedule.factor(p) for p in (0.0, 0.3, 1.0)] == [1.0, 1.0, 1.0]


def test_step_multiplies_by_gamma_at_each_milestone_after_a_linear_warmup():
    schedule = LrSchedule(name="step", warmup=0.1, milestones=(0.5, 0.75), gamma=0.2)
    assert schedule.factor(0.05) == pytest.approx(0.5, abs=1e-15)  # 0.05 / 0.1
    assert schedule.factor(0.4) == 1.0
    assert schedule.factor(0.5) == 0.2
    assert schedule.factor(0.74) == 0.2
    assert schedule.factor(0.8) == pytest.approx(0.04, abs=1e-15)


def test_cosine_follows_half_a_cosine_from_the_end_of_warmup_to_the_final_factor():
    schedule = LrSchedule(name="cosine", warmup=0.2, final_factor=0.1)
    assert schedule.factor(0.1) == pytest.approx(0.5, abs=1e-15)
    assert schedule.factor(0.2) == 1.0
    # p = 0.6: q = (0.6 − 0.2)/0.8 = 0.5, cos(π/2) = 0, so 0.1 + 0.9·0.5 = 0.55
    assert schedule.factor(0.6) == pytest.approx(0.55, abs=1e-15)
    # p = 0.4: q = 0.25, (1 + cos(π/4))/2 = (1 + 0.70710678...)/2 = 0.85355339...
    assert schedule.factor(0.4) == pytest.approx(0.1 + 0.9 * 0.8535533905932737, abs=1e-15)
    assert schedule.factor(1.0) == pytest.approx(0.1, abs=1e-15)


def test_wsd_holds_one_then_decays_linearly_over_the_last_fraction():
    schedule = LrSchedule(name="wsd", warmup=0.1, decay=0.2, final_factor=0.0)
    assert schedule.factor(0.02) == pytest.approx(0.2, abs=1e-15)
    assert schedule.factor(0.5) == 1.0
    assert schedule.factor(0.8) == 1.0
    assert schedule.factor(0.9) == pytest.approx(0.5, abs=1e-15)  # halfway through the decay
    assert schedule.factor(1.0) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "linear"}, "Unknown lr_schedule"),
        ({"name": "cosine", "gamma": 0.5}, "takes no gamma"),
        ({"name": "constant", "warmup": 0.1}, "takes no warmup"),
        ({"name": "step", "milestones": (0.7, 0.3)}, "increasing fractions"),
        ({"name": "wsd", "warmup": 0.5, "decay": 0.6}, "overlap"),
        ({"name": "cosine", "final_factor": 2.0}, r"final_factor must be in \[0, 1\]"),
    ],
)
def test_bad_schedules_are_rejected_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LrSchedule(**kwargs)


# --- the trainer: per update, on the sample clock -------------------------------------------------


def _lrs_of_each_update(trainer: InnerTrainer, batch_sizes: list[int], samples: int) -> list:
    rates: list[float] = []
    trainer.add_step_hook(lambda info: rates.append(trainer.current_lr))
    for batch_size in batch_sizes:
        trainer.train(batch_size, samples)
    return rates


def test_each_update_uses_the_schedule_at_the_middle_of_its_batch_on_the_sample_clock(tiny_task):
    task = tiny_task.replace(lr_schedule={"name": "cosine", "final_factor": 0.0})
    trainer = InnerTrainer(task, lr_scaling="sqrt", base_batch_size=8)
    trainer.reset(0)
    budget = trainer.budget
    rates = _lrs_of_each_update(trainer, [8, 32], 40)
    expected, seen = [], 0
    for batch_size, slice_samples in ((8, 40), (32, 40)):
        for size in [batch_size] * (slice_samples // batch_size) + (
            [slice_samples % batch_size] if slice_samples % batch_size else []
        ):
            scaling = math.sqrt(batch_size / 8)  # the rule uses the interval's batch size
            p = (seen + size / 2) / budget
            expected.append(task.optimizer.lr * scaling * (1 + math.cos(math.pi * p)) / 2)
            seen += size
    assert rates == pytest.approx(expected, rel=1e-12)


def test_the_rate_at_a_point_of_the_data_stream_does_not_depend_on_earlier_batch_sizes(tiny_task):
    task = tiny_task.replace(lr_schedule="wsd")
    small, large = InnerTrainer(task), InnerTrainer(task)
    small.reset(0)
    large.reset(0)
    for _ in range(4):
        small.train(8, 16)
    large.train(64, 64)
    # Both have consumed 64 samples: the next update of a given size gets the same rate.
    assert small.lr_for(16) == large.lr_for(16)


def test_a_schedule_that_is_one_everywhere_trains_bit_for_bit_as_constant(tiny_task):
    """The per-update path changes nothing but the rate it writes."""
    flat = tiny_task.replace(lr_schedule={"name": "step", "gamma": 1.0})
    trainers = [InnerTrainer(tiny_task), InnerTrainer(flat)]
    for trainer in trainers:
        trainer.reset(1)
        for batch_size in (8, 24, 16):
            trainer.train(batch_size, 48)
    for a, b in zip(trainers[0].model.parameters(), trainers[1].model.parameters(), strict=True):
        assert a.detach().numpy().tobytes() == b.detach().numpy().tobytes()


def test_constant_writes_the_rate_once_per_interval_and_never_evaluates_the_schedule(
    tiny_task, monkeypatch
):
    """What keeps the default bit-identical to the trainer before schedules existed."""
    evaluated: list[float] = []
    monkeypatch.setattr(LrSchedule, "factor", lambda self, p: evaluated.append(p) or 1.0)
    trainer = InnerTrainer(tiny_task, lr_scaling="linear", base_batch_size=8)
    trainer.reset(0)
    writes: list[float] = []
    original = trainer._write_lr
    monkeypatch.setattr(trainer, "_write_lr", lambda lr: writes.append(lr) or original(lr))
    for batch_size in (8, 8, 16):
        trainer.train(batch_size, 40)
    assert evaluated == []
    assert writes == [trainer.base_lr, trainer.base_lr * 2]  # only when the target changes


def test_hypergradient_optimizers_reject_a_schedule(tiny_task):
    with pytest.raises(ValueError, match="adapts its own learning rate"):
        tiny_task.replace(optimizer={"name": "sgd-hd"}, lr_schedule="cosine")


# --- configuration: env argument, YAML, -e overrides, observation ---------------------------------


def test_env_config_takes_a_name_a_mapping_or_dotted_overrides():
    assert EnvConfig.parse(["lr_schedule=cosine"])["lr_schedule"] == LrSchedule(name="cosine")
    parsed = EnvConfig.parse(["lr_schedule.name=wsd", "lr_schedule.decay=0.1"])
    assert parsed["lr_schedule"] == LrSchedule(name="wsd", decay=0.1)
    yaml_like = EnvConfig.from_mapping({"lr_schedule": {"name": "step", "milestones": [0.3]}})
    assert yaml_like.lr_schedule == LrSchedule(name="step", milestones=(0.3,))
    assert EnvConfig.from_mapping(yaml_like.to_dict()).lr_schedule == yaml_like.lr_schedule
    with pytest.raises(ConfigError, match="Unknown lr_schedule key"):
        EnvConfig.parse(["lr_schedule.gama=0.5"])


def test_task_replace_changes_fields_of_the_tasks_schedule_unless_a_name_is_given(tiny_task):
    cosine = tiny_task.replace(lr_schedule="cosine")
    assert cosine.replace(lr_schedule={"final_factor": 0.1}).lr_schedule == LrSchedule(
        name="cosine", final_factor=0.1
    )
    assert cosine.replace(lr_schedule={"name": "wsd"}).lr_schedule == LrSchedule(name="wsd")


def test_the_observation_reports_the_scheduled_rate_of_the_intervals_last_update(tiny_task):
    env = BatchSizeEnv(tiny_task, lr_schedule={"name": "step", "milestones": (0.5,)})
    observation, _ = env.reset(seed=0)
    lr = tiny_task.optimizer.lr
    assert observation[2] == pytest.approx(np.log10(lr), abs=1e-6)
    while True:
        observation, _, terminated, _, info = env.step(env.encode(16))
        assert observation[2] == pytest.approx(np.log10(info["lr"]), abs=1e-6)
        if terminated:
            break
    assert info["lr"] == pytest.approx(lr * 0.1, rel=1e-12)  # after the milestone
