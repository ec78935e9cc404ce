"""The files of a comparison's run folder: their names, and JSON read and written safely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from arbiter_env.files import atomic_write_text
from arbiter_env.lab.runlog.values import dumps_strict

CONFIG_FILE = "config.yaml"
RESULT_FILE = "result.json"
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
RUNS_CSV = "runs.csv"
AGGREGATES_JSON = "aggregates.json"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Writes ``data`` as strict JSON, atomically."""
    # Temp file, fsync, rename: a run interrupted mid-write never leaves a result that looks
    # finished, and a reader never sees half a file. Strict JSON: a non-finite number (a
    # diverged run's loss) is written as null, not NaN.
    atomic_write_text(path, dumps_strict(data, indent=2))


def read_json(path: Path) -> Any:
    """The parsed file (any JSON value), or ``None`` if it is missing or not valid JSON."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
