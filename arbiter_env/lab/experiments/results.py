"""A comparison's report from its saved files: tables, plots and the W&B summary run.

The numbers come from :mod:`arbiter_env.lab.report` and :mod:`arbiter_env.lab.aggregates` (pure functions
of the result records) and the
figures from :mod:`arbiter_env.lab.plots`; this module reads the run folder and writes the files.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbiter_env.config import to_dict
from arbiter_env.files import atomic_write_text
from arbiter_env.lab import plots
from arbiter_env.lab.aggregates import aggregate, aggregates_markdown, aggregates_note
from arbiter_env.lab.experiments.config import ExperimentConfig, load_experiment
from arbiter_env.lab.experiments.files import (
    AGGREGATES_JSON,
    CONFIG_FILE,
    RESULT_FILE,
    RESULTS_CSV,
    RESULTS_MD,
    RUNS_CSV,
    read_json,
)
from arbiter_env.lab.report import markdown_table, summarize
from arbiter_env.lab.runlog import INTERVALS_FILE, wandb_init_timeout
from arbiter_env.lab.runlog.values import dumps_strict, strict_json_value
from arbiter_env.lab.runlog.writers import read_jsonl
from arbiter_env.lab.wandb_utils import prepare_wandb, summary_run_id

if TYPE_CHECKING:  # matplotlib is imported only when a report is drawn
    from arbiter_env.lab.plots import FigureSize


def load_results(run_dir: str | Path) -> tuple[ExperimentConfig | None, list[dict[str, Any]]]:
    """The saved config (if any) and every evaluation result under ``run_dir/runs``.

    Each result gets ``"log"``: its interval rows from the JSONL file (empty if missing).
    """
    run_dir = Path(run_dir)
    config = load_experiment(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).is_file() else None
    results = []
    for path in sorted((run_dir / "runs").glob(f"*/*/seed-*/{RESULT_FILE}")):
        result = read_json(path)
        problem = _report_problem(result)
        if problem is not None:
            warnings.warn(f"{path}: skipped, {problem}.", stacklevel=2)
            continue
        assert isinstance(result, dict)
        result["log"] = read_jsonl(path.parent / INTERVALS_FILE)
        results.append(result)
    if config is not None:
        # Table order follows the config; results of other labels or seeds (a folder edited by
        # hand) are kept after them.
        pairs = [(task, spec.name) for task in config.tasks for spec in config.controllers]
        order = {pair: index for index, pair in enumerate(pairs)}
        results.sort(key=lambda r: (order.get((r["task"], r["label"]), len(order)), r["seed"]))
    return config, results


def rebuild_report(run_dir: str | Path, figure_size: FigureSize = "page") -> dict[str, Any]:
    """Writes the tables (CSV, Markdown) and the plots of ``run_dir`` from its saved files.

    Reruns nothing; used at the end of every comparison and by ``arbiter plot RUN_DIR``.
    ``figure_size``: ``"page"`` or ``"column"`` (:data:`arbiter_env.lab.plots.FIGURE_SIZES`).

    Returns:
        ``{"rows": summary rows, "aggregates": rows across tasks, "results_csv": path,
        "results_md": path, "runs_csv": path, "plots": [paths], "markdown": text}``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run folder {run_dir} does not exist.")
    config, results = load_results(run_dir)
    if not results:
        raise FileNotFoundError(f"No results under {run_dir / 'runs'}; is it a comparison folder?")
    targets = [r["target_accuracy"] for r in results if r.get("target_accuracy") is not None]
    target = config.target_accuracy if config is not None else next(map(float, targets), None)
    rows = summarize(results, target)
    aggregates = aggregate(results)
    title = config.name if config is not None else run_dir.name
    section = aggregates_markdown(aggregates, aggregates_note(results))
    markdown = markdown_table(rows, target, title=title, aggregates_section=section)
    if config is not None and config.description:
        markdown = markdown.replace("\n\n", f"\n\n{config.description.strip()}\n\n", 1)
    _write_csv(run_dir / RESULTS_CSV, rows)
    atomic_write_text(run_dir / RESULTS_MD, markdown)
    _write_csv(run_dir / RUNS_CSV, [{key: r.get(key) for key in _RUN_COLUMNS} for r in results])
    atomic_write_text(run_dir / AGGREGATES_JSON, dumps_strict(aggregates, indent=2) + "\n")
    plot_paths = plots.plot_comparison(results, run_dir / "plots", figure_size)
    return {
        "rows": rows,
        "aggregates": aggregates,
        "results_csv": run_dir / RESULTS_CSV,
        "results_md": run_dir / RESULTS_MD,
        "runs_csv": run_dir / RUNS_CSV,
        "plots": plot_paths,
        "markdown": markdown,
    }


