"""The lab: running, logging and reporting experiments on top of the env and the controllers.

``cli`` (the ``arbiter`` command), ``experiments`` (comparisons and the benchmark suite: plan,
engines, workers, runner, results), ``runlog`` (JSONL and W&B run logs), ``report``,
``aggregates``, ``rliable_stats``, ``leaderboard``, ``plots`` and ``plot_styles`` (tables,
cross-task scores and figures), ``runfolder``, ``workers`` and ``wandb_utils``.
Nothing below the lab imports from it.
"""
