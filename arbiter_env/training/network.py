"""What the trainer needs to know about the task's network: its output layer and its layer types."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from arbiter_env.tasks.spec import Task
from arbiter_env.training.data import DataSplits

OUTPUT_LAYER_RULE = (
    "the model's output must be the output of an nn.Linear with out_features == num_classes, "
    "and that layer must be the last nn.Linear the forward pass calls (Arbiter injects its "
    "response into that layer's input)"
)


def check_output_layer(task: Task, data: DataSplits) -> str:
    """Checks the output-layer contract on a throwaway model; returns the output layer's name.

    The rule (:data:`OUTPUT_LAYER_RULE`): the network's output is computed by an ``nn.Linear``
    with ``out_features == num_classes``, and that layer is the last ``nn.Linear`` the forward
    pass calls. Registration order does not matter: the layers are traced with forward hooks on
    two training examples, in evaluation mode and without gradients, on the CPU. The model is
    built under a forked global RNG, so checking leaves the global RNG state as it was.

    Raises:
        ValueError: naming the task, what was found and the rule.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        model = task.model(data.input_shape, data.num_classes)
    if not isinstance(model, nn.Module):
        raise TypeError(f"Task {task.name!r}: the model factory must return an nn.Module.")
    output, calls = _linear_calls(model, data.x_train[:2].cpu())
    if not calls:
        raise ValueError(
            f"Task {task.name!r}: the forward pass calls no nn.Linear; {OUTPUT_LAYER_RULE}."
        )
    head, head_output = calls[-1]
    head_name = {module: name for name, module in model.named_modules()}[head]
    if head.out_features != data.num_classes:
        raise ValueError(
            f"Task {task.name!r}: the last nn.Linear the forward pass calls, {head_name!r}, has "
            f"out_features={head.out_features}, but the task has {data.num_classes} classes; "
            f"{OUTPUT_LAYER_RULE}."
        )
    if not (
        isinstance(output, torch.Tensor)
        and output.shape == head_output.shape
        and torch.equal(output, head_output)
    ):
        raise ValueError(
            f"Task {task.name!r}: the model's output is not the output of {head_name!r}, the last "
            f"nn.Linear its forward pass calls (something is computed after it); "
            f"{OUTPUT_LAYER_RULE}."
        )
    return head_name


def _linear_calls(
    model: nn.Module, inputs: torch.Tensor
) -> tuple[object, list[tuple[nn.Linear, torch.Tensor]]]:
    """The model's output on ``inputs``, and each ``nn.Linear`` the forward called with its output.

    The calls are in call order; the model runs in evaluation mode, without gradients.
    """
    calls: list[tuple[nn.Linear, torch.Tensor]] = []

    def record(module: nn.Module, args: object, output: torch.Tensor) -> None:
        calls.append((module, output))  # type: ignore[arg-type]

    handles = [
        module.register_forward_hook(record)
        for module in model.modules()
        if isinstance(module, nn.Linear)
    ]
    try:
        model.eval()
        with torch.no_grad():
            output = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return output, calls


# Modules whose forward is the same in training and evaluation mode and draws no random numbers.
# A network made only of these needs no eval()/train() switch around a measurement and no seeded
# global RNG while training; anything else (batch norm, dropout, custom modules that might read
# self.training or the global RNG) is switched to evaluation mode and back, and trains under the
# episode's dropout seed.
_MODE_INDEPENDENT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Sequential,
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
)


def couples_examples(model: nn.Module) -> bool:
    """Whether a known module mixes the examples of a batch (batch norm in training mode).

    Then per-example gradients of a training step are not the per-sample losses' gradients.
    """
    return any(isinstance(m, nn.modules.batchnorm._NormBase) for m in model.modules())


def mode_independent(model: nn.Module | None) -> bool:
    """Whether ``model``'s forward cannot depend on ``model.training`` (known module types only)."""
    return model is not None and all(
        type(module) in _MODE_INDEPENDENT_TYPES for module in model.modules()
    )


def linear_layers_of(model: nn.Module) -> list[nn.Linear] | None:
    """The ``nn.Linear`` layers when they hold every trainable parameter, else ``None``."""
    layers = []
    for module in model.modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            if not isinstance(module, nn.Linear):
                return None
            layers.append(module)
    return layers or None


def relu_mlp_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of the built-in MLP, else ``None``.

    That is an ``nn.Sequential`` of ``[Flatten,] (Linear, ReLU)*, Linear``.
    """
    if type(model) is not nn.Sequential or model._forward_hooks or model._forward_pre_hooks:
        return None
    modules = list(model)
    if modules and type(modules[0]) is nn.Flatten:
        if (modules[0].start_dim, modules[0].end_dim) != (1, -1):
            return None
        modules = modules[1:]
    if not modules or len(modules) % 2 != 1:
        return None
    layers = modules[0::2]
    if not all(type(m) is nn.Linear and m.bias is not None for m in layers):
        return None
    if not all(type(m) is nn.ReLU for m in modules[1::2]):
        return None
    return cast(list[nn.Linear], layers)
