"""The population env: N inner networks trained in lockstep (arbiter_env.vector.population)."""

import ast
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import arbiter_env
from arbiter_env.agents.population_vec_env import PopulationEnv, make_population_env
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.tasks.families import TaskFamily
from arbiter_env.vector.batched import MemberSgd, SgdSettings
from arbiter_env.vector.batched import cascade_sum as _cascade_sum
from arbiter_env.vector.population import Population, PopulationVectorEnv


def _relu_mlp(shape, classes):  # the built-in MLP's layer pattern: the batched path
    return nn.Sequential(nn.Flatten(), nn.Linear(shape[0], 16), nn.ReLU(), nn.Linear(16, classes))


@pytest.fixture
def relu_task(tiny_task):
    return tiny_task.replace(model=_relu_mlp, num_intervals=5)


def _compare(task, statistics, steps, *, resets=(), n=3, options=None, actions=None, **kwargs):
    """Steps a population and single envs with the same seeds and actions side by side.

    The contract: every observation, reward, termination and ``info`` bit for bit the single
    env's, over whole episodes.
    """
    population = Population(task, n, gradient_statistics=statistics, **kwargs)
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
            assert stepped[1:4] == outcome[1:4], (t, stepped[1:4], outcome[1:4])
            assert str(stepped[4]) == str(outcome[4])  # str: NaN entries compare equal
    for single, batched in pairs:
        assert single.tobytes() == batched.tobytes()
    return population


@pytest.mark.parametrize("statistics", ["training", "probe"])
def test_mlp_members_follow_single_envs_bit_for_bit(relu_task, statistics):
    population = _compare(relu_task, statistics, 5)
    assert population.batched


def test_members_reset_at_different_times_keep_their_own_optimizer_state(relu_task):
    # Member 1 restarts after two intervals while the others go on: its fresh momentum buffer
    # and the others' running ones are updated in the same batched step.
    _compare(relu_task, "training", 4, resets=[(2, 1)])


def test_a_diverging_member_ends_its_episode_as_a_single_env_does(relu_task):
    task = relu_task.replace(optimizer={"name": "sgd", "lr": 1e30, "momentum": 0.9})
    population = _compare(task, "training", 1)
    with pytest.raises(RuntimeError, match="episode has ended"):
        population.step([0, 0, 0])


def test_networks_the_batched_path_cannot_train_step_one_by_one_as_single_envs(
    tiny_task, cnn_task, dropout_task
):
    # Tanh, a convolution, dropout, Adam: each member runs the single env's own phases.
    adam = tiny_task.replace(optimizer={"name": "adam", "lr": 0.01})
    for task in (tiny_task, cnn_task, dropout_task, adam):
        population = _compare(task, "training", task.num_intervals)
        assert not population.batched, task.name


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
    monkeypatch.setattr("arbiter_env.vector.population.keep_freed_memory", lambda: calls.append(1))
    Population(relu_task, 1, tune_allocator=False)
    assert calls == []
    Population(relu_task, 1)
    assert calls == [1]


def test_members_with_a_scheduled_learning_rate_step_one_by_one_like_single_envs(relu_task):
    # The batched step applies one rate per interval, so a schedule's per-update rates send the
    # members through the single env's own phases.
    population = _compare(relu_task.replace(lr_schedule="cosine"), "training", 4)
    assert not population.batched


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
        "training",
        4,
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
    plans = [env.plan_interval(2) for env in population.envs]
    groups = population._groups(range(5), plans)
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


POPULATION_MODULES = (
    "arbiter_env/vector/population.py",
    "arbiter_env/vector/groups.py",
    "arbiter_env/vector/batched.py",
    "agents/population_vec_env.py",
)


def _private_accesses(source: str) -> list[str]:
    """``obj._name`` (``obj`` not ``self``/``cls``), ``getattr(obj, "_name")`` and ``vars(obj)``.

    torch's ``_foreach`` and ATen kernels are the library's own fast paths, not another
    object's state, and are allowed.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if node.attr.startswith("__") and node.attr.endswith("__"):
                continue
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            owner = ast.unparse(node.value)
            if owner in ("self", "cls") or (isinstance(root, ast.Name) and root.id == "torch"):
                continue
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name == "vars" or (
                name in ("getattr", "setattr", "delattr", "hasattr")
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_")
            ):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_population_modules_touch_no_private_attribute_of_another_object():
    root = Path(__file__).resolve().parents[2]
    for module in POPULATION_MODULES:
        assert _private_accesses((root / module).read_text()) == [], module


def test_the_private_access_check_finds_each_kind_of_access():
    source = (
        "env._done\nself.population._plan()\ngetattr(t, '_trainable')\nvars(t)['train'] = f\n"
        "self._ok\ntorch._foreach_add_(a, b)\ntorch.ops.aten._log_softmax_backward_data\n"
    )
    assert sorted(line.split(":")[0] for line in _private_accesses(source)) == [
        "line 1",
        "line 2",
        "line 3",
        "line 4",
    ]


def test_members_under_the_adascale_rule_follow_single_envs_bit_for_bit(relu_task):
    """The rule reads each member's own latest statistics, as a single env's trainer does."""
    _compare(relu_task, "training", 4, lr_scaling="adascale")
