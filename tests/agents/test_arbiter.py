"""Tests of Arbiter, the hyper-learning batch-size agent (arbiter_env.agents.arbiter)."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from arbiter_env.agents.arbiter import (
    Arbiter,
    ArbiterConfig,
    Milestone,
    WarmupError,
    batch_size_to_logit,
    build_phi,
    logit_to_batch_size,
)
from arbiter_env.agents.run_arbiter import load_run_config, run_arbiter
from arbiter_env.controllers import make_controller, run_episode
from arbiter_env.envs.batch_size import BatchSizeEnv

REPO = Path(__file__).resolve().parents[2]
SMALL_DIGITS = {"epochs": 2, "num_intervals": 4}


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # These networks are tiny: intra-op threads only add synchronisation, and on a busy shared
    # machine they slow a step down by an order of magnitude. Restored after the module.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def started(env: BatchSizeEnv, seed: int = 0, **kwargs) -> Arbiter:
    """An agent whose episode has started (env reset, α reset, φ warmed up)."""
    observation, _ = env.reset(seed=seed)
    agent = Arbiter(env, **kwargs)
    agent.predict(observation, episode_start=np.array([True]))
    return agent


# --- stretched logit ------------------------------------------------------------------------------


@pytest.mark.parametrize(("b_min", "b_max"), [(8, 512), (1, 2), (4, 64), (3, 1000)])
def test_stretched_logit_round_trips_including_bounds(b_min, b_max):
    for size in range(b_min, b_max + 1):
        assert logit_to_batch_size(batch_size_to_logit(size, b_min, b_max), b_min, b_max) == size
    assert batch_size_to_logit(b_max, b_min, b_max) == math.inf
    assert logit_to_batch_size(math.inf, b_min, b_max) == b_max
    assert logit_to_batch_size(-math.inf, b_min, b_max) == b_min
    assert logit_to_batch_size(-1e6, b_min, b_max) == b_min
    assert logit_to_batch_size(1e6, b_min, b_max) == b_max
    for s in np.linspace(-12, 12, 97):
        size = logit_to_batch_size(s, b_min, b_max)
        assert b_min <= size <= b_max
        assert logit_to_batch_size(batch_size_to_logit(size, b_min, b_max), b_min, b_max) == size


def test_stretched_logit_follows_the_paper_formula_and_rejects_bad_input():
    for s in (-3.0, -0.5, 0.0, 0.7, 2.5):
        expected = math.floor((512 - 8) / (1 + math.exp(-s)) + 8)
        assert logit_to_batch_size(s, 8, 512) == expected
    assert batch_size_to_logit(16, 16, 16) == 0.0
    assert logit_to_batch_size(3.0, 16, 16) == 16
    with pytest.raises(ValueError, match="outside"):
        batch_size_to_logit(7, 8, 512)
    with pytest.raises(ValueError, match="NaN"):
        logit_to_batch_size(math.nan, 8, 512)


# --- φ, configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64,), (1, 40), (3, 8, 8)])
def test_phi_fits_the_input_shape(shape):
    phi = build_phi(shape, 4, hidden=8)
    assert phi(torch.zeros(5, *shape)).shape == (5, 4)
    assert any(isinstance(m, torch.nn.Linear) for m in phi.modules())
    if len(shape) > 1:
        assert any(isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d) for m in phi.modules())


def test_config_rejects_bad_values_and_has_the_paper_preset():
    with pytest.raises(ValueError, match="meta_period"):
        ArbiterConfig(meta_period=0)
    with pytest.raises(ValueError, match="phi_lr"):
        ArbiterConfig(phi_lr=-1.0)
    paper = ArbiterConfig.paper()
    assert (paper.phi_lr, paper.alpha_lr, paper.weight_decay, paper.num_candidates) == (
        1e-5,
        1e-4,
        5e-4,
        4,
    )


def test_agent_config_file_matches_the_dataclass():
    from arbiter_env.config import load_yaml

    assert load_yaml(ArbiterConfig, REPO / "configs/agents/arbiter.yaml") == ArbiterConfig()


# --- meta-gradient --------------------------------------------------------------------------------


def test_meta_gradient_reaches_phi_alpha_and_map_and_never_the_inner_weights(tiny_task):
    env = BatchSizeEnv(tiny_task)
    agent = started(env)
    trainer = env.trainer
    inputs, targets = trainer.sample_validation(32, generator=agent.generator)
    s = agent.mixed_logit(agent.candidates(inputs))
    loss = agent.response_loss(s, inputs, targets)
    phi_params = list(agent.phi.parameters())
    grads = torch.autograd.grad(loss, [*phi_params, agent.alpha, agent.response_map.weight])
    phi_grads, alpha_grad, map_grad = grads[: len(phi_params)], grads[-2], grads[-1]
    assert sum(g.abs().sum() for g in phi_grads) > 0
    assert all(torch.isfinite(g).all() for g in grads)
    assert alpha_grad.abs().sum() > 0
    assert map_grad.abs().sum() > 0

    inner_before = [p.detach().clone() for p in trainer.model.parameters()]
    meta_before = [p.detach().clone() for p in agent.meta_params]
    agent.meta_step()
    for before, after in zip(inner_before, trainer.model.parameters(), strict=True):
        assert torch.equal(before, after)
        assert after.grad is None
    assert all(p.grad is None for p in agent.meta_params)
    changed = [not torch.equal(b, p) for b, p in zip(meta_before, agent.meta_params, strict=True)]
    assert any(changed[: len(phi_params)]) and changed[-2] and changed[-1]


def test_meta_step_leaves_the_inner_trajectory_and_global_rng_alone(dropout_task):
    """Same seed and actions give the same inner run with and without Arbiter's meta-steps."""
    actions = [16, 8, 32, 16]

    def trajectory(with_agent: bool) -> list[float]:
        env = BatchSizeEnv(dropout_task)
        env.reset(seed=3)
        if with_agent:
            agent = Arbiter(env)
            agent.on_episode_start(None)
            agent.warmup(16)
        losses = [env.step(env.encode(size))[4]["val_loss"] for size in actions]
        if with_agent:
            assert agent.meta_steps > 0
        return losses

    global_state = torch.get_rng_state()
    assert trajectory(True) == trajectory(False)
    assert torch.equal(torch.get_rng_state(), global_state)


