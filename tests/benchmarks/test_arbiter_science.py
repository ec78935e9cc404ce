"""The science table of ``benchmarks/arbiter_science.py``: its references and target checks."""

import math
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import arbiter_science  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def result(name: str, seed: int, loss: float, *, diverged: bool = False, **extra) -> dict:
    return {
        "suite": "standalone",
        "task": "t",
        "name": name,
        "seed": seed,
        "final_val_loss": loss,
        "test_accuracy": 0.9,
        "diverged": diverged,
        "mean_batch_size": 32.0,
        **extra,
    }


def results() -> list[dict]:
    rows = []
    for seed in range(3):
        rows.append(result("fixed-8", seed, 0.01, diverged=seed == 0))  # best mean, but diverged
        rows.append(result("fixed-16", seed, 0.10 + 0.01 * seed))
        rows.append(result("fixed-32", seed, 0.20))
        rows.append(result("fixed-64", seed, 0.30))
        rows.append(result("noise-scale", seed, 0.25))
        rows.append(result("arbiter-la", seed, 0.105 + 0.01 * seed, cost=1.2))
    return rows


def test_a_size_with_a_diverged_seed_ranks_last_and_the_median_is_the_middle_size():
    rows = arbiter_science.summarise(results())
    assert rows["fixed-8"]["diverged"] == 1 and rows["fixed-8"]["n"] == 3
    assert arbiter_science.fixed_reference(rows) == ("fixed-16", "fixed-32")
    assert math.isclose(rows["fixed-16"]["se"], 0.01 / math.sqrt(3))


def test_targets_are_checked_against_the_references():
    text = arbiter_science.table(results())
    assert "fixed-16 (best fixed)" in text and "fixed-32 (median fixed)" in text
    assert (
        "no worse than the median fixed size: yes; within one s.e. of the best fixed size: yes; "
        "better than noise-scale: yes; cost ≤ 1.3×: yes" in text
    )
    worse = [r if r["name"] != "arbiter-la" else {**r, "final_val_loss": 0.4} for r in results()]
    assert "no worse than the median fixed size: no" in arbiter_science.table(worse)


def test_hypergradient_noise_separates_trend_from_step_to_step_noise():
    # A steady trend within each interval has no local noise, but a large episode variance.
    values = [(i // 10, 0.1 * i) for i in range(40)]
    noise = arbiter_science.hypergradient_noise(values)
    assert noise["h_local_noise"] < 0.01 * noise["h_episode_variance"]
    alternating = [(0, (-1.0) ** i) for i in range(40)]
    assert arbiter_science.hypergradient_noise(alternating)["h_local_noise"] > 1.9
