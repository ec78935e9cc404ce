"""cbs-warmup doubles exactly when its branched measurement says doubling is efficient."""

import math

from arbiter_env.baselines import CBSWarmup
from arbiter_env.baselines.branched import doubling_is_efficient
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.envs.branching import branch_env


def test_doubling_is_efficient_when_2b_reaches_bs_loss_with_the_tolerated_samples():
    assert doubling_is_efficient(0.50, 0.49)
    assert doubling_is_efficient(0.50, 0.50)
    assert not doubling_is_efficient(0.50, 0.51)
    assert not doubling_is_efficient(0.50, math.nan)  # a diverged branch never wins


def _branch_loss(env, batch_size, samples):
    branch = branch_env(env)
    branch.trainer.train(batch_size, samples)
    return branch.trainer.evaluate("validation")[0]


def test_each_decision_matches_the_branched_measurement_and_sizes_only_grow(tiny_task):
    task = tiny_task.replace(batch_min=8, batch_start=16, batch_max=64, num_intervals=5)
    env = BatchSizeEnv(task)
    controller = CBSWarmup(env, tolerance=0.2)
    observation, _ = env.reset(seed=0)
    controller.on_episode_start(observation)
    current, sizes, losses = 8, [], []
    for interval in range(task.num_intervals):
        samples = env.interval_boundaries[interval + 1] - env.interval_boundaries[interval]
        expected = current
        if 2 * current <= task.batch_max:
            at_b = _branch_loss(env, current, samples)
            at_2b = _branch_loss(env, 2 * current, round(1.2 * samples))
            expected = 2 * current if at_2b <= at_b else current
        chosen = controller.choose_batch_size(observation)
        assert chosen == expected
        observation, _, _, _, info = env.step(env.encode(chosen))
        sizes.append(chosen)
        losses.append(info["val_loss"])
        current = chosen
    assert sizes == sorted(sizes)
    # The branches leave the episode alone: replaying the sizes without them gives its losses.
    replay_env = BatchSizeEnv(task)
    replay_env.reset(seed=0)
    replayed = [replay_env.step(replay_env.encode(b))[4]["val_loss"] for b in sizes]
    assert replayed == losses
