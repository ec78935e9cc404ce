"""Comparisons (``arbiter compare``): every controller on every task and seed, on equal terms.

An experiment is a YAML file under ``configs/experiments/`` loaded into :class:`ExperimentConfig`.
:func:`run_comparison` expands it into *runs* (controller × task × seed), executes each run in a
separate process (``engine="local"``) or as a Ray task (``engine="ray"``), and writes a run folder::

    RUN_DIR/
      config.yaml                       the resolved experiment (what ran, exactly)
      runs/TASK/LABEL/seed-S/           one folder per run, written by arbiter_env.lab.runlog.RunLogger:
        result.json                     status, metrics, the error if it failed
        intervals.jsonl                 one line per scheduling interval
        episodes.jsonl, run.json, wandb/
      models/TASK/LABEL/                a controller trained by this comparison (PPO): model.zip,
                                        result.json, its training logs
      results.csv, results.md           mean ± standard error over seeds, per task and controller,
                                        then IQM and P(improvement) across tasks, on
                                        normalised scores (arbiter_env.lab.aggregates)
      aggregates.json                   those aggregates with their bootstrap CIs (strict JSON)
      runs.csv                          one row per run
      plots/TASK/*.png, *.pdf           batch size and validation loss against samples, test accuracy
      plots/performance_profile.*       run-score distribution across tasks and seeds
      wandb/                            the summary W&B run and a link to every run of the
                                        comparison (wandb leet / wandb sync RUN_DIR/wandb)

Every controller sees the same seeds, the same task and the same sample budget; a seed fixes the
inner network's initialisation, batch order and probes (``BatchSizeEnv.reset(seed=...)``), so two
controllers on one seed start from the same network. Runs are deterministic on the CPU: both
engines give the same numbers, except for wall-clock times.

A run that raises is recorded as failed (its error goes into the table) and the others carry on.
Rerunning with the same ``run_dir`` resumes: runs whose result file records success are skipped;
failed and missing runs run again. :func:`rebuild_report` rebuilds the tables and plots from the
saved files alone (``arbiter plot RUN_DIR``).

Modules: :mod:`.config` (what a comparison is), :mod:`.plan` (its runs, a pure function of the
config), :mod:`.worker` (one run), :mod:`.engines` (local processes, Ray), :mod:`.runner` (the
driver: scheduling, resume, progress), :mod:`.results` (the report from the saved files),
:mod:`.commands` (``arbiter compare`` and ``arbiter plot``).
"""

from arbiter_env.lab.experiments.commands import (
    EXIT_IO_ERROR,
    add_comparison_subcommands,
    compare_command,
    plot_command,
)
from arbiter_env.lab.experiments.config import (
    ControllerSpec,
    EngineConfig,
    ExperimentConfig,
    WandbConfig,
    load_experiment,
    validate_names,
)
from arbiter_env.lab.experiments.plan import RunSpec, plan_runs
from arbiter_env.lab.experiments.results import load_results, rebuild_report
from arbiter_env.lab.experiments.runner import ComparisonResult, run_comparison
from arbiter_env.lab.experiments.worker import execute_run

__all__ = [
    "EXIT_IO_ERROR",
    "ComparisonResult",
    "ControllerSpec",
    "EngineConfig",
    "ExperimentConfig",
    "RunSpec",
    "WandbConfig",
    "add_comparison_subcommands",
    "compare_command",
    "execute_run",
    "load_experiment",
    "load_results",
    "plan_runs",
    "plot_command",
    "rebuild_report",
    "run_comparison",
    "validate_names",
]
