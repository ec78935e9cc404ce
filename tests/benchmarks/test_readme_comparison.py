"""The README's comparison tables are exactly what the script formats from its saved run."""

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import readme_comparison  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def test_the_readme_tables_are_the_saved_run_formatted_by_the_script() -> None:
    snapshot = json.loads(readme_comparison.SNAPSHOT.read_text())
    readme = readme_comparison.README.read_text()
    assert readme_comparison.readme_block(readme) == readme_comparison.readme_tables(snapshot)
    assert snapshot["config"] == "configs/experiments/digits-mlp.yaml"


def test_the_saved_run_has_every_controller_of_the_default_comparison() -> None:
    from arbiter_env.lab.experiments import load_experiment

    snapshot = json.loads(readme_comparison.SNAPSHOT.read_text())
    config = load_experiment(readme_comparison.CONFIG)
    assert [row["controller"] for row in snapshot["rows"]] == [c.name for c in config.controllers]
    assert all(row["seeds"] == len(config.seeds) for row in snapshot["rows"])
