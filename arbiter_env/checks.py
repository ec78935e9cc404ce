"""Type checks for user-facing arguments, with errors that name the field and say what to pass.

Python's duck typing lets ``True`` pass for 1, ``8.5`` for a batch size and ``"1"`` for an epoch
count until something deep inside fails (or, worse, silently truncates). These helpers reject such
values where they enter, so the error names the argument instead of a line in torch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

__all__ = ["check_device", "check_int", "check_real", "require"]


def require(condition: bool, message: str) -> None:
    """Raises ``ValueError(message)`` unless ``condition``; configs use it in ``__post_init__``."""
    if not condition:
        raise ValueError(message)


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an ``int``; raises ``ValueError`` naming ``name`` for bools, floats, strings.

    An integral float such as ``8.0`` is refused too: a batch size of ``8.5`` and one of ``8.0``
    are the same mistake in a config file, and ``8`` is always the right spelling.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{name} must be an integer, got {value!r} ({type(value).__name__}); write it "
            "without quotes or decimals."
        )
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return value


def check_real(name: str, value: Any) -> float:
    """``value`` as a finite ``float``; raises ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{name} must be a number, got {value!r} ({type(value).__name__}); write it without "
            "quotes."
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}.")
    return value


def check_device(device: str | torch.device, name: str = "device") -> torch.device:
    """The torch device, after checking that this machine can use it.

    ``torch.device("cuda")`` is accepted by every torch build; without a GPU the first tensor
    moved there fails with an ``AssertionError`` from deep inside torch. Checking here gives one
    clear error instead.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"Invalid {name} {device!r}: {error}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            build = "has no CUDA support" if torch.version.cuda is None else "sees no CUDA device"
            raise ValueError(
                f"{name}={str(device)!r} but this torch build {build} "
                f"(torch {torch.__version__}); use {name}='cpu' or run on a machine with a GPU."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name}={str(device)!r} but only {torch.cuda.device_count()} CUDA device(s) "
                "are visible."
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={str(device)!r} but MPS is not available; use {name}='cpu'.")
    return resolved


def check_options(options: Any) -> None:
    """Raises ``TypeError`` unless ``options`` is what ``reset`` takes: a dict or ``None``."""
    if options is not None and not isinstance(options, dict):
        raise TypeError(
            f"reset(options=...) must be a dict or None, got {options!r} ({type(options).__name__}); "
            "e.g. options={'family_instance': 3}."
        )
