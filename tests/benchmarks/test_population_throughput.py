"""``benchmarks/population_throughput.py --breakdown`` accounts for a vector step's time."""

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import population_throughput  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

from arbiter_env.envs.batch_size import BatchSizeEnv  # noqa: E402
from arbiter_env.vector.groups import MemberGroup  # noqa: E402


def test_breakdown_shares_are_parts_of_the_vector_step_and_the_timers_are_removed():
    train = MemberGroup.train
    shares = population_throughput.breakdown("digits-mlp", 2, "mixed", 4, 32, "cpu")
    assert shares["vector step"] == 1.0
    groups = shares["groups: training"]
    assert 0 < groups <= 1
    inside = [label for label in shares if label.startswith("  ")]
    assert sum(shares[label] for label in inside) <= groups
    outside = [
        "groups: training",
        "validation pass",
        "resets",
        "members' BatchSizeEnv.finish_interval",
    ]
    assert sum(shares[label] for label in outside) <= 1
    assert MemberGroup.train is train and "wrapper" not in BatchSizeEnv.finish_interval.__qualname__
