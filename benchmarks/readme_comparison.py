"""The README's example comparison: runs it, saves its numbers, and writes the README's tables.

    python benchmarks/readme_comparison.py                  # run (or resume) and save the numbers
    python benchmarks/readme_comparison.py --write-readme   # ... and put the tables in README.md

Runs ``configs/experiments/digits-mlp.yaml`` (the default comparison) into ``--run-dir``; an
existing folder of the same experiment resumes, so a finished one only re-reads its results.
The summary rows and aggregates go to ``benchmarks/results/readme_comparison.json`` with the command,
the commit and the wall time; :func:`readme_tables` formats them, and ``--write-readme``
replaces the README's block between the ``readme-comparison`` markers with them.
``tests/benchmarks/test_readme_comparison.py`` checks that the README holds exactly what this
script formats from the saved file, so the README's numbers are the saved run's.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "experiments" / "digits-mlp.yaml"
SNAPSHOT = ROOT / "benchmarks" / "results" / "readme_comparison.json"
README = ROOT / "README.md"
START = "<!-- readme-comparison:start (benchmarks/readme_comparison.py --write-readme) -->"
END = "<!-- readme-comparison:end -->"

TASK_COLUMNS = (
    ("final_val_loss", "final val loss", "{:.4f}"),
    ("test_accuracy", "test accuracy", "{:.4f}"),
    ("mean_batch_size", "mean batch size", "{:.1f}"),
    ("updates", "inner updates", "{:.0f}"),
)


def run(run_dir: Path) -> dict[str, Any]:
    """Runs (or resumes) the comparison and returns the snapshot to save."""
    from arbiter_env.lab.experiments import load_experiment, run_comparison
    from arbiter_env.lab.runlog.values import strict_json_value

    started = time.perf_counter()
    result = run_comparison(load_experiment(CONFIG), run_dir)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    keys = ["task", "controller", "kind", "ok", "seeds", "diverged", "best_fixed"]
    for key, _, _ in TASK_COLUMNS:
        keys += [f"{key}_mean", f"{key}_sem"]
    snapshot = {
        "command": "python benchmarks/readme_comparison.py --write-readme",
        "config": str(CONFIG.relative_to(ROOT)),
        "run_dir": _relative(run_dir),
        "commit": commit,
        "machine": f"{platform.machine()}, {_cpus()} CPUs",
        "wall_time_seconds": round(time.perf_counter() - started, 1),
        "runs_executed": result.executed,
        "runs_resumed": result.executed < _planned_runs(run_dir),
        "rows": strict_json_value([{k: row.get(k) for k in keys} for row in result.report["rows"]]),
        "aggregates": strict_json_value(result.report["aggregates"]),
    }
    if snapshot["runs_resumed"]:
        # Only the tables were rebuilt: keep when and how fast the runs themselves ran.
        previous = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.is_file() else {}
        if previous.get("run_dir") == _relative(run_dir) and not previous.get("runs_resumed"):
            snapshot |= {k: previous[k] for k in ("commit", "wall_time_seconds", "machine")}
            snapshot |= {"runs_resumed": False, "report_commit": commit}
    return snapshot


def _relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _planned_runs(run_dir: Path) -> int:
    """Evaluation and training runs of the comparison (their result files)."""
    return len(list(run_dir.glob("runs/*/*/seed-*/result.json"))) + len(
        list(run_dir.glob("models/*/*/result.json"))
    )


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _cell(mean: Any, sem: Any, fmt: str) -> str:
    if mean is None:
        return "–"
    return f"{fmt.format(mean)} ± {fmt.format(sem)}" if sem is not None else fmt.format(mean)


def readme_tables(snapshot: dict[str, Any]) -> str:
    """The README's tables (Markdown) from a saved snapshot."""
    header = [
        "controller",
        "runs",
        "diverged",
        *[f"{name} (± s.e.)" for _, name, _ in TASK_COLUMNS],
    ]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in snapshot["rows"]:
        label = f"**{row['controller']}** ★" if row["best_fixed"] else row["controller"]
        cells = [label, f"{row['ok']}/{row['seeds']}", str(row["diverged"])]
        cells += [_cell(row[f"{k}_mean"], row[f"{k}_sem"], f) for k, _, f in TASK_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| controller | kind | IQM normalised test accuracy [95% CI] | IQM normalised val loss "
        "[95% CI] | P(better test accuracy than best fixed) [95% CI] |",
        "|---|---|---:|---:|---:|",
    ]
    for row in snapshot["aggregates"]:
        if row["kind"] == "fixed":
            continue
        cells = [row["controller"], row["kind"]]
        for key in ("test_accuracy_iqm", "final_val_loss_iqm", "test_accuracy_p_improvement"):
            if row.get(key) is None:
                cells.append("–")
                continue
            digits = 2 if "p_improvement" in key else 3
            cells.append(
                f"{row[key]:.{digits}f} [{row[key + '_low']:.{digits}f}, "
                f"{row[key + '_high']:.{digits}f}]"
            )
        lines.append("| " + " | ".join(cells) + " |")
    took = (
        "(resumed from a finished folder, so no wall time)"
        if snapshot["runs_resumed"]
        else f"in {snapshot['wall_time_seconds']:.0f} s"
    )
    rebuilt = (
        f"; tables rebuilt from its run folder at commit {snapshot['report_commit']}"
        if snapshot.get("report_commit")
        else ""
    )
    lines += [
        "",
        f"Runs measured at commit {snapshot['commit']} on {snapshot['machine']} {took}, shared "
        f"with other jobs{rebuilt} (`{snapshot['command']}`, which saves "
        "`benchmarks/results/readme_comparison.json`).",
    ]
    return "\n".join(lines) + "\n"


def readme_block(text: str) -> str:
    """The README's current block between the markers."""
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].strip("\n") + "\n"


def write_readme(snapshot: dict[str, Any]) -> None:
    text = README.read_text()
    start, end = text.index(START) + len(START), text.index(END)
    README.write_text(text[:start] + "\n" + readme_tables(snapshot) + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "readme-digits-mlp")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    snapshot = run(args.run_dir)
    SNAPSHOT.write_text(json.dumps(snapshot, indent=2, allow_nan=False) + "\n")
    print(readme_tables(snapshot))
    if args.write_readme:
        write_readme(snapshot)


if __name__ == "__main__":
    main()
