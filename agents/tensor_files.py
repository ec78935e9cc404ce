"""Reading ``torch.save`` files of tensors and plain values, with one-line errors.

``torch.load(weights_only=True)`` builds tensors, numbers, strings and containers only; anything
else in the file is refused unexecuted. What it raises is a page of advice; the command line
wants one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["first_line", "read_tensor_file"]


def first_line(error: BaseException) -> str:
    """``error``'s type and the first sentence of its message (torch's run on for lines)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {(lines[0] if lines else '').split('. ')[0]}"


def read_tensor_file(path: Path, keys: Sequence[str], what: str) -> dict[str, Any]:
    """The mapping saved in ``path``, once it holds every one of ``keys``.

    Args:
        path: The file (written by ``torch.save``).
        keys: Keys the mapping must hold.
        what: What the file should be, for the message (``"an Arbiter checkpoint"``).

    Raises:
        ValueError: one line naming ``path``: damaged, holding objects other than tensors and
            plain values (nothing in it was run), or not ``what``.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{path} was refused: it holds objects other than tensors and plain values, which "
            "only a code-running unpickler could build; nothing in it was run."
        ) from None
    except (RuntimeError, EOFError, ValueError) as error:
        raise ValueError(
            f"{path} is not a readable checkpoint, damaged or truncated ({first_line(error)})."
        ) from None
    missing = [key for key in keys if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(
            f"{path} is not {what}: it lacks {', '.join(missing)}; was it saved by another "
            "controller?"
        )
    return state
