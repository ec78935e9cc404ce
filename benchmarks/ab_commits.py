"""Two checkouts A/B in one session: the population's throughput and the env against plain PyTorch.

    python benchmarks/ab_commits.py --old ../old-checkout --new . --rounds 3

Each checkout needs the package installed editable in its own ``.venv`` (``--old-python`` and
``--new-python`` name another interpreter). Every round runs ``population_throughput.py`` (N=16,
one thread) and ``perf.py`` (the env against a plain loop on digits-mlp and mnist1d-cnn) in the
old checkout, then the same in the new one, so that the two sides share the machine's load as
closely as a shared machine allows. The result is, per measurement, the median over rounds of
new / old (for population steps/s and for ratios alike); a steps/s row is better when above 1,
an env/plain row when below 1.

Old checkouts whose ``population_throughput.py`` took other options get them with
``--old-population-args`` (``"--paths mlp --group-by architecture"`` before the redesign).
Writes every round's records and the summary to ``--json``
(``benchmarks/results/ab_commits.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# The env against a plain loop, without the rows that take long or that an A/B does not need.
PERF_ARGS = shlex.split(
    "--tasks digits-mlp mnist1d-cnn --repeats 3 --skip sampler arbiter ppo sizes"
)


def _run(python: str, checkout: Path, script: str, args: list[str], record: Path) -> object:
    """Runs ``script`` of ``checkout`` with one thread; returns the JSON it wrote."""
    command = [python, f"benchmarks/{script}", "--threads", "1", "--json", str(record), *args]
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    subprocess.run(command, cwd=checkout, env=environment, check=True, capture_output=True)
    return json.loads(record.read_text())


def _measurements(population: list[dict], perf: dict) -> dict[str, float]:
    """One flat mapping of a round's numbers, named by what they measure."""
    values = {}
    for row in population:
        values[f"population_steps_per_s[{row['workload']}]"] = row["population_steps_per_s"]
        values[f"population_over_dummy[{row['workload']}]"] = row["ratio"]
    for row in perf["results"]:
        values[f"{row['measurement']}[{row['task']}]"] = row["value"]
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the baseline checkout")
    parser.add_argument("--new", type=Path, default=Path("."), help="the checkout under test")
    parser.add_argument("--old-python", help="default: OLD/.venv/bin/python")
    parser.add_argument("--new-python", help="default: NEW/.venv/bin/python")
    parser.add_argument("--old-population-args", default="", help="extra options, old side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "ab_commits.json"
    )
    args = parser.parse_args(argv)
    sides = {
        "old": (args.old.resolve(), args.old_python, shlex.split(args.old_population_args)),
        "new": (args.new.resolve(), args.new_python, []),
    }
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            measured = {}
            for side, (checkout, python, population_args) in sides.items():
                python = python or str(checkout / ".venv" / "bin" / "python")
                population = _run(
                    python,
                    checkout,
                    "population_throughput.py",
                    ["--n-envs", "16", "--repeats", "3", *population_args],
                    Path(scratch) / f"population_{side}.json",
                )
                perf = _run(
                    python,
                    checkout,
                    "perf.py",
                    PERF_ARGS,
                    Path(scratch) / f"perf_{side}.json",
                )
                measured[side] = _measurements(population, perf)
            rounds.append(measured)
            print(f"round {round_index + 1} of {args.rounds} done", file=sys.stderr)
    names = [name for name in rounds[0]["new"] if name in rounds[0]["old"]]
    summary = {
        name: statistics.median(r["new"][name] / r["old"][name] for r in rounds) for name in names
    }
    print(f"{'measurement':<48} {'new / old (median of rounds)':>30}")
    for name, ratio in summary.items():
        print(f"{name:<48} {ratio:>30.3f}")
    report = {"old": str(sides["old"][0]), "new": str(sides["new"][0]), "rounds": rounds}
    args.json.write_text(json.dumps(report | {"new_over_old": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
