"""``arbiter tasks`` and ``arbiter controllers``: what is registered."""

from __future__ import annotations

import argparse

from arbiter_env.controllers import describe_controller, list_controllers
from arbiter_env.lab.cli.output import console
from arbiter_env.tasks import get_family, list_families, list_tasks, make_task, needs_data_files


def cmd_tasks(args: argparse.Namespace) -> int:
    """``arbiter tasks``: a table of tasks and one of task families."""
    from rich.table import Table

    table = Table(
        title="Tasks",
        caption="data: 'built in' needs nothing; 'local files' reads files you already have "
        "from data_dir (-t data_dir=PATH, or $ARBITER_DATA_DIR, default ~/data)",
    )
    table.add_column("task", no_wrap=True)
    table.add_column("data", no_wrap=True)
    for column in ("optimizer", "lr", "momentum", "epochs", "intervals", "batch", "start"):
        table.add_column(column, justify="left" if column == "optimizer" else "right")
    for name in list_tasks():
        task = make_task(name)  # cheap: data and model are built lazily
        opt = task.optimizer
        table.add_row(
            name,
            "local files" if needs_data_files(name) else "built in",
            opt.name,
            f"{opt.lr:g}",
            f"{opt.momentum:g}" if opt.name == "sgd" else "-",
            f"{task.epochs:g}",
            str(task.num_intervals),
            f"{task.batch_min}-{task.batch_max}",
            str(task.batch_start),
        )
    console().print(table)
    console().print(_families_table())
    return 0


def _families_table() -> object:
    from rich.table import Table

    families = Table(title="Task families")
    families.add_column("family", no_wrap=True)
    for column in ("base task", "lr range", "momenta", "widths", "epochs"):
        families.add_column(column)
    for name in list_families():
        family = get_family(name)
        families.add_row(
            name,
            family.base_task,
            f"{family.lr_range[0]:g}..{family.lr_range[1]:g}",
            ", ".join(f"{m:g}" for m in family.momenta),
            ", ".join(map(str, family.widths)) or "base",
            ", ".join(f"{e:g}" for e in family.epochs) or "base",
        )
    return families


def cmd_controllers(args: argparse.Namespace) -> int:
    """``arbiter controllers``: the registered controllers, one line of description each."""
    names = list_controllers()
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:<{width}}  {plain_text(describe_controller(name))}".rstrip())
    return 0


def plain_text(text: str) -> str:
    """A docstring line without its reStructuredText markup (``x``, :func:`x`, `x`, **x**)."""
    import re

    text = re.sub(r":[\w:]+:`~?([^`]+)`", r"\1", text)  # :func:`name`, :class:`~a.B`
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    return re.sub(r"`([^`]+)`_?", r"\1", text)
