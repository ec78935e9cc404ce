import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from arbiter_env.training.sampler import EpochSampler
from arbiter_env.training.trainer import InnerTrainer


def _network(trainer: InnerTrainer) -> Any:
    """The trainer's network after reset (typed loosely, to reach its layers by name)."""
    assert trainer.model is not None
    return trainer.model


def test_sampler_covers_each_example_once_per_epoch_with_odd_batch_sizes():
    n = 23
    ids = torch.arange(n)
    sampler = EpochSampler(ids.float()[:, None], ids, torch.Generator().manual_seed(0))
    drawn = []
    for batch_size in [5, 7, 3, 11, 1, 9, 13, 20]:  # 69 = 3 epochs of 23
        _, targets = sampler.next_batch(batch_size)
        assert targets.shape[0] == batch_size
        drawn.extend(targets.tolist())
    assert len(drawn) == 3 * n
    for epoch in range(3):
        assert sorted(drawn[epoch * n : (epoch + 1) * n]) == list(range(n))
    assert sampler.samples_drawn == 3 * n


def test_sampler_order_depends_on_its_generator_only():
    ids = torch.arange(50)

    def order(seed):
        sampler = EpochSampler(ids[:, None], ids, torch.Generator().manual_seed(seed))
        return sampler.next_batch(50)[1].tolist()

    torch.manual_seed(123)
    first = order(1)
    torch.manual_seed(456)
    assert order(1) == first
    assert order(2) != first


def test_train_consumes_exactly_the_samples_asked_for_with_a_short_last_batch(tiny_task):
    trainer = InnerTrainer(tiny_task)
    trainer.reset(seed=0)
    seen = []
    trainer.add_step_hook(lambda info: seen.append(info.batch_size))
    result = trainer.train(batch_size=7, num_samples=50)
    assert result.samples == 50 and result.updates == 8
    assert seen == [7] * 7 + [1]
    assert trainer.samples_seen == 50 and trainer.sampler.samples_drawn == 50
    assert math.isfinite(result.train_loss) and not result.diverged


def test_step_hook_is_called_after_every_update_and_can_be_removed(tiny_task):
    trainer = InnerTrainer(tiny_task)
    trainer.reset(seed=0)
    calls = []
    handle = trainer.add_step_hook(lambda info: calls.append(info.update))
    trainer.train(batch_size=16, num_samples=64)
    assert calls == [1, 2, 3, 4]
    handle.remove()
    trainer.train(batch_size=16, num_samples=64)
    assert calls == [1, 2, 3, 4]


@pytest.mark.parametrize(("rule", "expected"), [("none", 0.1), ("linear", 0.4), ("sqrt", 0.2)])
def test_learning_rate_follows_the_rescaling_rule(tiny_task, rule, expected):
    trainer = InnerTrainer(tiny_task, lr_scaling=rule, base_batch_size=16)
    trainer.reset(seed=0)
    trainer.train(batch_size=64, num_samples=64)
    assert trainer.current_lr == pytest.approx(expected)


def test_set_base_lr_changes_the_next_interval_and_rejects_nonsense(tiny_task):
    trainer = InnerTrainer(tiny_task)
    trainer.reset(seed=0)
    trainer.set_base_lr(0.01)
    trainer.train(batch_size=16, num_samples=16)
    assert trainer.current_lr == pytest.approx(0.01)
    with pytest.raises(ValueError, match="positive"):
        trainer.set_base_lr(-1.0)


def test_unknown_lr_scaling_is_rejected(tiny_task):
    with pytest.raises(ValueError, match="lr_scaling"):
        InnerTrainer(tiny_task, lr_scaling="cubic")  # type: ignore[arg-type]


def test_huge_learning_rate_is_reported_as_divergence(exploding_task):
    trainer = InnerTrainer(exploding_task)
    trainer.reset(seed=0)
    results = [trainer.train(batch_size=4, num_samples=100) for _ in range(3)]
    assert any(r.diverged for r in results)


def test_reset_restores_global_rng_and_is_deterministic(dropout_task):
    torch.manual_seed(7)
    np.random.seed(7)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()

    def run(seed):
        trainer = InnerTrainer(dropout_task)
        trainer.reset(seed=seed)
        trainer.train(batch_size=8, num_samples=80)
        return [p.detach().clone() for p in _network(trainer).parameters()]

    first, again, other = run(1), run(1), run(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(
        np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True)
    )


