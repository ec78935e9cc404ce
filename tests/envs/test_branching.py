"""branch_env: an independent copy of an episode mid-way."""

import numpy as np
import pytest
import torch

from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.envs.branching import branch_env


def _played(seed: int, actions: list[int]) -> BatchSizeEnv:
    env = BatchSizeEnv("synthetic-teacher")
    env.reset(seed=seed)
    for action in actions:
        env.step(action)
    return env


def _state(env: BatchSizeEnv) -> list[torch.Tensor]:
    trainer = env.trainer
    momentum = [
        buffer
        for state in trainer.optimizer.state.values()
        for buffer in state.values()
        if isinstance(buffer, torch.Tensor)
    ]
    return [p.detach().clone() for p in trainer.model.parameters()] + [m.clone() for m in momentum]


def test_stepping_a_branch_leaves_the_original_bit_identical_to_an_unbranched_twin():
    original, twin = _played(7, [2, 4]), _played(7, [2, 4])
    branch = branch_env(original)
    for action in (0, 6, 1):  # very different sizes drive the branch's sampler and optimizer
        branch.step(action)
    for a, b in zip(_state(original), _state(twin), strict=True):
        assert torch.equal(a, b)
    # ... and the original goes on exactly as if it had never been branched.
    for action in (3, 5):
        ours, theirs = original.step(action), twin.step(action)
        assert np.array_equal(ours[0], theirs[0]) and ours[1] == theirs[1]


def test_a_branch_stepped_with_the_same_action_reproduces_the_original_step():
    original = _played(3, [1])
    branch = branch_env(original)
    assert np.array_equal(branch.step(5)[0], original.step(5)[0])


def test_a_branch_owns_its_network_optimizer_and_generators_but_shares_the_data():
    original = _played(0, [2])
    branch = branch_env(original)
    assert branch.trainer.model is not original.trainer.model
    assert branch.trainer.optimizer is not original.trainer.optimizer
    assert branch.trainer.sampler is not original.trainer.sampler
    assert branch.trainer.validation_generator is not original.trainer.validation_generator
    assert branch.trainer.data is original.trainer.data


def test_a_branch_carries_no_step_hooks_or_info_sources_of_the_original():
    original = _played(0, [2])
    calls: list[int] = []
    original.trainer.add_step_hook(lambda info: calls.append(1))
    original.add_info_source(lambda: {"seen": 1})
    branch = branch_env(original)
    _, _, _, _, info = branch.step(3)
    assert calls == [] and "seen" not in info


def test_branching_something_else_names_what_it_needs():
    with pytest.raises(TypeError, match="BatchSizeEnv"):
        branch_env(object())
