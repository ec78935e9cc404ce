import pytest
import torch
from torch import nn

from arbiter_env.training.stats import gradient_statistics, per_sample_gradients


def _tiny_model_and_data(n: int = 12):
    generator = torch.Generator().manual_seed(3)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    inputs = torch.randn(n, 5, generator=generator, dtype=torch.float64)
    targets = torch.randint(3, (n,), generator=generator)
    return model, inputs, targets


def _grad(parameter: torch.Tensor) -> torch.Tensor:
    assert parameter.grad is not None
    return parameter.grad


def _brute_force_gradients(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    rows = []
    for x, y in zip(inputs, targets, strict=True):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[None]), y[None]).backward()
        rows.append(torch.cat([_grad(p).reshape(-1) for p in model.parameters()]))
    model.zero_grad()
    return torch.stack(rows)


def test_per_sample_gradients_match_a_per_example_loop_in_float64():
    model, inputs, targets = _tiny_model_and_data()
    expected = _brute_force_gradients(model, inputs, targets)
    torch.testing.assert_close(
        per_sample_gradients(model, inputs, targets), expected, rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("method", ["linear", "vmap"])
def test_gradient_statistics_match_brute_force_formulas_in_float64(method):
    model, inputs, targets = _tiny_model_and_data(n=12)
    grads = _brute_force_gradients(model, inputs, targets)
    n = grads.shape[0]
    mean = grads.mean(0)
    # Unbiased trace of the covariance: sum over parameters of the per-coordinate sample variance.
    trace = grads.var(0, unbiased=True).sum().item()
    grad_sq = max(mean.dot(mean).item() - trace / n, 1e-12)
    first, second = grads[: n // 2].mean(0), grads[n // 2 :].mean(0)
    cosine = (first.dot(second) / (first.norm() * second.norm())).item()

    stats = gradient_statistics(model, inputs, targets, chunk_size=5, method=method)

    assert abs(stats.trace_covariance - trace) <= 1e-10 * abs(trace)
    assert abs(stats.grad_sq_norm - grad_sq) <= 1e-10 * abs(grad_sq)
    assert abs(stats.noise_scale - trace / grad_sq) <= 1e-9 * (trace / grad_sq)
    assert abs(stats.half_batch_cosine - cosine) <= 1e-10
    assert abs(stats.mean_grad_norm - mean.norm().item()) <= 1e-12
    assert stats.probe_size == n


@pytest.mark.parametrize("method", ["linear", "vmap", "microbatch"])
def test_gradient_statistics_leave_parameters_and_grads_untouched(method):
    model, inputs, targets = _tiny_model_and_data()
    before = [p.detach().clone() for p in model.parameters()]
    microbatches = 4 if method == "microbatch" else None
    gradient_statistics(model, inputs, targets, method=method, num_microbatches=microbatches)
    for p, q in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, q)
        assert p.grad is None


def test_gradient_statistics_reject_too_small_probe():
    model, inputs, targets = _tiny_model_and_data()
    try:
        gradient_statistics(model, inputs[:3], targets[:3])
    except ValueError as error:
        assert "at least 4" in str(error)
    else:
        raise AssertionError("a 3-example probe must be rejected")


def test_linear_and_vmap_paths_agree_on_a_network_with_a_frozen_layer_and_no_bias():
    model, inputs, targets = _tiny_model_and_data(n=10)
    model[0].weight.requires_grad_(False)
    model[2].bias = None
    linear = gradient_statistics(model, inputs, targets, method="linear")
    general = gradient_statistics(model, inputs, targets, method="vmap")
    for name, value in linear.as_dict().items():
        assert value == pytest.approx(general.as_dict()[name], rel=1e-9, abs=1e-15), name


def test_linear_path_is_refused_for_networks_with_other_parameterised_layers():
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(16, 3)).double()
    inputs = torch.randn(6, 1, 10, generator=generator, dtype=torch.float64)
    targets = torch.randint(3, (6,), generator=generator)
    with pytest.raises(ValueError, match=r"nn\.Linear"):
        gradient_statistics(model, inputs, targets, method="linear")
    auto = gradient_statistics(model, inputs, targets)  # falls back to torch.func
    brute = _brute_force_gradients(model, inputs, targets)
    assert auto.trace_covariance == pytest.approx(brute.var(0).sum().item(), rel=1e-9)