def test_inject_before_head_changes_the_output_only_inside_the_context(tiny_task):
    trainer = InnerTrainer(tiny_task)
    trainer.reset(seed=0)
    inputs, _ = trainer.sample_validation(5)
    plain = _network(trainer)(inputs)
    features = trainer.penultimate_features(inputs)
    assert features.shape == (5, trainer.feature_width)
    with trainer.inject_before_head(lambda x: x * 0):
        zeroed = _network(trainer)(inputs)
    torch.testing.assert_close(zeroed, trainer.head.bias.expand_as(zeroed))
    torch.testing.assert_close(_network(trainer)(inputs), plain)


def test_sample_validation_draws_from_the_validation_part_without_replacement(tiny_task):
    trainer = InnerTrainer(tiny_task)
    trainer.reset(seed=0)
    n_val = trainer.data.x_val.shape[0]
    inputs, _ = trainer.sample_validation(n_val)
    assert sorted(inputs[:, 0].tolist()) == sorted(trainer.data.x_val[:, 0].tolist())
    assert trainer.sample_validation(n_val + 3)[0].shape[0] == n_val + 3
    with pytest.raises(ValueError, match="at least one"):
        trainer.sample_validation(0)


def test_validation_split_is_fixed_by_the_task_and_disjoint_from_training(tiny_task):
    a, b = InnerTrainer(tiny_task), InnerTrainer(tiny_task)
    assert torch.equal(a.data.x_val, b.data.x_val)
    assert a.data.x_val.shape[0] == round(0.2 * 200)
    train_rows = {tuple(row) for row in a.data.x_train.tolist()}
    assert not any(tuple(row) in train_rows for row in a.data.x_val.tolist())


def test_adam_and_custom_optimizer_factories_are_used(tiny_task):
    adam = InnerTrainer(tiny_task.replace(optimizer={"name": "adam", "lr": 1e-3}))
    adam.reset(seed=0)
    assert isinstance(adam.optimizer, torch.optim.Adam)

    def rmsprop(parameters, config):
        return torch.optim.RMSprop(parameters, lr=config.lr)

    custom = InnerTrainer(
        tiny_task.replace(optimizer={"name": "custom", "factory": rmsprop, "lr": 0.01})
    )
    custom.reset(seed=0)
    assert isinstance(custom.optimizer, torch.optim.RMSprop)
    assert not custom.train(batch_size=8, num_samples=32).diverged


@pytest.mark.gpu
def test_training_and_statistics_run_on_cuda(tiny_task):
    trainer = InnerTrainer(tiny_task.replace(device="cuda"))
    trainer.reset(seed=0)
    assert trainer.data.x_train.is_cuda and next(_network(trainer).parameters()).is_cuda
    assert not trainer.train(batch_size=8, num_samples=64).diverged
    assert math.isfinite(trainer.gradient_statistics().noise_scale)


def test_interval_training_loss_is_the_sample_weighted_mean_of_its_batches(tiny_task):
    trainer = InnerTrainer(tiny_task)
    trainer.reset(seed=0)
    seen = []
    trainer.add_step_hook(lambda info: seen.append((info.loss.item(), info.batch_size)))
    result = trainer.train(batch_size=7, num_samples=50)
    expected = sum(loss * size for loss, size in seen) / 50
    assert result.train_loss == pytest.approx(expected, rel=1e-6)


def test_evaluation_mode_switches_batch_norm_networks_and_restores_their_mode(tiny_task):
    def model(input_shape, num_classes):
        return nn.Sequential(
            nn.Linear(input_shape[0], 8), nn.BatchNorm1d(8), nn.Linear(8, num_classes)
        )

    trainer = InnerTrainer(tiny_task.replace(model=model))
    trainer.reset(seed=0)
    running_mean = _network(trainer)[1].running_mean.clone()
    with trainer.evaluation_mode() as network:
        assert not network.training
        network(trainer.data.x_val)
    assert _network(trainer).training
    assert torch.equal(_network(trainer)[1].running_mean, running_mean)


