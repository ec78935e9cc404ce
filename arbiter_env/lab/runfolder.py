"""One writer per run folder, and what a run's result records of its logs.

* :class:`RunFolderLock` takes an exclusive ``flock`` on ``RUN_DIR/.arbiter.lock`` for as long as
  a command writes the folder. A second ``arbiter compare``, ``train``, ``evaluate`` or
  ``episode`` on the same folder fails at once with :class:`RunFolderBusy`, whose message names
  the holder (pid, host, command, start time); the command line turns it into exit code 2. The
  operating system releases the lock when the holder exits, however it exits (SIGKILL
  included), so a stale lock file never blocks anyone: only a live holder does.
* Files are written whole or not at all (:func:`arbiter_env.files.atomic_write_text`), so a
  reader (or a resume after a kill, or a full disk) sees the old file or the new one.
* :func:`count_log_rows` and :func:`file_digest` let a run's ``result.json`` record what its logs
  held when it was written; resume trusts a run only if the logs still match (see
  :mod:`arbiter_env.lab.experiments.runner`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "LOCK_FILE",
    "RunFolderBusy",
    "RunFolderError",
    "RunFolderLock",
    "check_run_folder",
    "count_log_rows",
    "file_digest",
]

LOCK_FILE = ".arbiter.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; the lock is then advisory only
    fcntl = None  # type: ignore[assignment]


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder's lock."""


class RunFolderError(ValueError):
    """A run folder that cannot be written: a file, under a file, or in a read-only folder."""


def check_run_folder(folder: str | os.PathLike[str], option: str = "--run-dir") -> None:
    """Refuses a run folder that could not be written, before any work starts.

    Raises:
        RunFolderError: one line naming the folder, what is wrong and the fix.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"{option} {folder} is a file, not a folder; choose another path.")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RunFolderError(
            f"{option} {folder} lies under {existing}, which is a file; choose another path."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "is" if existing == folder else f"would be created in {existing}, which is"
        raise RunFolderError(
            f"{option} {folder} {where} not writable (read-only); choose a folder you can write."
        )


class RunFolderLock:
    """An exclusive, non-blocking lock on a run folder, held until :meth:`release` (or exit).

    Use as a context manager. Re-entrant within one process for the same folder (a command that
    locks the folder may call library code that locks it again).

    Raises:
        RunFolderBusy: another process holds the lock; the message names it.
    """

    # Shared by every lock of this process on purpose: folder -> nesting depth, for re-entrance.
    _held: ClassVar[dict[Path, int]] = {}

    def __init__(self, folder: str | os.PathLike[str], command: str | None = None):
        self.folder = Path(folder).resolve()
        self.command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self._handle: Any = None

    def acquire(self) -> RunFolderLock:
        """Takes the lock (or nests once more in this process) and records who holds it.

        Raises:
            RunFolderBusy: another process holds the lock; the message names it.
        """
        if self.folder in self._held:
            self._held[self.folder] += 1
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_FILE
        # "a+": never truncate before we hold the lock (the holder's details are in there).
        handle = path.open("a+")
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = _describe(handle.read())
                handle.close()
                raise RunFolderBusy(
                    f"Run folder {self.folder} is in use by {holder}. Wait for it to finish "
                    "(or stop it), or choose another --run-dir; two writers would corrupt the "
                    "folder."
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "command": self.command,
                    "started": _dt.datetime.now().isoformat(timespec="seconds"),
                }
            )
        )
        handle.flush()
        self._handle = handle
        self._held[self.folder] = 1
        return self

    def release(self) -> None:
        """Undoes one :meth:`acquire`; the last one closes the file, which frees the lock."""
        depth = self._held.get(self.folder, 0)
        if depth > 1:
            self._held[self.folder] = depth - 1
            return
        self._held.pop(self.folder, None)
        if self._handle is not None:
            # Closing the file releases the flock; the file itself stays (deleting it would let
            # a waiter lock an unlinked inode while a third process creates a new one).
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return (
            f"process {holder['pid']} on {holder['host']} ('{holder['command']}', started "
            f"{holder['started']})"
        )
    except (ValueError, KeyError, TypeError):
        return "another process"


def count_log_rows(path: Path) -> int | None:
    """Number of lines of a JSONL log if every line is valid JSON; ``None`` if any is not."""
    if not path.is_file():
        return 0
    count = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                json.loads(line)
            except json.JSONDecodeError:
                return None
            count += 1
    return count


def file_digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes (``None`` if it does not exist)."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
