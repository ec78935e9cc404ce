"""Gradient statistics from the training batches (arbiter_env.training.stats.steps)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.training.network import linear_layers_of
from arbiter_env.training.stats import (
    GradientStatistics,
    LinearStepRecorder,
    gradient_statistics,
    microbatch_backward,
    per_sample_gradients,
    statistics_from_sums,
)
from arbiter_env.training.trainer import InnerTrainer


class _Branchy(nn.Module):
    """A Linear-only network that is not an nn.Sequential, so the recorder must use hooks; its
    layers are called in an order other than their registration order."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(6, 3)
        self.hidden = nn.Linear(4, 6)

    def forward(self, x):
        return self.head(torch.tanh(self.hidden(x)))


def _model(kind: str) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(7)
        if kind == "chain":
            return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
        return _Branchy().double()


def _layers(model: nn.Module) -> list[nn.Linear]:
    layers = linear_layers_of(model)
    assert layers is not None
    return layers


def _measured(statistics: GradientStatistics | None) -> GradientStatistics:
    assert statistics is not None
    return statistics


def _grad(parameter: torch.Tensor) -> torch.Tensor:
    assert parameter.grad is not None
    return parameter.grad


def _data(n: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    # Labels that depend on the inputs, so the true gradient is not small against the noise.
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


@pytest.mark.parametrize("kind", ["chain", "hooks"])
def test_one_recorded_step_gives_the_exact_per_sample_statistics_and_gradient(kind):
    model = _model(kind)
    x, y = _data(16)
    expected = gradient_statistics(model, x, y, method="vmap")
    F.cross_entropy(model(x), y).backward()
    expected_grads = [_grad(p).clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)

    recorder = LinearStepRecorder(model, _layers(model))
    assert (recorder._chain is not None) == (kind == "chain")
    recorder.start()
    recorder.record_step(x, y)
    recorder.stop()
    got = _measured(recorder.result(reference_size=16))

    for p, g in zip(model.parameters(), expected_grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=0)
    assert got.trace_covariance == pytest.approx(expected.trace_covariance, rel=1e-10)
    assert got.grad_sq_norm == pytest.approx(expected.grad_sq_norm, rel=1e-10)
    assert got.mean_grad_norm == pytest.approx(expected.mean_grad_norm, rel=1e-10)
    assert not recorder._handles  # stop() removed the hooks


def test_microbatch_backward_matches_the_microbatch_probe_and_writes_the_batch_gradient():
    model = _model("chain")
    x, y = _data(16)
    expected = gradient_statistics(model, x, y, method="microbatch", num_microbatches=4)
    F.cross_entropy(model(x), y).backward()
    expected_grads = [_grad(p).clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)

    loss, sums = microbatch_backward(model, list(model.parameters()), x, y, 4)
    assert sums is not None
    got = _measured(statistics_from_sums(sums, 16))

    assert loss.item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-12)
    for p, g in zip(model.parameters(), expected_grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-14)
    assert got.trace_covariance == pytest.approx(expected.trace_covariance, rel=1e-10)
    assert got.grad_sq_norm == pytest.approx(expected.grad_sq_norm, rel=1e-10)


def test_training_and_probe_estimates_agree_with_the_exact_statistics_in_expectation():
    """Float64, a fixed network, batches drawn with replacement from a population of 40: the
    averages of the training-batch estimates (four steps of B=8 per interval) and of the probe
    (P=8) over many intervals match the population's |G|², tr(Σ) and E‖ḡ_P‖² within four
    standard errors, and so agree with each other in expectation."""
    model = _model("chain")
    x, y = _data(40, seed=1)
    grads = per_sample_gradients(model, x, y)
    mean = grads.mean(0)
    true_grad_sq = mean.dot(mean).item()
    true_trace = (grads - mean).square().sum(1).mean().item()  # population covariance
    probe = 8
    recorder = LinearStepRecorder(model, _layers(model))
    generator = torch.Generator().manual_seed(0)
    training, probed = [], []
    for _ in range(400):
        recorder.start()
        for _ in range(4):
            index = torch.randint(40, (8,), generator=generator)
            model.zero_grad(set_to_none=True)
            recorder.record_step(x[index], y[index])  # no optimizer step: the network is fixed
        recorder.stop()
        training.append(_measured(recorder.result(reference_size=probe)))
        index = torch.randint(40, (probe,), generator=generator)
        probed.append(gradient_statistics(model, x[index], y[index], method="linear"))

    def check(estimates, name, truth):
        values = torch.tensor([getattr(s, name) for s in estimates], dtype=torch.float64)
        values = values.square() if name == "mean_grad_norm" else values
        error = values.std().item() / math.sqrt(len(values))
        assert abs(values.mean().item() - truth) < 4 * error, (name, values.mean(), truth)

    # The clamps (|G|² >= 1e-12, tr(Σ) >= 0) would bias the averages: they must not act here.
    assert all(s.grad_sq_norm > 1e-9 and s.trace_covariance > 0 for s in training)
    for estimates in (training, probed):
        check(estimates, "grad_sq_norm", true_grad_sq)
        check(estimates, "trace_covariance", true_trace)
        check(estimates, "mean_grad_norm", true_grad_sq + true_trace / probe)


