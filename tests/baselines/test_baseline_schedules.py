"""Schedules give the documented sizes (and learning rates) at the documented times."""

import math

import pytest
import torch

from arbiter_env.baselines import (
    AdaBatch,
    AdaBatchConfig,
    ExponentialGrowth,
    FixedBatchSize,
    LinearGrowth,
    SimiGrad,
    SimiGradConfig,
    SmithSchedule,
    StepSchedule,
)
from arbiter_env.controllers import run_episode
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.tasks import from_tensors


def _blobs_640():
    """640 training examples: enough for the ladder's top rung, 512 (the env refuses more)."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 6, generator=generator) * 2
    labels = torch.randint(3, (850,), generator=generator)
    inputs = centres[labels] + torch.randn(850, 6, generator=generator)
    return from_tensors(inputs[:800], labels[:800], inputs[800:], labels[800:], num_classes=3)


@pytest.fixture
def env(tiny_task):
    # Ladder 8..512 starting at 128 like the built-in tasks; 10 intervals of 32 samples each, so
    # the decision for interval i sees progress exactly i/10.
    task = tiny_task.replace(
        data=_blobs_640, batch_min=8, batch_start=128, batch_max=512, epochs=0.5, num_intervals=10
    )
    environment = BatchSizeEnv(task)
    assert environment.budget == 320
    return environment


def sizes(env, controller) -> list[int]:
    return run_episode(env, controller, seed=0).batch_sizes


def test_fixed_defaults_to_the_start_size(env):
    assert sizes(env, FixedBatchSize(env)) == [128] * 10
    assert sizes(env, FixedBatchSize(env, batch_size=32)) == [32] * 10


def test_step_multiplies_at_milestones_and_caps(env):
    # Milestones 0.3, 0.6, 0.8, factor 2: 128 until 0.3, 256 until 0.6, then 512 (capped).
    assert sizes(env, StepSchedule(env)) == [128] * 3 + [256] * 3 + [512] * 4
    custom = StepSchedule(env, initial_batch_size=16, milestones=(0.5,), factor=4.0)
    assert sizes(env, custom) == [16] * 5 + [64] * 5


def test_smith_grows_the_batch_then_decays_the_learning_rate(env):
    record = run_episode(env, SmithSchedule(env), seed=0)
    # Factor 5 from 128: 640 is capped at 512 at 0.3, so ε = ε₀·512/640; then ε₀·512/3200 at
    # 0.6 and ε₀·512/16000 at 0.8.
    assert record.batch_sizes == [128] * 3 + [512] * 7
    lr0 = env.task.optimizer.lr
    expected = [lr0] * 3 + [lr0 * 0.8] * 3 + [lr0 * 0.16] * 2 + [lr0 * 0.032] * 2
    assert record.learning_rates == pytest.approx(expected)


def test_smith_lr_follows_the_size_really_used_under_relative_actions(tiny_task):
    task = tiny_task.replace(
        data=_blobs_640, batch_min=8, batch_start=128, batch_max=512, epochs=0.5, num_intervals=10
    )
    env = BatchSizeEnv(task, action_encoding="relative")
    record = run_episode(env, SmithSchedule(env), seed=0)
    # One doubling per step: 256 at 0.3 (ε₀·256/640), 512 from 0.4 on.
    assert record.batch_sizes == [128] * 3 + [256] + [512] * 6
    lr0 = env.task.optimizer.lr
    assert record.learning_rates[3] == pytest.approx(lr0 * 256 / 640)
    assert record.learning_rates[4] == pytest.approx(lr0 * 512 / 640)


def test_adabatch_doubles_and_keeps_lr_over_batch_on_schedule(env):
    controller = AdaBatch(env, AdaBatchConfig(interval=0.2, lr_decay=0.375))
    record = run_episode(env, controller, seed=0)
    assert record.batch_sizes == [128] * 2 + [256] * 2 + [512] * 6
    lr0 = env.task.optimizer.lr
    # ε/B = (ε₀/128)·0.375^k at stage k = ⌊p/0.2⌋.
    stages = [i // 2 for i in range(10)]
    expected = [lr0 * 0.375**k * b / 128 for k, b in zip(stages, record.batch_sizes, strict=True)]
    assert record.learning_rates == pytest.approx(expected)
    # The trainer really uses it.
    assert env.trainer.current_lr == pytest.approx(expected[-1])


def test_linear_and_exponential_growth_sizes(env):
    linear = LinearGrowth(env)
    exponential = ExponentialGrowth(env)
    for p, lin, exp in [(0.0, 8, 8), (0.5, 260, 64), (1.0, 512, 512)]:
        assert linear.batch_size_at(p) == lin
        assert exponential.batch_size_at(p) == exp
    assert (
        LinearGrowth(env, start_batch_size=16, end_batch_size=64, duration=0.5).batch_size_at(0.25)
        == 40
    )
    # B(p) = 8·64^p = 2^(3 + 6p); the discrete ladder takes the nearest rung in log space.
    assert sizes(env, exponential) == [8, 16, 16, 32, 32, 64, 128, 128, 256, 256]


def test_simigrad_sqrt_scaling_changes_the_trainers_lr(env):
    controller = SimiGrad(env, SimiGradConfig(sqrt_lr_scaling=True, target_similarity=0.99))
    record = run_episode(env, controller, seed=0)
    # A target above any measured cosine makes the size grow every interval.
    assert record.batch_sizes[-1] > 128
    lr0 = env.task.optimizer.lr
    expected = [lr0 * (b / 128) ** 0.5 for b in record.batch_sizes]
    assert record.learning_rates == pytest.approx(expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda env: StepSchedule(env, milestones=(0.5, 0.2)),
        lambda env: SmithSchedule(env, factor=0.5),
        lambda env: AdaBatch(env, interval=0.0),
        lambda env: LinearGrowth(env, start_batch_size=64, end_batch_size=8),
        lambda env: FixedBatchSize(env, batch_size=0),
        lambda env: FixedBatchSize(env, batchsize=8),
    ],
)
def test_bad_configs_raise_value_errors(env, make):
    with pytest.raises(ValueError):
        make(env)


def test_batch_ramp_linear_and_geometric_by_hand(env):
    from arbiter_env.baselines import BatchRamp
    from arbiter_env.baselines.schedules import ramp

    assert ramp(8, 128, 0.4, "linear") == 8 + 120 * 0.4  # 56
    assert ramp(8, 128, 0.5, "geometric") == pytest.approx(32.0, rel=1e-15)  # 8·16^0.5
    assert ramp(8, 128, 2.0, "linear") == 128  # held after the ramp
    linear = BatchRamp(env, start_batch_size=8, end_batch_size=128, duration=0.5)
    assert linear.batch_size_at(0.2) == 56
    assert linear.batch_size_at(0.9) == 128
    geometric = BatchRamp(env, shape="geometric", duration=0.5)  # 8 → task.batch_start = 128
    assert geometric.batch_size_at(0.25) == 32


def test_seesaw_stage_by_hand():
    from arbiter_env.baselines.schedules import seesaw_stage

    assert seesaw_stage(1.0, 2.0) == 0
    assert seesaw_stage(0.5, 2.0) == 1
    assert seesaw_stage(0.3, 2.0) == 1  # log2(1/0.3) = 1.74
    assert seesaw_stage(0.25, 2.0) == 2
    assert seesaw_stage(0.1, 10.0) == 1
    assert seesaw_stage(0.0, 2.0) == math.inf


def test_seesaw_trades_each_halving_of_the_lr_for_a_doubling_of_b_and_a_sqrt2_step(tiny_task):
    from arbiter_env.baselines import Seesaw

    task = tiny_task.replace(
        data=_blobs_640,
        batch_min=8,
        batch_start=64,
        batch_max=512,
        epochs=0.5,  # 320 samples, as 2 epochs of tiny_task's 160
        num_intervals=10,
        lr_schedule={"name": "step", "milestones": (0.5,), "gamma": 0.25},
    )
    env = BatchSizeEnv(task)
    record = run_episode(env, Seesaw(env), seed=0)
    # m = 1 before the milestone, 0.25 after: two halvings, B × 4 and ε = ε₀·0.25·√4 = ε₀/2.
    assert record.batch_sizes == [64] * 5 + [256] * 5
    lr = task.optimizer.lr
    assert record.learning_rates == pytest.approx([lr] * 5 + [lr * 0.25 * 2.0] * 5, rel=1e-12)
    with pytest.raises(ValueError, match="lr_scaling='none'"):
        Seesaw(BatchSizeEnv(task, lr_scaling="sqrt"))


def test_seesaw_on_cosine_doubles_where_the_cosine_halves(tiny_task):
    from arbiter_env.baselines import Seesaw

    task = tiny_task.replace(
        data=_blobs_640,
        batch_min=8,
        batch_start=64,
        batch_max=512,
        epochs=0.5,  # 320 samples, as 2 epochs of tiny_task's 160
        num_intervals=10,
        lr_schedule="cosine",
    )
    seesaw = Seesaw(BatchSizeEnv(task))
    # (1 + cos(πp))/2 = 1/2 at p = 0.5, 1/4 at p = 2/3, 0 at p = 1.
    assert [seesaw.batch_size_at(p) for p in (0.4, 0.5, 0.6, 0.7, 1.0)] == [64, 128, 128, 256, 512]
