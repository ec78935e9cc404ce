"""Plain values for the run logs: scalars, flattened infos, JSON without NaN, YAML-safe configs."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars and strings of ``values``, nested mappings as ``key.subkey``; the rest dropped."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, str):
            flat[name] = value
        elif (item := scalar(value)) is not None:
            flat[name] = item
    return flat


def is_number(value: Any) -> bool:
    """Whether ``value`` is a plain Python number or boolean (what W&B charts)."""
    return isinstance(value, bool | int | float) and not isinstance(value, np.ndarray)


def scalar(value: Any) -> bool | int | float | None:
    """A plain Python scalar for ``value``, or ``None`` if it is not a single number."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, np.generic) and np.ndim(value) == 0:
        item = value.item()
        return item if isinstance(item, bool | int | float) else None
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "biuf":
        return value.reshape(()).item()
    item = getattr(value, "item", None)  # 0-d torch tensors
    if callable(item) and getattr(value, "ndim", None) == 0:
        try:
            result = item()
        except Exception:
            return None
        return result if isinstance(result, bool | int | float) else None
    return None


def json_safe(value: Any) -> Any:
    """JSON without NaN/inf (written as ``null``) so that any JSON reader accepts the files."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    item = scalar(value)
    if item is not None:
        return json_safe(item)
    return str(value)


def plain_config(config: Any) -> dict[str, Any]:
    """A YAML- and ``wandb.config``-friendly dict of a config mapping or dataclass."""
    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping or a dataclass, got {type(config).__name__}.")
    return plain_value(config)


def plain_value(value: Any) -> Any:
    """``value`` as YAML-safe data: dataclasses and mappings as dicts, paths as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain_value(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    item = scalar(value)
    if item is not None:
        return item
    return getattr(value, "__qualname__", None) or repr(value)