_RUN_COLUMNS = (
    "task",
    "label",
    "controller",
    "seed",
    "status",
    "final_val_loss",
    "final_val_accuracy",
    "test_loss",
    "test_accuracy",
    "samples",
    "updates",
    "mean_batch_size",
    "wall_time",
    "samples_to_target",
    "seconds_to_target",
    "hypergradient_var",
    "diverged",
    "error",
)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return "" if value is None else value


WANDB_FOLDER = "wandb"
"""``RUN_DIR/wandb``: the summary run, and a link to every other W&B run of the comparison."""


def gather_wandb_runs(run_dir: str | Path) -> list[Path]:
    """Links every W&B run of the comparison into ``RUN_DIR/wandb``; returns the runs there.

    Each evaluation run (``runs/TASK/LABEL/seed-S/wandb/``) and each training run of a trained
    controller (``models/TASK/LABEL/wandb/``) keeps its files where it ran; a relative symbolic
    link to it in ``RUN_DIR/wandb`` (beside the summary run) makes that one folder the whole
    comparison, so that ``wandb leet RUN_DIR/wandb`` browses every run and ``wandb sync
    RUN_DIR/wandb`` uploads every run. Rerunning it adds the runs that are new.
    """
    run_dir = Path(run_dir)
    folder = run_dir / WANDB_FOLDER
    pattern = "*-run-*"  # offline-run-DATE-ID, or run-DATE-ID for an online run
    found = [
        path
        for top in ("runs", "models")
        for path in sorted((run_dir / top).glob(f"**/{WANDB_FOLDER}/{pattern}"))
        if path.is_dir() and not path.is_symlink()
    ]
    if found:
        folder.mkdir(exist_ok=True)
    for path in found:
        link = folder / path.name
        if not link.exists() and not link.is_symlink():
            with contextlib.suppress(OSError):  # a file system without links: runs stay apart
                link.symlink_to(os.path.relpath(path, folder), target_is_directory=True)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(pattern) if p.is_dir())


def log_wandb_summary(
    config: ExperimentConfig, run_dir: Path, report: dict[str, Any], wall_time: float
) -> None:
    """Adds a summary run to the comparison's W&B group: its tables and figures, as media.

    Its summary holds ``tables/results`` (every task and controller, the CSV's columns),
    ``tables/TASK`` (each task's rows), ``tables/across_tasks`` (the aggregates) and
    ``plots/...`` (every figure as an image). Kept in the run's summary, not its history, so
    they add no chart of table sizes. The run's id is fixed by the project, group and name, and
    it resumes if it exists, so a rerun of the comparison updates its one summary run instead of
    adding another.
    """
    if config.wandb.mode == "disabled":
        return
    try:
        import wandb

        name = f"{config.name}-summary"
        prepare_wandb(config.wandb.mode)
        run = wandb.init(
            project=config.wandb.project,
            entity=config.wandb.entity,
            group=config.wandb.group,
            job_type="summary",
            name=name,
            id=summary_run_id(config.wandb.project, config.wandb.entity, config.wandb.group, name),
            resume="allow",
            tags=["summary"],
            dir=str(run_dir.resolve()),
            mode=config.wandb.mode,
            config=to_dict(config),
            reinit="finish_previous",
            settings=wandb.Settings(
                silent=True,
                console="off",
                x_disable_stats=True,
                disable_git=True,
                init_timeout=wandb_init_timeout(),
            ),
        )
        rows = report["rows"]
        tables = {"tables/results": rows}
        for task in dict.fromkeys(row.get("task") for row in rows if row.get("task")):
            tables[f"tables/{task}"] = [row for row in rows if row.get("task") == task]
        if report.get("aggregates"):
            tables["tables/across_tasks"] = report["aggregates"]
        for key, table_rows in tables.items():
            run.summary[key] = _wandb_table(wandb, table_rows)
        for path in report["plots"]:
            # plots/TASK/NAME, and plots/NAME for the plots across tasks.
            key = "plots/" + Path(path).relative_to(run_dir / "plots").with_suffix("").as_posix()
            run.summary[key] = wandb.Image(str(path))
        run.summary["wall_time"] = wall_time
        run.finish()
    except Exception as error:  # broad on purpose: the local report is already written
        warnings.warn(f"W&B summary not logged ({type(error).__name__}: {error}).", stacklevel=2)


def _wandb_table(wandb: Any, rows: list[dict[str, Any]]) -> Any:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    data = [[strict_json_value(row.get(column)) for column in columns] for row in rows]
    return wandb.Table(columns=columns, data=data)


def _report_problem(result: Any) -> str | None:
    """Why a saved result cannot go into a report (``None`` if it can)."""
    if not isinstance(result, dict):
        return f"{RESULT_FILE} is not a JSON object"
    for key, kind in (("task", str), ("label", str), ("seed", int), ("status", str)):
        if not isinstance(result.get(key), kind) or isinstance(result.get(key), bool):
            return f"its {key!r} is missing or not a {kind.__name__}"
    return None