def test_float64_finite_difference_of_the_meta_objective(tiny_task):
    env = BatchSizeEnv(tiny_task)
    agent = started(env)
    env.trainer.model.double()
    agent.response_map.double()
    inputs, targets = env.trainer.sample_validation(24, generator=agent.generator)
    inputs = inputs.double()

    def objective(s: torch.Tensor) -> torch.Tensor:
        return agent.response_loss(s, inputs, targets)

    for value in (-1.3, 0.0, 0.8):
        s = torch.tensor(value, dtype=torch.float64, requires_grad=True)
        (analytic,) = torch.autograd.grad(objective(s), s)
        eps = 1e-6
        with torch.no_grad():
            numeric = (objective(s + eps) - objective(s - eps)) / (2 * eps)
        assert analytic.item() != 0.0
        assert analytic.item() == pytest.approx(numeric.item(), rel=1e-6, abs=1e-9)
        assert torch.autograd.gradcheck(objective, (s,))


@pytest.mark.parametrize("cap", [None, 5])
def test_response_batch_size_follows_the_previous_meta_steps_logit(tiny_task, cap):
    env = BatchSizeEnv(tiny_task)
    agent = started(env, response_batch_cap=cap)
    drawn = []
    sample = env.trainer.sample_validation

    def recording_sample(n, generator=None):
        drawn.append(n)
        return sample(n, generator)

    env.trainer.sample_validation = recording_sample
    previous_logits = []
    for _ in range(3):
        previous_logits.append(float(agent._search.last_logit))
        agent.meta_step()
    sizes = [logit_to_batch_size(s, 4, 64) for s in previous_logits]
    if cap is not None:
        sizes = [min(size, cap) for size in sizes]
    # One draw per meta-step: φ's examples, then the response batch of B(s of the step before).
    assert drawn == [agent.config.phi_batch_size + size for size in sizes]
    # The first meta-step sizes its batch from the warm-up's s, which decodes to the start size.
    assert abs(logit_to_batch_size(previous_logits[0], 4, 64) - tiny_task.batch_start) <= (
        agent.config.warmup_tolerance
    )


# --- warm-up --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [4, 16, 40, 64])
def test_warmup_converges_to_the_target_including_the_bounds(tiny_task, target):
    env = BatchSizeEnv(tiny_task)
    agent = started(env)
    iterations = agent.warmup(target)
    assert iterations < agent.config.warmup_max_iters
    inputs, _ = env.trainer.sample_validation(agent.config.phi_batch_size, agent.generator)
    with torch.no_grad():
        s = agent.mixed_logit(agent.candidates(inputs)).item()
    assert abs(logit_to_batch_size(s, 4, 64) - target) <= agent.config.warmup_tolerance + 1


