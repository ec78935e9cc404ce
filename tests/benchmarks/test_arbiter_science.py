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
        "≥ median fixed (val loss): yes; test acc. ≥ median fixed's: yes; within 1 s.e. of best "
        "fixed: yes; better than noise-scale: yes; cost ≤ 1.3×: yes" in text
    )
    worse = [r if r["name"] != "arbiter-la" else {**r, "final_val_loss": 0.4} for r in results()]
    assert "≥ median fixed (val loss): no" in arbiter_science.table(worse)
    less_accurate = [
        r if r["name"] != "arbiter-la" else {**r, "test_accuracy": 0.5} for r in results()
    ]
    assert "test acc. ≥ median fixed's: no" in arbiter_science.table(less_accurate)


def test_the_median_fixed_size_is_rank_ceil_k_over_2_of_seven():
    runs = [result(f"fixed-{2**i}", 0, 0.1 * (7 - i)) for i in range(3, 10)]  # 512 is best
    best, median = arbiter_science.fixed_reference(arbiter_science.summarise(runs))
    assert (best, median) == ("fixed-512", "fixed-64")  # ranks: 512, 256, 128, 64 (4th of 7)


def test_the_protocol_keeps_dev_seeds_and_held_out_tasks_apart():
    assert not set(arbiter_science.DEV_SEEDS) & set(arbiter_science.EVAL_SEEDS)
    held_out = arbiter_science.held_out_tasks()
    assert len(held_out) == 7 and not set(held_out) & set(arbiter_science.DEV_TASKS)
    held_out_rows = {
        job["name"] for job in arbiter_science.jobs(["standalone"], [held_out[1]], [0])
    }
    dev_rows = {job["name"] for job in arbiter_science.jobs(["standalone"], ["mnist1d-cnn"], [0])}
    assert {"arbiter-la", "arbiter-la-v1", "oracle-greedy", "arbiter"} <= dev_rows
    assert "arbiter-la" in held_out_rows and "fixed-512" in held_out_rows


def test_hypergradient_noise_separates_trend_from_step_to_step_noise():
    # A steady trend within each interval has no local noise, but a large episode variance.
    values = [(i // 10, 0.1 * i) for i in range(40)]
    noise = arbiter_science.hypergradient_noise(values)
    assert noise["h_local_noise"] < 0.01 * noise["h_episode_variance"]
    alternating = [(0, (-1.0) ** i) for i in range(40)]
    assert arbiter_science.hypergradient_noise(alternating)["h_local_noise"] > 1.9
