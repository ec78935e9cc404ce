"""A restricted unpickler for data files: numpy arrays, dtypes and plain containers, nothing else.

``pickle.load`` runs whatever callable a file names, so a crafted data file would execute code the
moment it is read. The CIFAR "python version" batches are pickles, so they are read with
:func:`restricted_load`, which resolves only the globals the format needs (see
:data:`ALLOWED_GLOBALS`). Any other global -- ``os.system``, ``builtins.eval``, a class of some
module -- raises :class:`UnsafePickleError` when the unpickler meets its ``GLOBAL`` /
``STACK_GLOBAL`` opcode, that is before the callable is looked up, let alone called; nothing the
file names outside the list is ever imported or built.

This follows the "Restricting Globals" recipe of the Python documentation
(https://docs.python.org/3/library/pickle.html#restricting-globals).
"""

from __future__ import annotations

import builtins
import codecs
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "restricted_load"]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside :data:`ALLOWED_GLOBALS`; nothing was executed."""


def _numpy_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    # numpy 2 moved numpy.core to numpy._core; files written by either (and by numpy 1 under
    # python 2, like the official CIFAR archive) name one or the other. Both names resolve to the
    # functions of the installed numpy, without importing the deprecated numpy.core alias.
    from numpy._core import multiarray, numeric

    resolved: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for package in ("numpy.core", "numpy._core"):
        resolved[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        resolved[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        # Private in numpy and absent from its type stubs, but pickles of arrays name it.
        resolved[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # type: ignore[attr-defined]
    return resolved


# Plain, side-effect-free constructors; no eval/exec/getattr/__import__/open and the like.
_SAFE_BUILTINS = (
    "bool",
    "bytearray",
    "bytes",
    "complex",
    "dict",
    "float",
    "frozenset",
    "int",
    "list",
    "set",
    "slice",
    "str",
    "tuple",
)

ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    **_numpy_globals(),
    **{("builtins", name): getattr(builtins, name) for name in _SAFE_BUILTINS},
    **{("__builtin__", name): getattr(builtins, name) for name in _SAFE_BUILTINS},  # python 2
    # Python 3 pickles of bytes at protocol <= 2 (and numpy's array buffers in them) go through
    # codecs.encode(text, "latin1"), which only converts a string.
    ("_codecs", "encode"): codecs.encode,
}
"""``(module, name)`` → object: the only globals :func:`restricted_load` resolves."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str, **kwargs: Any):
        super().__init__(file, **kwargs)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source} names {module}.{name}, which a data file has no reason to "
                "contain; refusing to load it (only numpy arrays, dtypes and plain containers are "
                "allowed, and nothing in the file was executed). Replace the file with one from "
                "the official source."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source} uses persistent ids; it is not a data file.")


def restricted_load(path: str | Path, *, encoding: str = "bytes") -> Any:
    """Unpickles ``path`` allowing only :data:`ALLOWED_GLOBALS`.

    Args:
        path: The pickle file.
        encoding: How python 2 ``str`` objects are decoded (``"bytes"`` keeps them as bytes, as
            the CIFAR batches need).

    Raises:
        UnsafePickleError: The file names any other global (nothing was executed).
        pickle.UnpicklingError, EOFError, ValueError, TypeError: The file is not a valid pickle.
    """
    path = Path(path)
    with path.open("rb") as handle:
        return _RestrictedUnpickler(handle, str(path), encoding=encoding).load()