def test_microbatch_estimator_matches_the_variance_of_microbatch_means_in_float64():
    model, inputs, targets = _tiny_model_and_data(n=12)
    grads = _brute_force_gradients(model, inputs, targets)
    microbatch_means = grads.reshape(4, 3, -1).mean(1)  # M = 4 micro-batches of m = 3
    # Micro-batch means have covariance Σ/m: m times their unbiased variance estimates tr(Σ).
    trace = 3 * microbatch_means.var(0, unbiased=True).sum().item()
    mean = grads.mean(0)
    grad_sq = mean.dot(mean).item() - trace / 12
    first, second = grads[:6].mean(0), grads[6:].mean(0)
    cosine = (first.dot(second) / (first.norm() * second.norm())).item()

    stats = gradient_statistics(model, inputs, targets, method="microbatch", num_microbatches=4)

    assert grad_sq > 0
    assert stats.trace_covariance == pytest.approx(trace, rel=1e-10)
    assert stats.grad_sq_norm == pytest.approx(grad_sq, rel=1e-10)
    assert stats.half_batch_cosine == pytest.approx(cosine, abs=1e-10)
    assert stats.mean_grad_norm == pytest.approx(mean.norm().item(), rel=1e-12)


def test_microbatch_estimator_with_single_example_microbatches_is_the_exact_one():
    model, inputs, targets = _tiny_model_and_data(n=12)
    exact = gradient_statistics(model, inputs, targets, method="vmap")
    micro = gradient_statistics(model, inputs, targets, method="microbatch", num_microbatches=12)
    for name, value in exact.as_dict().items():
        assert micro.as_dict()[name] == pytest.approx(value, rel=1e-9, abs=1e-15), name


def test_microbatch_trace_estimate_is_unbiased_over_random_probes():
    # Probes drawn with replacement from a fixed pool are i.i.d. draws from its empirical
    # distribution, whose per-sample gradient covariance we know exactly.
    model, pool_inputs, pool_targets = _tiny_model_and_data(n=40)
    pool_grads = _brute_force_gradients(model, pool_inputs, pool_targets)
    population_trace = pool_grads.var(0, unbiased=False).sum().item()
    generator = torch.Generator().manual_seed(11)
    estimates: list[float] = []
    for _ in range(600):
        index = torch.randint(40, (16,), generator=generator)
        stats = gradient_statistics(
            model, pool_inputs[index], pool_targets[index], method="microbatch", num_microbatches=4
        )
        estimates.append(stats.trace_covariance)
    values = torch.tensor(estimates, dtype=torch.float64)
    standard_error = values.std().item() / len(values) ** 0.5
    assert abs(values.mean().item() - population_trace) < 4 * standard_error
    # Precise enough to catch a wrong scale (a factor of m = 4 is many standard errors away).
    assert standard_error < population_trace / 20


@pytest.mark.parametrize("microbatches", [None, 3, 5, 0, 24])
def test_microbatch_estimator_rejects_bad_microbatch_counts(microbatches):
    model, inputs, targets = _tiny_model_and_data(n=12)
    with pytest.raises(ValueError, match="even number >= 2 that divides the probe size 12"):
        gradient_statistics(
            model, inputs, targets, method="microbatch", num_microbatches=microbatches
        )


def test_microbatch_count_is_refused_for_the_exact_methods():
    model, inputs, targets = _tiny_model_and_data(n=12)
    with pytest.raises(ValueError, match="only used with method='microbatch'"):
        gradient_statistics(model, inputs, targets, method="vmap", num_microbatches=4)
