"""Inner-network builders in plain torch: an MLP, a small CNN and a Wide-ResNet.

Every builder has the signature ``(input_shape, num_classes, **options) -> nn.Module`` and returns
a model mapping a batch of shape ``(batch, *input_shape)`` to logits of shape
``(batch, num_classes)``.

**Output-layer contract.** The model's output is the output of an ``nn.Linear`` with
``out_features == num_classes``, and that layer is the *last* ``nn.Linear`` the forward pass calls
(registration order does not matter). The trainer relies on this: it hooks that layer's input to
read the penultimate features and inject the hyper-learning response term. It checks the contract
when it is built, by tracing a forward pass (:func:`arbiter_env.training.network.check_output_layer`), and
rejects a model that breaks it with an error that states the rule.

Models use torch's default initialisation; the caller seeds around construction (with
``torch.random.fork_rng`` and ``torch.manual_seed`` or the env's own generators) so that episodes
are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from arbiter_env.checks import check_int

__all__ = ["MODEL_BUILDERS", "mlp", "small_cnn", "wide_resnet"]


def _check_common(input_shape: Sequence[int], num_classes: int) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive sizes, got {shape}.")
    check_int("num_classes", num_classes, minimum=1)
    return shape


def _check_sizes(name: str, sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(sizes)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"{name} must be positive ints, got {sizes}.")
    return sizes


def mlp(
    input_shape: tuple[int, ...], num_classes: int, hidden_sizes: Sequence[int] = (128,)
) -> nn.Module:
    """A multilayer perceptron: flatten, ``Linear + ReLU`` per hidden size, then the output Linear.

    Inputs of any shape are flattened. ``hidden_sizes=()`` gives multinomial logistic regression.
    """
    shape = _check_common(input_shape, num_classes)
    hidden = _check_sizes("hidden_sizes", hidden_sizes)
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(shape)
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))  # output layer: the last nn.Linear
    return nn.Sequential(*layers)


def small_cnn(
    input_shape: tuple[int, ...], num_classes: int, channels: Sequence[int] = (32, 64)
) -> nn.Module:
    """A small convolutional network for 1-D signals ``(C, L)`` or images ``(C, H, W)``.

    Each entry of ``channels`` adds a stage ``conv 3 (same padding) -> ReLU -> max-pool 2``; then a
    global average pool, flatten, and the output Linear. There is no BatchNorm and no dropout, so
    the model's output does not depend on the batch it is evaluated in and has no randomness.
    Every spatial size must be at least ``2 ** len(channels)`` so that each pooling has an input.
    """
    shape = _check_common(input_shape, num_classes)
    stages = _check_sizes("channels", channels)
    if not stages:
        raise ValueError("channels must name at least one convolutional stage.")
    conv: type[nn.Conv1d | nn.Conv2d]
    pool: type[nn.MaxPool1d | nn.MaxPool2d]
    global_pool: type[nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d]
    if len(shape) == 2:
        conv, pool, global_pool = nn.Conv1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d
    elif len(shape) == 3:
        conv, pool, global_pool = nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d
    else:
        raise ValueError(
            f"small_cnn needs inputs of shape (C, L) or (C, H, W), got {shape}. For flat inputs "
            "use mlp, or add a channel dimension (e.g. load_mnist1d(channels_first=True))."
        )
    smallest = min(shape[1:])
    if smallest < 2 ** len(stages):
        raise ValueError(
            f"Spatial size {smallest} is too small for {len(stages)} pooling stages (needs >= "
            f"{2 ** len(stages)}); use fewer channels entries."
        )
    layers: list[nn.Module] = []
    in_channels = shape[0]
    for out_channels in stages:
        layers += [conv(in_channels, out_channels, 3, padding=1), nn.ReLU(), pool(2)]
        in_channels = out_channels
    layers += [global_pool(1), nn.Flatten(), nn.Linear(in_channels, num_classes)]
    return nn.Sequential(*layers)


class _WideBasicBlock(nn.Module):
    """Pre-activation basic block: ``BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3`` plus shortcut.

    When the width or the stride changes, the shortcut is a 1x1 convolution applied to the
    pre-activated input, as in the reference implementation of Zagoruyko & Komodakis.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        residual = x if self.shortcut is None else self.shortcut(pre)
        return out + residual


class WideResNet(nn.Module):
    """WRN-depth-k for small images; see :func:`wide_resnet`."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int,
        widen_factor: int,
        dropout: float,
    ) -> None:
        super().__init__()
        blocks_per_group = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, padding=1, bias=False)
        groups: list[nn.Module] = []
        width = widths[0]
        for group_index, group_width in enumerate(widths[1:]):
            stride = 1 if group_index == 0 else 2
            for block_index in range(blocks_per_group):
                groups.append(
                    _WideBasicBlock(width, group_width, stride if block_index == 0 else 1, dropout)
                )
                width = group_width
        self.blocks = nn.Sequential(*groups)
        self.bn = nn.BatchNorm2d(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        # The output layer: the last nn.Linear the forward pass calls (the output-layer contract).
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(torch.flatten(self.pool(features), 1))


def wide_resnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    depth: int = 16,
    widen_factor: int = 4,
    dropout: float = 0.0,
) -> nn.Module:
    """Wide residual network WRN-``depth``-``widen_factor`` (Zagoruyko & Komodakis, 2016).

    A 3x3 convolution to 16 channels, three groups of ``(depth - 4) / 6`` pre-activation basic
    blocks of widths ``16k``, ``32k``, ``64k`` (the last two groups halve the resolution), then
    BN-ReLU, global average pooling and the output Linear. Made for ``(3, 32, 32)`` CIFAR images
    (any ``(C, H, W)`` works). The default WRN-16-4 has about 2.75M parameters for 10 classes.

    BatchNorm makes the output depend on the batch in training mode. ``dropout`` (between the two
    convolutions of each block, 0 by default as in the paper's WRN-16-4 runs) draws from torch's
    global RNG, so a caller that enables it must seed that RNG per episode.
    """
    shape = _check_common(input_shape, num_classes)
    if len(shape) != 3:
        raise ValueError(f"wide_resnet needs image inputs of shape (C, H, W), got {shape}.")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth!r}."
        )
    check_int("widen_factor", widen_factor, minimum=1)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    return WideResNet(shape[0], num_classes, depth, widen_factor, dropout)


MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "cnn": small_cnn,
    "wrn-16-4": wide_resnet,
}
"""Model builders by name; each is ``(input_shape, num_classes, **options) -> nn.Module``."""
