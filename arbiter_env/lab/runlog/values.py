"""Plain values for the run logs: scalars, flattened infos, JSON without NaN, YAML-safe configs."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from arbiter_env.config import plain


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


def strict_json_value(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` and numpy scalars made plain.

    JSON has no NaN or infinity; ``json.dumps`` writes bare ``NaN`` unless told not to, which
    most JSON readers reject. Objects JSON cannot hold become their ``str``.
    """
    if isinstance(value, Mapping):
        return {str(k): strict_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json_value(v) for v in value]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """JSON text of ``value`` that any JSON reader accepts (``null`` for non-finite numbers)."""
    return json.dumps(strict_json_value(value), allow_nan=False, **kwargs)


def plain_config(config: Any) -> dict[str, Any]:
    """A YAML- and ``wandb.config``-friendly dict of a config mapping or dataclass."""
    if config is None:
        return {}
    if not isinstance(config, Mapping) and not (
        dataclasses.is_dataclass(config) and not isinstance(config, type)
    ):
        raise TypeError(f"config must be a mapping or a dataclass, got {type(config).__name__}.")
    return plain(config)
