"""Action encodings: one batch-size ladder, three ways to choose on it.

* ``discrete``: ``Discrete(k)``, index into a geometric ladder from ``batch_min`` to ``batch_max``;
* ``continuous``: ``Box(-1, 1, (1,))`` mapped log-uniformly onto ``[batch_min, batch_max]``;
* ``relative``: ``Discrete(3)``, halve / keep / double the current size, clipped to the bounds.

``encode(batch_size)`` and ``decode(action)`` translate between batch sizes and actions, so that a
controller that thinks in batch sizes can act through any encoding.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from gymnasium import spaces

ActionEncodingName = Literal["discrete", "continuous", "relative"]
ACTION_ENCODINGS = ("discrete", "continuous", "relative")

HALVE, KEEP, DOUBLE = 0, 1, 2


def geometric_ladder(batch_min: int, batch_max: int, size: int | None = None) -> np.ndarray:
    """Distinct integer batch sizes spaced geometrically from ``batch_min`` to ``batch_max``.

    By default one rung per doubling, so 8..512 gives 8, 16, 32, 64, 128, 256, 512.
    """
    if not 1 <= batch_min <= batch_max:
        raise ValueError(f"Need 1 <= batch_min <= batch_max, got {batch_min}, {batch_max}.")
    if size is None:
        size = round(math.log2(batch_max / batch_min)) + 1
    if size < 1:
        raise ValueError(f"The ladder needs at least one rung, got size={size}.")
    rungs = np.geomspace(batch_min, batch_max, num=size)
    return np.unique(np.clip(np.rint(rungs), batch_min, batch_max).astype(np.int64))


class ActionEncoding:
    """Maps actions of one Gymnasium space to batch sizes and back.

    Args:
        name: ``"discrete"``, ``"continuous"`` or ``"relative"``.
        batch_min: Smallest batch size.
        batch_max: Largest batch size.
        ladder_size: Rungs of the discrete ladder (default: one per doubling).
    """

    def __init__(
        self,
        name: ActionEncodingName,
        batch_min: int,
        batch_max: int,
        ladder_size: int | None = None,
    ):
        if name not in ACTION_ENCODINGS:
            raise ValueError(f"Unknown action_encoding {name!r}; choose one of {ACTION_ENCODINGS}.")
        self.name = name
        self.batch_min, self.batch_max = int(batch_min), int(batch_max)
        self.ladder = geometric_ladder(self.batch_min, self.batch_max, ladder_size)
        self.space: spaces.Space
        if name == "discrete":
            self.space = spaces.Discrete(len(self.ladder))
        elif name == "continuous":
            self.space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        else:
            self.space = spaces.Discrete(3)

    def decode(self, action: object, current_batch_size: int) -> int:
        """The batch size that ``action`` selects; raises ``ValueError`` if it is outside the space."""
        checked = self._validated(action)
        if self.name == "discrete":
            return int(self.ladder[int(checked)])
        if self.name == "continuous":
            fraction = (float(np.asarray(checked).reshape(-1)[0]) + 1.0) / 2.0
            log_size = math.log(self.batch_min) + fraction * math.log(
                self.batch_max / self.batch_min
            )
            return int(min(max(round(math.exp(log_size)), self.batch_min), self.batch_max))
        factor = {HALVE: 0.5, KEEP: 1.0, DOUBLE: 2.0}[int(checked)]
        return int(min(max(round(current_batch_size * factor), self.batch_min), self.batch_max))

    def encode(self, batch_size: int, current_batch_size: int) -> int | np.ndarray:
        """The action that brings the batch size closest to ``batch_size``.

        For ``relative``, that is one halving or doubling toward it (or keeping the size when it is
        already the closest reachable one).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        target = min(max(int(batch_size), self.batch_min), self.batch_max)
        if self.name == "discrete":
            return int(np.argmin(np.abs(np.log(self.ladder) - math.log(target))))
        if self.name == "continuous":
            span = math.log(self.batch_max / self.batch_min)
            fraction = math.log(target / self.batch_min) / span if span > 0 else 0.0
            return np.array([2.0 * fraction - 1.0], dtype=np.float32)
        candidates = {
            action: self.decode(action, current_batch_size) for action in (HALVE, KEEP, DOUBLE)
        }
        return min(candidates, key=lambda a: (abs(math.log(candidates[a] / target)), a != KEEP))

    def settled_size(self, batch_size: int, current_batch_size: int) -> int:
        """The size a controller that keeps asking for ``batch_size`` ends up training with.

        The nearest rung for ``discrete``, the rounded size for ``continuous``, and for
        ``relative`` the size that halving or doubling from ``current_batch_size`` settles on.
        """
        current = reached = int(current_batch_size)
        for _ in range(64):  # relative: one halving or doubling per step
            reached = self.decode(self.encode(batch_size, current), current)
            if reached == current:
                break
            current = reached
        return reached

    def _validated(self, action: object) -> np.ndarray:
        """``action`` as an array (0-d for the discrete encodings), once it is in the space."""
        candidate = action
        # numpy would turn "0.5" into 0.5, True into 1 and 1+0j into 1 (with a warning); an
        # action of the wrong kind is a bug in the caller, so refuse it instead of guessing.
        kind = "i" if _plain_int(action) else "O"
        if kind == "O" and _array_like(action):
            kind = np.asarray(action).dtype.kind
        allowed = "fiu" if isinstance(self.space, spaces.Box) else "iu"
        if kind not in allowed:
            raise ValueError(
                f"Action {action!r} ({type(action).__name__}) is outside the action space "
                f"{self.space} (action_encoding={self.name!r}): it is not "
                + ("a real number." if allowed == "fiu" else "an integer.")
            )
        try:
            if isinstance(self.space, spaces.Box):
                candidate = np.asarray(action, dtype=np.float32).reshape(self.space.shape)
            elif isinstance(action, np.ndarray) and action.size == 1:
                candidate = action.reshape(()).item()
            valid = self.space.contains(candidate)
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ValueError(
                f"Action {action!r} is outside the action space {self.space} "
                f"(action_encoding={self.name!r})."
            )
        return np.asarray(candidate)


def _plain_int(action: object) -> bool:
    """A Python ``int`` (not ``bool``): numpy holds one beyond int64 as an object, not a number."""
    return isinstance(action, int) and not isinstance(action, bool)


def _array_like(action: object) -> bool:
    """Numbers, numpy scalars/arrays and (nested) lists of them; not strings or other objects."""
    if isinstance(action, str | bytes):
        return False
    if isinstance(action, bool | int | float | complex | np.generic | np.ndarray):
        return True
    if isinstance(action, list | tuple):
        return all(_array_like(item) for item in action)
    return hasattr(action, "__array__")  # e.g. a torch tensor