def test_an_optimizer_that_changes_grad_in_place_is_detected():
    model = _model("chain")
    x, y = _data(8)
    recorder = LinearStepRecorder(model, _layers(model))
    recorder.start()
    recorder.record_step(x, y)
    _grad(next(model.parameters())).mul_(2)  # e.g. clipping in place
    recorder.stop()
    assert recorder.result(8) is None


def _trainer(task, statistics):
    trainer = InnerTrainer(task, statistics=statistics)
    trainer.reset(3)
    return trainer


def test_training_statistics_leave_the_trajectory_bit_identical(tiny_task):
    trainers = [_trainer(tiny_task, s) for s in ("training", "probe")]
    for trainer in trainers:
        for batch_size in (4, 16, 64, 5):
            trainer.train(batch_size, 40)
    for a, b in zip(*(t.model.parameters() for t in trainers), strict=True):
        assert torch.equal(a, b)
    assert trainers[0]._last_statistics is not None
    assert trainers[1]._last_statistics is None


def test_step_hooks_that_run_the_network_do_not_disturb_the_recording(tiny_task):
    task = tiny_task.replace(model=lambda shape, classes: _HookedHead(shape[0], classes))
    trainer = _trainer(task, "training")
    calls = []
    trainer.add_step_hook(lambda info: calls.append(info.trainer.model(trainer.data.x_val[:3])))
    trainer.train(8, 40)
    assert calls and trainer._linear_recorder._chain is None
    assert trainer._last_statistics is not None


class _HookedHead(nn.Module):
    def __init__(self, inputs: int, classes: int):
        super().__init__()
        self.body = nn.Linear(inputs, 16)
        self.out = nn.Linear(16, classes)

    def forward(self, x):
        return self.out(torch.relu(self.body(x)))


def test_networks_with_batch_norm_fall_back_to_the_probe(tiny_task):
    def model(shape, classes):
        return nn.Sequential(nn.Linear(shape[0], 8), nn.BatchNorm1d(8), nn.Linear(8, classes))

    trainer = _trainer(tiny_task.replace(model=model), "training")
    trainer.train(8, 40)
    assert trainer._last_statistics is None
    assert trainer.interval_statistics().probe_size == tiny_task.probe_size


def test_linear_networks_with_dropout_record_and_stay_deterministic(dropout_task):
    def run():
        trainer = _trainer(dropout_task, "training")
        trainer.train(8, 40)
        return trainer._last_statistics, [p.clone() for p in trainer.model.parameters()]

    (first, params_a), (second, params_b) = run(), run()
    assert first is not None and first == second
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b, strict=True))


def test_a_cnn_takes_microbatch_statistics_and_nearly_the_same_trajectory(cnn_task):
    task = cnn_task
    trainers = [_trainer(task, s) for s in ("training", "probe")]
    for trainer in trainers:
        trainer.train(16, 40)
    assert trainers[0]._microbatch_statistics
    statistics = trainers[0].interval_statistics()
    assert math.isfinite(statistics.trace_covariance)
    # The recorded step sums four micro-batch gradients: the same up to float32 rounding.
    for a, b in zip(*(t.model.parameters() for t in trainers), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("statistics", ["training", "probe"])
def test_same_seed_and_actions_give_the_same_trajectory(tiny_task, statistics):
    def run():
        env = BatchSizeEnv(tiny_task, gradient_statistics=statistics, record_wall_time=False)
        observations = [env.reset(seed=11)[0]]
        for action in (0, 3, 1, 4):
            observations.append(env.step(action)[0])
        return observations

    for a, b in zip(run(), run(), strict=True):
        assert a.tobytes() == b.tobytes()


def test_unknown_statistics_source_is_rejected(tiny_task):
    with pytest.raises(ValueError, match="Unknown statistics"):
        InnerTrainer(tiny_task, statistics="exact")  # type: ignore[arg-type]
