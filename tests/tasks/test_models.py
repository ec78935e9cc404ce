"""Tests of the model builders: output shapes and the output-layer contract of the trainer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from arbiter_env.tasks.models import MODEL_BUILDERS, mlp, small_cnn, wide_resnet

# (builder name, input shape, options); small widths keep the test fast.
CASES = [
    ("mlp", (64,), {}),
    ("mlp", (1, 28, 28), {"hidden_sizes": (16, 8)}),
    ("mlp", (40,), {"hidden_sizes": ()}),
    ("cnn", (1, 40), {}),
    ("cnn", (3, 32, 32), {"channels": (4, 8)}),
    ("wrn-16-4", (3, 32, 32), {"widen_factor": 1}),
]


def _build(name: str, shape: tuple[int, ...], options: dict, num_classes: int = 7) -> nn.Module:
    # Seed around construction the way the trainer does, without leaking into other tests.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return MODEL_BUILDERS[name](shape, num_classes, **options)


@pytest.mark.parametrize(("name", "shape", "options"), CASES)
def test_builders_output_logits_of_shape_batch_by_classes(
    name: str, shape: tuple[int, ...], options: dict
) -> None:
    model = _build(name, shape, options)
    out = model(torch.randn(5, *shape, generator=torch.Generator().manual_seed(1)))
    assert out.shape == (5, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "shape", "options"), CASES)
def test_last_linear_in_modules_is_the_output_layer(
    name: str, shape: tuple[int, ...], options: dict
) -> None:
    model = _build(name, shape, options).eval()
    last_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: dict[str, torch.Tensor] = {}
    last_linear.register_forward_pre_hook(lambda _, args: captured.update(features=args[0]))
    last_linear.register_forward_hook(lambda *hook_args: captured.update(out=hook_args[2]))
    with torch.no_grad():
        out = model(torch.randn(3, *shape, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(captured["out"], out)
    # Its input is the penultimate feature vector the hyper-learning interface reads.
    assert captured["features"].shape == (3, last_linear.in_features)


def test_builders_use_default_init_so_the_caller_controls_seeding() -> None:
    first = _build("cnn", (1, 40), {})
    second = _build("cnn", (1, 40), {})
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_wrn_16_4_has_the_paper_parameter_count() -> None:
    model = wide_resnet((3, 32, 32), 10)
    num_params = sum(p.numel() for p in model.parameters())
    assert 2.6e6 < num_params < 2.9e6  # the paper reports 2.7M for WRN-16-4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0
    assert model.fc.out_features == 10


@pytest.mark.parametrize("depth", [15, 4, 17])
def test_wrn_rejects_depths_that_are_not_6n_plus_4(depth: int) -> None:
    with pytest.raises(ValueError, match="6n"):
        wide_resnet((3, 32, 32), 10, depth=depth)


def test_wrn_rejects_non_image_inputs() -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        wide_resnet((64,), 10)


def test_cnn_uses_conv1d_for_signals_and_conv2d_for_images() -> None:
    kinds_1d = {type(m) for m in small_cnn((1, 40), 10).modules()}
    kinds_2d = {type(m) for m in small_cnn((3, 16, 16), 10).modules()}
    assert nn.Conv1d in kinds_1d and nn.Conv2d not in kinds_1d
    assert nn.Conv2d in kinds_2d and nn.Conv1d not in kinds_2d
    assert not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds_1d | kinds_2d)
    assert nn.Dropout not in kinds_1d | kinds_2d


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: small_cnn((40,), 10), r"\(C, L\)"),
        (lambda: small_cnn((1, 3), 10), "too small"),
        (lambda: small_cnn((1, 40), 10, channels=()), "at least one"),
        (lambda: mlp((64,), 0), "num_classes"),
        (lambda: mlp((0,), 10), "input_shape"),
        (lambda: mlp((64,), 10, hidden_sizes=(8, 0)), "hidden_sizes"),
    ],
)
def test_builders_reject_invalid_arguments(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_model_builders_registry_names() -> None:
    assert {"mlp": mlp, "cnn": small_cnn, "wrn-16-4": wide_resnet} == MODEL_BUILDERS
