"""The run logs' plain values: strict JSON that any JSON reader accepts."""

from __future__ import annotations

import json
import math

import numpy as np

from arbiter_env.lab.runlog.values import dumps_strict, strict_json_value


def test_strict_json_writes_null_for_non_finite_numbers() -> None:
    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float32(2.0), "d": np.int64(3)}
    text = dumps_strict(data)

    def reject(constant):
        raise ValueError(constant)

    assert json.loads(text, parse_constant=reject) == {
        "a": None,
        "b": [None, None, 1.5],
        "c": 2.0,
        "d": 3,
    }
    assert strict_json_value(np.bool_(True)) is True
