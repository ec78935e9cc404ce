"""The response-calibration benchmark (benchmarks/arbiter_calibration.py): its comparisons."""

import math
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import arbiter_calibration  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def test_arg_mins_one_rung_apart_agree_and_two_do_not():
    measured = [0.0, -0.1, -0.3, -0.2, 0.0, 0.1, 0.2]  # best at 32
    near = arbiter_calibration.compare([0.0, -0.1, -0.2, -0.3, 0.0, 0.1, 0.2], measured)
    assert near["argmin_within_one_rung"] and near["predicted_argmin"] == 64
    far = arbiter_calibration.compare([0.0, -0.1, -0.2, -0.1, -0.4, 0.1, 0.2], measured)
    assert not far["argmin_within_one_rung"]
    assert math.isclose(near["median_abs_error"], 0.0)


def test_a_diverged_size_ranks_last_in_the_correlation():
    predicted = [math.inf, 1, 2, 3, 4, 5, 6]
    measured = [10.0, 1, 2, 3, 4, 5, 6]  # also worst, finite
    assert arbiter_calibration.compare(predicted, measured)["spearman"] == 1.0


def test_the_measurement_ceiling_compares_each_sampler_seed_with_the_others():
    steady = {"measured_per_seed": [[float(i)] * 3 for i in (3, 1, 0, 2, 4, 5, 6)]}
    assert arbiter_calibration.measurement_ceiling(steady) == (1.0, 1.0)
    noisy = np.array(
        [[0.0, 1, 1], [1, 0, 1], [1, 1, 0], [2, 2, 2], [3, 3, 3], [4, 4, 4], [5, 5, 5]]
    )
    noisy[:, 0] = [5, 4, 3, 2, 1, 0.5, 0]  # one seed disagrees completely
    agree, _ = arbiter_calibration.measurement_ceiling({"measured_per_seed": noisy.tolist()})
    assert agree < 1.0


def test_a_probe_records_prediction_and_measurement_for_every_size(restore_threads):
    job = {
        "task": "synthetic-teacher",
        "seed": 100,
        "intervals": [1],
        "sampler_seeds": [0],
        "model": "v2",
        "reference": "fixed",
    }
    (record,) = arbiter_calibration.probe(job)
    assert record["k"] == 1 and len(record["predicted"]) == len(record["measured"]) == 7
    assert all(math.isfinite(x) for x in record["measured"])