def test_gradient_statistics_use_the_microbatch_estimator_when_the_task_asks(tiny_task):
    def exact_and_micro(microbatches):
        statistics = []
        for task in (tiny_task, tiny_task.replace(probe_microbatches=microbatches)):
            trainer = InnerTrainer(task)
            trainer.reset(seed=0)
            statistics.append(trainer.gradient_statistics())
        return statistics

    # One example per micro-batch is the exact estimator, reached by the other code path.
    exact, single = exact_and_micro(tiny_task.probe_size)
    assert single.trace_covariance == pytest.approx(exact.trace_covariance, rel=1e-5)
    # Two micro-batches: the same probe and mean gradient, a different estimate of tr(Σ).
    exact, pairs = exact_and_micro(2)
    assert pairs.mean_grad_norm == pytest.approx(exact.mean_grad_norm, rel=1e-5)
    assert pairs.half_batch_cosine == pytest.approx(exact.half_batch_cosine, abs=1e-5)
    assert pairs.trace_covariance != pytest.approx(exact.trace_covariance, rel=1e-3)


@pytest.mark.parametrize("microbatches", [3, 0, 32, 1.5])
def test_task_rejects_microbatch_counts_that_do_not_split_the_probe(tiny_task, microbatches):
    with pytest.raises(ValueError, match="probe_microbatches must be None"):
        tiny_task.replace(probe_microbatches=microbatches)


class OutputRegisteredFirst(nn.Module):
    """Valid: the output layer is registered before the hidden one but called last."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.out = nn.Linear(8, num_classes)
        self.hidden = nn.Linear(input_shape[0], 8)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


class MatmulOutput(nn.Module):
    """Invalid: the output is a parameter matmul after the last nn.Linear, which has as many
    outputs as there are classes, so only the forward trace can tell."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.hidden = nn.Linear(input_shape[0], num_classes)
        self.weight = nn.Parameter(torch.randn(num_classes, num_classes))

    def forward(self, x):
        return torch.tanh(self.hidden(x)) @ self.weight


def test_output_layer_is_the_last_linear_called_not_the_last_registered(tiny_task):
    trainer = InnerTrainer(tiny_task.replace(model=OutputRegisteredFirst))
    trainer.reset(seed=0)
    assert trainer.head is _network(trainer).out and trainer.feature_width == 8
    inputs, _ = trainer.sample_validation(4)
    with trainer.inject_before_head(lambda x: x * 0):
        zeroed = _network(trainer)(inputs)
    torch.testing.assert_close(zeroed, _network(trainer).out.bias.expand_as(zeroed))


def test_model_whose_output_is_computed_after_its_last_linear_is_rejected_at_construction(
    tiny_task,
):
    with pytest.raises(
        ValueError, match=r"not the output of 'hidden'.*last nn\.Linear the forward"
    ):
        InnerTrainer(tiny_task.replace(model=MatmulOutput))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (lambda shape, classes: nn.Sequential(nn.Flatten()), "calls no nn.Linear"),
        (
            lambda shape, classes: nn.Sequential(nn.Linear(shape[0], classes + 1)),
            r"'0', has out_features=4, but the task has 3 classes",
        ),
    ],
)
def test_models_without_a_fitting_output_linear_are_rejected_with_the_rule(
    tiny_task, model, message
):
    from arbiter_env.envs.batch_size import BatchSizeEnv

    with pytest.raises(ValueError, match=message) as error:
        BatchSizeEnv(tiny_task.replace(model=model))
    assert "must be the output of an nn.Linear with out_features == num_classes" in str(error.value)


def test_checking_the_output_layer_leaves_the_global_rng_alone(tiny_task):
    state = torch.get_rng_state()
    InnerTrainer(tiny_task)
    assert torch.equal(torch.get_rng_state(), state)


def test_evaluation_in_one_chunk_gives_the_numbers_of_the_chunked_loop(tiny_task):
    one = InnerTrainer(tiny_task)
    chunked = InnerTrainer(tiny_task.replace(eval_batch_size=7))
    for trainer in (one, chunked):
        trainer.reset(5)
        trainer.train(8, 40)
    assert one.data.x_val.shape[0] <= tiny_task.eval_batch_size
    for split in ("validation", "test", "train"):
        loss, accuracy = one.evaluate(split)
        chunk_loss, chunk_accuracy = chunked.evaluate(split)
        assert loss == pytest.approx(chunk_loss, rel=1e-6) and accuracy == chunk_accuracy
    # The one-chunk path: the float32 sum of the losses, divided in float64.
    model = _network(one)
    with torch.no_grad():
        logits = model(one.data.x_val)
        total = nn.functional.cross_entropy(logits, one.data.y_val, reduction="sum")
    assert one.evaluate("validation")[0] == total.item() / one.data.x_val.shape[0]
