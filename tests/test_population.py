"""The population env: N inner networks trained in lockstep (arbiter_env.population)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import arbiter_env
from arbiter_env.agents.population_vec_env import PopulationEnv, make_population_env
from arbiter_env.batched import (
    MemberSgd,
    SgdSettings,
    mlp_loss_and_grads,
    sgd,
    stack_padded,
    unpadded,
)
from arbiter_env.batched import cascade_sum as _cascade_sum
from arbiter_env.env import BatchSizeEnv
from arbiter_env.population import Population, PopulationVectorEnv
from arbiter_env.population_group import MemberGroup
from arbiter_env.tasks.families import TaskFamily


def _relu_mlp(shape, classes):  # the built-in MLP's layer pattern: the batched "mlp" path
    return nn.Sequential(nn.Flatten(), nn.Linear(shape[0], 16), nn.ReLU(), nn.Linear(16, classes))


@pytest.fixture
def relu_task(tiny_task):
    return tiny_task.replace(model=_relu_mlp, num_intervals=5)


def _compare(
    task,
    path,
    statistics,
    steps,
    *,
    exact,
    resets=(),
    n=3,
    options=None,
    actions=None,
    group_by="architecture",
    **kwargs,
):
    """Steps a population and single envs with the same seeds and actions side by side."""
    population = Population(
        task, n, path=path, gradient_statistics=statistics, group_by=group_by, **kwargs
    )
    singles = [BatchSizeEnv(task, gradient_statistics=statistics, **kwargs) for _ in range(n)]
    ladder = singles[0].ladder.size
    if actions is None:
        actions = np.random.default_rng(0).integers(0, ladder, size=(steps, n))
    options = options or [None] * n
    pairs = []
    for i, env in enumerate(singles):
        pairs.append(
            (
                env.reset(seed=40 + i, options=options[i])[0],
                population.reset_member(i, 40 + i, options[i])[0],
            )
        )
    for t in range(steps):
        for member in (m for step, m in resets if step == t):
            pairs.append(
                (singles[member].reset(seed=90)[0], population.reset_member(member, 90)[0])
            )
        outcomes = population.step(list(actions[t]))
        for env, action, outcome in zip(singles, actions[t], outcomes, strict=True):
            stepped = env.step(action)
            pairs.append((stepped[0], outcome[0]))
            if exact:
                assert stepped[1:4] == outcome[1:4], (t, stepped[1:4], outcome[1:4])
            else:
                assert stepped[2:4] == outcome[2:4], (t, stepped[2:4], outcome[2:4])
                np.testing.assert_allclose(outcome[1], stepped[1], rtol=1e-5, atol=1e-5)
            assert stepped[4].get("family_instance") == outcome[4].get("family_instance")
    for single, batched in pairs:
        if exact:
            assert single.tobytes() == batched.tobytes()
        else:
            # 1e-5 relative; entries near zero that are differences (the log loss change, a
            # cosine of cancelling terms) get the same bound in absolute terms.
            np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)
    return population


@pytest.mark.parametrize("statistics", ["training", "probe"])
def test_mlp_members_follow_single_envs_bit_for_bit(relu_task, statistics):
    population = _compare(relu_task, "mlp", statistics, 5, exact=True)
    assert population.path == "mlp"


def test_members_reset_at_different_times_keep_their_own_optimizer_state(relu_task):
    # Member 1 restarts after two intervals while the others go on: its fresh momentum buffer
    # and the others' running ones are updated in the same batched step.
    _compare(relu_task, "mlp", "training", 4, exact=True, resets=[(2, 1)])


def test_a_diverging_member_ends_its_episode_as_a_single_env_does(relu_task):
    task = relu_task.replace(optimizer={"name": "sgd", "lr": 1e30, "momentum": 0.9})
    population = _compare(task, "mlp", "training", 1, exact=True)
    assert all(env._done for env in population.envs)


def test_the_general_path_matches_single_envs_on_the_first_intervals(tiny_task):
    # torch.func batches the products (bmm rounds small ones differently from mm), and sums the
    # per-sample statistics in another order (vmap of per-sample gradients, not ‖δ‖²‖a‖²).
    population = _compare(tiny_task, "func", "training", 3, exact=False)
    assert population.path == "func"


def test_the_general_path_trains_a_cnn_like_single_envs(cnn_task):
    # Micro-batch statistics: the single env sums micro-batch gradients on the recorded steps.
    _compare(cnn_task, "auto", "training", 2, exact=False)


def test_nll_cascade_sum_reproduces_torch_exactly():
    generator = torch.Generator().manual_seed(0)
    for n in (1, 2, 16, 17, 33, 256, 257, 300, 513):
        log_probs = torch.log_softmax(torch.randn(4, n, 5, generator=generator) * 3, 2)
        targets = torch.randint(5, (4, n), generator=generator)
        picked = log_probs.gather(2, targets.unsqueeze(2)).squeeze(2)
        expected = torch.stack([nn.functional.nll_loss(log_probs[k], targets[k]) for k in range(4)])
        assert torch.equal(_cascade_sum(-picked) / n, expected), n


def test_sb3_ppo_trains_on_the_population_and_episodes_restart(relu_task):
    from stable_baselines3 import PPO

    env = make_population_env(relu_task, n_envs=4, seed=0)
    assert isinstance(env, PopulationEnv)
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=16, n_epochs=1, seed=0)
    model.learn(32)
    env.reset()
    for _ in range(relu_task.num_intervals - 1):
        _, _, dones, _ = env.step(np.zeros(4, dtype=np.int64))
        assert not dones.any()
    observations, rewards, dones, infos = env.step(np.zeros(4, dtype=np.int64))
    assert dones.all() and rewards.shape == (4,)
    assert all("terminal_observation" in info and "test_accuracy" in info for info in infos)
    assert observations[:, 0].max() == 0.0  # restarted: progress is back to zero


def test_gymnasium_make_vec_builds_the_population(relu_task):
    envs = gym.make_vec(
        arbiter_env.ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", task=relu_task
    )
    assert isinstance(envs.unwrapped, PopulationVectorEnv)
    observations, _ = envs.reset(seed=7)
    single = BatchSizeEnv(relu_task)
    assert observations[1].tobytes() == single.reset(seed=8)[0].tobytes()
    for _ in range(relu_task.num_intervals):
        observations, rewards, terminations, truncations, _ = envs.step(np.array([1, 2]))
    assert terminations.all() and not truncations.any()
    observations, rewards, terminations, _, _ = envs.step(np.array([1, 2]))  # autoreset
    assert not terminations.any() and rewards.tolist() == [0.0, 0.0]
    assert observations[:, 0].max() == 0.0


def test_the_population_tunes_the_allocator_unless_told_not_to(relu_task, monkeypatch):
    calls = []
    monkeypatch.setattr("arbiter_env.population.keep_freed_memory", lambda: calls.append(1))
    Population(relu_task, 1, tune_allocator=False)
    assert calls == []
    Population(relu_task, 1)
    assert calls == [1]


def test_unsupported_tasks_are_rejected_with_the_reason(relu_task, dropout_task):
    with pytest.raises(ValueError, match="batched SGD"):
        Population(relu_task.replace(optimizer={"name": "adam", "lr": 0.01}), 2)
    population = Population(dropout_task, 2)
    with pytest.raises(ValueError, match="no batch norm, dropout"):
        population.reset_member(0, 0)
    with pytest.raises(ValueError, match="path='mlp' needs"):
        Population(dropout_task, 2, path="mlp")


def test_scheduled_learning_rates_are_rejected_as_the_population_applies_one_per_interval(
    relu_task,
):
    with pytest.raises(ValueError, match="lr_schedule 'cosine'"):
        Population(relu_task.replace(lr_schedule="cosine"), 2)


# A family of digits MLPs small enough for a test: two widths, both momenta, two budgets.
SMALL_FAMILY = TaskFamily(
    name="test-digits-family",
    base_task="digits-mlp",
    lr_range=(0.02, 0.2),
    momenta=(0.0, 0.9),
    widths=(8, 16),
    epochs=(0.2, 0.3),
    num_instances=12,
    seed=3,  # each split then has two instances of one width and budget, and another width
)
FAMILY_KWARGS: dict = {"task_kwargs": {"num_intervals": 4}}


def _family_members(split):
    """Instances for five members: one twice, one of the same width and budget with other SGD
    settings, one of the same width and another budget (where the split has one), another width.
    """
    instances = SMALL_FAMILY.instances(split)
    first = instances[0]
    same = next(i for i in instances[1:] if (i.width, i.epochs) == (first.width, first.epochs))
    longer = next(
        (i for i in instances if i.width == first.width and i.epochs != first.epochs), same
    )
    other_width = next(i for i in instances if i.width != first.width)
    return [first, first, same, longer, other_width]


@pytest.mark.parametrize("split", ["train", "test"])
def test_family_members_follow_single_envs_of_the_family_bit_for_bit(split):
    # Each member draws its instance with its own seed, as the single env does. Members 0-3
    # share a width and take the same sizes: one batched forward and backward per step for
    # members of two learning rates and momenta, and (train split) of two interval lengths.
    chosen = _family_members(split)
    options: list[dict | None] = [{"family_instance": i.index} for i in chosen]
    options.append(None)  # member 5 draws its own
    rows = np.random.default_rng(1).integers(0, 7, size=(4, 3))
    actions = np.concatenate([rows[:, :1].repeat(4, 1), rows[:, 1:]], axis=1)
    population = _compare(
        SMALL_FAMILY,
        "mlp",
        "training",
        4,
        exact=True,
        n=6,
        options=options,
        actions=actions,
        family_split=split,
        **FAMILY_KWARGS,
    )
    members = population.envs
    assert [env.family_instance.index for env in members[:5]] == [i.index for i in chosen]
    assert all(env.family_split == split for env in members)
    assert members[0].trainer.data is members[4].trainer.data  # one copy of the data
    assert chosen[0].momentum != chosen[2].momentum


def test_family_members_are_grouped_by_architecture_and_batch_size():
    population = Population(SMALL_FAMILY, 5, **FAMILY_KWARGS)
    chosen = _family_members("train")
    assert chosen[3].epochs != chosen[0].epochs
    for index, instance in enumerate(chosen):
        population.reset_member(index, index, {"family_instance": instance.index})
    groups = population._plan([2, 2, 2, 2, 2])
    assert sorted(sorted(g.members) for g in groups) == [[0, 1, 2, 3], [4]]
    shared = next(g for g in groups if len(g.members) == 4)
    assert shared.members[0] == 3  # the longest interval first
    assert len(shared.lengths()) == 2
    assert len(shared.runs(0, 4)) == 3  # three instances' SGD settings: one update each


@pytest.mark.parametrize(
    ("momenta", "extra"),
    [((0.0, 0.9, 0.9, 0.0), {}), ((0.5, 0.9, 0.8, 0.9), {"nesterov": True, "weight_decay": 1e-3})],
)
def test_one_update_with_each_members_lr_and_momentum_equals_torch_sgd(momenta, extra):
    generator = torch.Generator().manual_seed(0)
    lrs = (0.05, 0.1, 0.013, 0.2)
    shapes = [(16, 64), (16,), (10, 16)]
    params = [[torch.randn(s, generator=generator) for s in shapes] for _ in lrs]
    optimizers = [
        torch.optim.SGD(own, lr=lr, momentum=m, **extra)
        for own, lr, m in zip(params, lrs, momenta, strict=True)
    ]
    stacked = [torch.stack([own[k].clone() for own in params]) for k in range(len(shapes))]
    buffers = [torch.zeros_like(s) for s in stacked]
    settings = [SgdSettings(lr=lr, momentum=m, **extra) for lr, m in zip(lrs, momenta, strict=True)]
    update = MemberSgd.of(settings, torch.device("cpu"))
    assert update is not None
    for step in range(3):
        grads = [torch.randn(s.shape, generator=generator) for s in stacked]
        for j, (own, optimizer) in enumerate(zip(params, optimizers, strict=True)):
            for p, g in zip(own, grads, strict=True):
                p.grad = g[j].clone()
            optimizer.step()
        fresh = torch.ones(len(lrs), dtype=torch.bool) if step == 0 else None
        update.step(stacked, grads, buffers, fresh)
        for k in range(len(shapes)):
            assert torch.equal(stacked[k], torch.stack([own[k] for own in params])), (step, k)


@pytest.mark.parametrize("split", ["train", "test"])
def test_the_agents_population_env_draws_from_the_family_split_it_is_asked_for(split):
    from arbiter_env.agents.sb3 import load_agent_config, make_vec_env

    config = load_agent_config(
        "ppo",
        overrides=[
            "env.task=digits-mlp-family",
            "vec_env=population",
            "n_envs=2",
            "env.task_kwargs={epochs: 0.2, num_intervals: 2}",
        ],
    )
    venv = make_vec_env(config, family_split=split)
    assert venv.get_attr("family_split") == [split, split]
    venv.reset()
    split_indices = {i.index for i in venv.get_attr("family_instances")[0]}
    assert {env.family_instance.index for env in venv.unwrapped.envs} <= split_indices


# --- group_by="padded": MLPs of one family that differ only in hidden width train together ------


@pytest.mark.parametrize("split", ["train", "test"])
def test_padded_family_members_follow_single_envs_within_1e_5(split, monkeypatch):
    # Members of widths 8 and 16 (and of two budgets, lrs and momenta) take the same sizes and
    # train in one zero-padded stack. The real parameters follow the same arithmetic, but the
    # products over a padded inner dimension are blocked differently, so the last bits of a
    # float may differ: every observation, reward and flag within 1e-5 of the single env's.
    padding_seen = []
    results = MemberGroup._results

    def check_padding_stays_zero(group, losses, recorded, stacked):
        for j, trainer in enumerate(group.trainers):
            for real, padded in zip(trainer._trainable, stacked, strict=True):
                mask = torch.ones(padded.shape[1:], dtype=torch.bool)
                mask[tuple(slice(0, n) for n in real.shape)] = False
                padding_seen.append(bool(mask.any()))
                assert torch.count_nonzero(padded[j][mask]) == 0
        return results(group, losses, recorded, stacked)

    monkeypatch.setattr(MemberGroup, "_results", check_padding_stays_zero)
    chosen = _family_members(split)
    options: list[dict | None] = [{"family_instance": i.index} for i in chosen]
    actions = np.random.default_rng(2).integers(0, 7, size=(4, 1)).repeat(5, 1)
    population = _compare(
        SMALL_FAMILY,
        "mlp",
        "training",
        4,
        exact=False,
        n=5,
        options=options,
        actions=actions,
        group_by="padded",
        family_split=split,
        **FAMILY_KWARGS,
    )
    widths = {env.trainer.model[1].weight.shape[0] for env in population.envs}
    assert widths == {8, 16} and any(padding_seen)


def test_padded_grouping_puts_every_width_of_a_family_in_one_group():
    assert Population.default_group_by == "architecture"  # exact unless asked
    chosen = _family_members("train")
    counts = {}
    for group_by in (None, "padded"):  # None: the default
        population = Population(SMALL_FAMILY, 5, group_by=group_by, **FAMILY_KWARGS)
        for index, instance in enumerate(chosen):
            population.reset_member(index, index, {"family_instance": instance.index})
        counts[population.group_by] = len(population._plan([2] * 5))
    assert counts == {"architecture": 2, "padded": 1}
    with pytest.raises(ValueError, match="group_by"):
        Population(SMALL_FAMILY, 2, group_by="width", **FAMILY_KWARGS)


def test_padded_units_stay_zero_and_add_nothing_to_gradients_or_statistics():
    # Nesterov momentum and weight decay: the padded rows and columns get exact zeros in the
    # gradients, the buffers and the parameters, and the real part and the statistics sums
    # equal the unpadded network's to float rounding.
    generator = torch.Generator().manual_seed(0)
    widths, inputs, classes, batch = (5, 12), 7, 3, 9
    members = [
        [
            torch.randn(w, inputs, generator=generator),
            torch.randn(w, generator=generator),
            torch.randn(classes, w, generator=generator),
            torch.randn(classes, generator=generator),
        ]
        for w in widths
    ]
    stacked = [stack_padded([m[k] for m in members]) for k in range(4)]
    buffers = [torch.zeros_like(s) for s in stacked]
    singles = [[p.clone().unsqueeze(0) for p in m] for m in members]
    single_buffers = [[torch.zeros_like(p) for p in m] for m in singles]
    settings = SgdSettings(lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True)
    update = MemberSgd.of([settings, settings], torch.device("cpu"))
    assert update is not None
    for step in range(5):
        x = torch.randn(2, batch, inputs, generator=generator)
        y = torch.randint(classes, (2, batch), generator=generator)
        picked, grads, sums = mlp_loss_and_grads(stacked, x, y, record=True)
        fresh = torch.ones(2, dtype=torch.bool) if step == 0 else None
        update.step(stacked, grads, buffers, fresh)
        assert sums is not None
        for j, own in enumerate(singles):
            p_j, g_j, s_j = mlp_loss_and_grads(own, x[j : j + 1], y[j : j + 1], record=True)
            assert s_j is not None
            sgd(own, g_j, single_buffers[j], fresh if fresh is None else fresh[:1], settings)
            torch.testing.assert_close(picked[j], p_j[0], rtol=1e-5, atol=1e-6)
            for total, alone in zip(sums, s_j, strict=True):
                torch.testing.assert_close(total[j], alone[0], rtol=1e-5, atol=0)
            for tensors, alones in ((stacked, own), (grads, g_j), (buffers, single_buffers[j])):
                for padded, alone in zip(tensors, alones, strict=True):
                    real = unpadded(padded[j], alone.shape[1:])
                    torch.testing.assert_close(real, alone[0], rtol=1e-5, atol=1e-6)
                    # the rest is exactly 0
                    assert torch.count_nonzero(padded[j]) == torch.count_nonzero(real)


def test_members_under_the_adascale_rule_follow_single_envs_bit_for_bit(relu_task):
    """The rule reads each member's own latest statistics, as a single env's trainer does."""
    _compare(relu_task, "mlp", "training", 4, exact=True, lr_scaling="adascale")
