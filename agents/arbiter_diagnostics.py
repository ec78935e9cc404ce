"""What Arbiter reports (its search diagnostics, which of its two modes ran) and its set-up helpers.

:func:`search_diagnostics` turns one interval's search (kept on the device by
:class:`SearchDiagnostics`, so that meta-steps never synchronise) into the ``info["arbiter"]``
record described in :meth:`arbiter_env.agents.arbiter.Arbiter.interval_diagnostics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from arbiter_env.agents.arbiter_config import Milestone
from arbiter_env.agents.arbiter_network import logit_to_batch_size

if TYPE_CHECKING:
    from arbiter_env.training.trainer import InnerTrainer


class SearchDiagnostics:
    """Running sums over one interval's meta-steps, kept on the device (no sync per step)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        """Starts a new interval."""
        self.meta_steps = 0
        self.dF_ds = torch.zeros((), device=self.device)
        self.temperature = torch.zeros((), device=self.device)

    def add(self, dF_ds: torch.Tensor, temperature: torch.Tensor) -> None:
        """Adds one meta-step's ``dF/ds`` and temperature component."""
        self.meta_steps += 1
        self.dF_ds += dF_ds.detach().float()
        self.temperature += temperature.float()


def search_diagnostics(
    search: SearchDiagnostics,
    last_candidates: torch.Tensor,
    alpha: torch.Tensor,
    response_map: nn.Linear | None,
    last_logit: torch.Tensor,
    logit_ready: Any,
    bounds: tuple[int, int],
) -> dict[str, Any]:
    """The interval's search as plain numbers, with one device synchronisation.

    Args:
        search: The interval's running sums.
        last_candidates: The latest candidate logits.
        alpha: The mixing weights before the decision resets them.
        response_map: The response map (``None``: Arbiter variants without one).
        last_logit: The latest mixed logit ``s`` (a host copy, written asynchronously).
        logit_ready: The CUDA event that marks the copy as done (``None`` on the CPU).
        bounds: ``(b_min, b_max)`` of the stretched logit.
    """
    b_min, b_max = bounds
    count = max(search.meta_steps, 1)
    map_norm = (
        torch.linalg.vector_norm(response_map.weight.detach())
        if response_map is not None
        else torch.tensor(math.nan)
    )
    values = torch.cat(
        [
            last_candidates.float().cpu(),
            alpha.detach().float().cpu(),
            torch.stack([search.dF_ds / count, search.temperature / count]).float().cpu(),
            map_norm.reshape(1).float().cpu(),
        ]
    ).tolist()
    n = len(last_candidates)
    candidates, alphas = values[:n], values[n : 2 * n]
    dF_ds, temperature, map_norm_value = values[2 * n :]
    if search.meta_steps == 0:
        dF_ds = temperature = math.nan
    if logit_ready is not None:
        logit_ready.synchronize()
    s = float(last_logit)
    diagnostics: dict[str, Any] = {
        "s": s,
        "B_s": logit_to_batch_size(s, b_min, b_max),
        "meta_steps": search.meta_steps,
        "dF_ds": dF_ds,
        "map_norm": map_norm_value,
        "temperature": temperature,
        "temperature_gain": temperature * s,
    }
    for i, logit in enumerate(candidates):
        diagnostics[f"candidate_{i}"] = logit_to_batch_size(logit, b_min, b_max)
    for i, value in enumerate(alphas):
        diagnostics[f"alpha_{i}"] = value
    return diagnostics


def fused_adam_supported(device: torch.device) -> bool | None:
    """``fused=True`` where torch has a fused Adam (CPU, CUDA), else torch's default."""
    return True if device.type in ("cpu", "cuda") else None


def feature_width(trainer: InnerTrainer) -> int:
    """Width F of the inner network's penultimate features, also before the first reset."""
    if trainer.model is not None:
        return trainer.feature_width
    # Before the first reset the trainer has no network yet: build a throwaway one just to read
    # its output layer's input width, in a fork of the global RNG so that nothing else sees it.
    with torch.random.fork_rng(devices=[]):
        model = trainer.task.model(trainer.data.input_shape, trainer.data.num_classes)
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(
            f"Task {trainer.task.name!r}: the model has no nn.Linear output layer, which Arbiter's "
            "response injection needs."
        )
    return int(linears[-1].in_features)


def parse_schedule(schedule: Sequence[Milestone | dict[str, Any]] | None) -> list[Milestone]:
    """Milestones (or their dicts) sorted by interval; two at one interval are an error."""
    milestones = [m if isinstance(m, Milestone) else Milestone(**m) for m in schedule or []]
    intervals = [m.interval for m in milestones]
    if len(set(intervals)) != len(intervals):
        raise ValueError(f"The schedule has two milestones at the same interval: {intervals}.")
    return sorted(milestones, key=lambda m: m.interval)


MODES_DOC = "docs/logging_and_cli.md#arbiters-two-modes"


def mode_notes(checkpoint: str | None = None, learned_timesteps: int = 0) -> list[str]:
    """Which of Arbiter's two modes produced a run's numbers, and which number to report.

    Arbiter learns online within each episode; what differs is where it starts: fresh (the
    paper's setting, and every comparison's), or from a checkpoint (or after ``learn``), already
    meta-trained on earlier episodes.

    Args:
        checkpoint: The checkpoint the agent was loaded from; ``None`` for a fresh one.
        learned_timesteps: Env steps one agent learned over before playing the seeds.
    """
    if checkpoint is not None:
        mode = (
            f"Arbiter mode: started from the checkpoint {checkpoint} (φ and the response map "
            "meta-trained on earlier episodes) and went on learning online within each episode. "
            "Schedules and accuracies differ from a fresh agent on the same seed."
        )
    elif learned_timesteps:
        mode = (
            f"Arbiter mode: one agent learned over {learned_timesteps:,} env steps first, then "
            "played the seeds, learning online within each episode."
        )
    else:
        mode = (
            "Arbiter mode: learning online from scratch: a fresh agent per seed, meta-trained "
            "only within its own episode (no checkpoint loaded), as in `arbiter compare`."
        )
    return [
        mode,
        "Report the from-scratch online numbers (this mode in `arbiter compare`) for Arbiter as "
        f"a batch-size scheduler; see {MODES_DOC}.",
    ]