def test_warmup_that_cannot_converge_raises_a_clear_error(tiny_task):
    env = BatchSizeEnv(tiny_task)
    agent = started(env)
    agent.config = dataclasses.replace(
        agent.config, warmup_tolerance=0, warmup_max_iters=3, warmup_lr=1e-6
    )
    with pytest.raises(WarmupError, match="warmup_max_iters"):
        agent.warmup(60)


# --- episodes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["discrete", "continuous", "relative"])
def test_runs_with_each_action_encoding(tiny_task, encoding):
    env = BatchSizeEnv(tiny_task, action_encoding=encoding)
    agent = Arbiter(env, seed=1)
    record = run_episode(env, agent, seed=0)
    assert len(record.batch_sizes) == tiny_task.num_intervals and not record.diverged
    assert record.batch_sizes[0] == tiny_task.batch_start
    assert agent.meta_steps == record.total_updates
    assert [kind for _, _, kind in agent.decisions] == ["start"] + ["arbiter"] * 3
    for _, size, _ in agent.decisions:
        assert tiny_task.batch_min <= size <= tiny_task.batch_max


def test_meta_period_sets_how_often_the_meta_step_runs(tiny_task):
    env = BatchSizeEnv(tiny_task)
    agent = Arbiter(env, meta_period=3)
    record = run_episode(env, agent, seed=0)
    assert agent.meta_steps == record.total_updates // 3 > 0


def test_registered_as_controller_arbiter(tiny_task):
    env = BatchSizeEnv(tiny_task)
    agent = make_controller("arbiter", env, phi_lr=1e-4)
    assert isinstance(agent, Arbiter) and agent.config.phi_lr == 1e-4


def test_step_schedule_warms_up_at_each_milestone(tiny_task):
    env = BatchSizeEnv(tiny_task)
    schedule = [Milestone(0, 8), Milestone(2, 32, lr_factor=0.5)]
    agent = Arbiter(env, schedule=schedule)
    record = run_episode(env, agent, seed=0)
    assert record.batch_sizes[0] == 8 and record.batch_sizes[2] == 32
    assert [kind for _, _, kind in agent.decisions] == [
        "milestone",
        "arbiter",
        "milestone",
        "arbiter",
    ]
    assert len(agent.warmup_iterations) == 2
    assert record.learning_rates[2] == pytest.approx(tiny_task.optimizer.lr * 0.5)


def test_save_and_load_resume_to_identical_decisions(tiny_task, tmp_path):
    env = BatchSizeEnv(tiny_task, action_encoding="continuous")
    agent = Arbiter(env, seed=7).learn(total_timesteps=4)  # one episode of meta-training
    path = tmp_path / "arbiter.pt"
    agent.save(path)
    expected = run_episode(env, agent, seed=11)
    expected_decisions = list(agent.decisions)

    other_env = BatchSizeEnv(tiny_task, action_encoding="continuous")
    resumed = Arbiter.load(path, other_env)
    got = run_episode(other_env, resumed, seed=11)
    assert resumed.decisions == expected_decisions
    assert got.batch_sizes == expected.batch_sizes
    assert got.val_losses == expected.val_losses


def test_seeded_digits_episode_moves_the_batch_size():
    env = BatchSizeEnv("digits-mlp", task_kwargs=SMALL_DIGITS, action_encoding="continuous")
    agent = Arbiter(env, seed=0)
    record = run_episode(env, agent, seed=0)
    assert not record.diverged and math.isfinite(record.final_val_loss)
    assert record.batch_sizes[0] == env.task.batch_start
    assert any(size != env.task.batch_start for size in record.batch_sizes[1:])
    assert record.test_accuracy > 0.5


@pytest.mark.parametrize("name", ["standalone", "step_schedule", "lr_hypergradient"])
def test_each_use_runs_from_its_config(name):
    config = load_run_config(
        REPO / f"configs/arbiter/{name}.yaml", ["seeds=[0]", "task_kwargs.epochs=1"]
    )
    config.num_intervals = 4
    config.schedule = [m for m in config.schedule if m.interval < 4]
    (record,) = run_arbiter(config)
    assert len(record.batch_sizes) == 4 and not record.diverged
    assert record.infos[-1]["arbiter_decisions"]


def test_configs_load():
    for name in ("standalone", "step_schedule", "lr_hypergradient"):
        config = load_run_config(REPO / f"configs/arbiter/{name}.yaml")
        assert config.task == "digits-mlp"
    assert load_run_config(REPO / "configs/arbiter/step_schedule.yaml").schedule


def test_arbiter_refuses_a_task_family_with_a_clear_error():
    env = BatchSizeEnv("digits-mlp-family", task_kwargs={"epochs": 0.2, "num_intervals": 2})
    with pytest.raises(ValueError, match="single tasks"):
        Arbiter(env)


# --- seeding independent of the env's state, tie-breaking, diagnostics, null controls -------------


def _agent_tensors(agent: Arbiter) -> list[torch.Tensor]:
    return [*agent.phi.state_dict().values(), agent.response_map.weight, agent.alpha]


def test_same_seed_gives_the_same_agent_on_a_fresh_and_on_a_used_env(tiny_task):
    fresh = Arbiter(BatchSizeEnv(tiny_task), seed=3)
    used_env = BatchSizeEnv(tiny_task)
    used_env.reset(seed=5)
    used_env.step(used_env.encode(8))
    used = Arbiter(used_env, seed=3)
    for a, b in zip(_agent_tensors(fresh), _agent_tensors(used), strict=True):
        assert torch.equal(a, b)


def test_a_tied_alpha_keeps_the_current_batch_size_instead_of_the_smallest_candidate(tiny_task):
    # meta_period far beyond the episode's updates: no interval has a meta-step, α stays 0.
    env = BatchSizeEnv(tiny_task, action_encoding="continuous")
    agent = Arbiter(env, meta_period=10_000)
    record = run_episode(env, agent, seed=0)
    assert agent.meta_steps == 0
    assert record.batch_sizes == [tiny_task.batch_start] * tiny_task.num_intervals
    assert [kind for _, _, kind in agent.decisions] == ["start"] + ["kept"] * 3


def test_a_partial_tie_goes_to_the_candidate_closest_to_the_current_size(tiny_task):
    env = BatchSizeEnv(tiny_task, action_encoding="continuous")
    agent = started(env)
    with torch.no_grad():
        agent.alpha.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]))
        # φ's last layer outputs constants: candidates 4 (smallest), 64 (largest) and two in between.
        last = agent.phi[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([-6.0, -1.0, 0.0, 6.0]))
    size, kind = agent.decide()
    assert kind == "arbiter" and size == logit_to_batch_size(-6.0, 4, 64)  # 16 is nearer 4 than 63
    assert torch.equal(agent.alpha.detach(), torch.zeros(4))


def test_every_interval_reports_the_search_in_info(tiny_task):
    env = BatchSizeEnv(tiny_task, action_encoding="continuous")
    agent = Arbiter(env, seed=0)
    record = run_episode(env, agent, seed=0)
    for info, updates in zip(record.infos, np.diff([0, *record.updates]), strict=True):
        diagnostics = info["arbiter"]
        assert diagnostics["meta_steps"] == updates
        for key in ("s", "dF_ds", "map_norm", "temperature", "temperature_gain"):
            assert math.isfinite(diagnostics[key]), key
        assert diagnostics["temperature_gain"] == pytest.approx(
            diagnostics["temperature"] * diagnostics["s"]
        )
        sizes = [diagnostics[f"candidate_{i}"] for i in range(4)]
        assert sizes == sorted(sizes) and all(4 <= b <= 64 for b in sizes)
        assert any(diagnostics[f"alpha_{i}"] != 0 for i in range(4))


def test_info_carries_no_arbiter_keys_after_the_agent_is_closed(tiny_task):
    env = BatchSizeEnv(tiny_task)
    agent = Arbiter(env)
    run_episode(env, agent, seed=0)
    agent.close()
    env.reset(seed=1)
    *_, info = env.step(env.encode(16))
    assert "arbiter" not in info


def test_dF_ds_is_the_gradient_of_the_meta_objective_in_s(tiny_task):
    env = BatchSizeEnv(tiny_task)
    agent = started(env, meta_loss_scale=0.0)
    inputs, targets = env.trainer.sample_validation(32)
    s = agent.mixed_logit(agent.candidates(inputs))
    detached = s.detach().requires_grad_()
    (expected,) = torch.autograd.grad(agent.response_loss(detached, inputs, targets), [detached])
    loss, temperature = agent._response_terms(s, inputs, targets)
    agent._descend(loss, s, temperature)
    assert float(agent._search.dF_ds) == pytest.approx(float(expected))
    assert agent._search.meta_steps == 1


def test_temperature_response_scales_the_logits_by_one_plus_c_times_s(tiny_task):
    env = BatchSizeEnv(tiny_task)
    agent = started(env, response="temperature", temperature_init=-0.1)
    assert agent.response_map.weight.shape == (1, 1)
    inputs, targets = env.trainer.sample_validation(20)
    features = env.trainer.penultimate_features(inputs).detach()
    s = torch.tensor(0.7)
    head = env.trainer.head
    logits = (1 - 0.1 * 0.7) * (features @ head.weight.T) + head.bias
    expected = torch.nn.functional.cross_entropy(logits, targets).detach()
    assert float(agent.response_loss(s, inputs, targets).detach()) == pytest.approx(
        float(expected), rel=1e-5
    )
    assert float(agent.temperature(features)) == pytest.approx(-0.1, rel=1e-5)


def test_features_response_temperature_is_the_least_squares_logit_scale(tiny_task):
    env = BatchSizeEnv(tiny_task)
    agent = started(env)
    features = env.trainer.penultimate_features(env.trainer.sample_validation(30)[0]).detach()
    weight = env.trainer.head.weight.detach()
    base = features @ weight.T
    change = (features * agent.response_map.weight.detach().reshape(1, -1)) @ weight.T
    # c minimises ‖change − c·base‖²: the residual is orthogonal to base.
    c = agent.temperature(features)
    assert float(((change - c * base) * base).sum()) == pytest.approx(0.0, abs=1e-5)


def test_frozen_map_null_control_never_changes_the_map(tiny_task):
    env = BatchSizeEnv(tiny_task, action_encoding="continuous")
    agent = Arbiter(env, freeze_map=True)
    initial = agent.response_map.weight.detach().clone()
    run_episode(env, agent, seed=0)
    assert agent.meta_steps > 0
    assert torch.equal(agent.response_map.weight, initial)
    assert all(p is not agent.response_map.weight for p in agent.meta_params)


def test_zero_meta_loss_null_control_leaves_alpha_tied_and_the_size_kept(tiny_task):
    env = BatchSizeEnv(tiny_task, action_encoding="continuous")
    agent = Arbiter(env, meta_loss_scale=0.0)
    record = run_episode(env, agent, seed=0)
    assert agent.meta_steps > 0
    # Weight decay alone gives α no gradient at α = 0: no evidence, no move.
    assert record.batch_sizes == [tiny_task.batch_start] * tiny_task.num_intervals
    assert all(info["arbiter"]["dF_ds"] != 0 for info in record.infos)


def test_null_controls_run_from_a_config_and_by_controller_name(tiny_task):
    env = BatchSizeEnv(tiny_task)
    agent = make_controller("arbiter", env, freeze_map=True, meta_loss_scale=0.0)
    assert agent.config.freeze_map and agent.config.meta_loss_scale == 0.0
    for name in ("null_frozen_map", "null_zero_meta_loss"):
        config = load_run_config(REPO / f"configs/arbiter/{name}.yaml")
        assert config.agent.freeze_map or config.agent.meta_loss_scale == 0.0


def test_invalid_response_settings_are_rejected_with_the_field_name():
    with pytest.raises(ValueError, match="response"):
        ArbiterConfig(response="logits")
    with pytest.raises(ValueError, match="meta_loss_scale"):
        ArbiterConfig(meta_loss_scale=math.nan)


def test_null_control_experiment_builds_every_contestant():
    from arbiter_env.lab.experiments import load_experiment, validate_names

    config = load_experiment(REPO / "configs/experiments/arbiter-null-controls.yaml")
    validate_names(config)
    built = {}
    for spec in config.controllers:
        env = BatchSizeEnv(config.tasks[0], task_kwargs=SMALL_DIGITS, **spec.env)
        built[spec.name] = make_controller(spec.controller, env, **spec.kwargs)
    assert built["arbiter-frozen-map"].config.freeze_map
    assert built["arbiter-zero-meta-loss"].config.meta_loss_scale == 0.0
    assert type(built["arbiter-la"]).__name__ == "ArbiterLAv2"


def test_search_diagnostics_reach_the_interval_log(tmp_path):
    import json

    from arbiter_env.lab.runlog import RunLogger

    env = BatchSizeEnv("digits-mlp", task_kwargs=SMALL_DIGITS, action_encoding="continuous")
    with RunLogger(tmp_path, {"controller": "arbiter"}, wandb_mode="disabled") as log:
        log.run_episode(env, Arbiter(env), 0, controller_name="arbiter")
    rows = [json.loads(line) for line in (tmp_path / "intervals.jsonl").read_text().splitlines()]
    assert len(rows) == SMALL_DIGITS["num_intervals"]
    for row in rows:
        for key in ("s", "dF_ds", "temperature", "map_norm", "candidate_0", "alpha_0"):
            assert isinstance(row[f"arbiter.{key}"], int | float), key
