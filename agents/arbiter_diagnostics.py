"""What Arbiter reports: each interval's search, and which of its two modes produced a run.

:class:`SearchDiagnostics` keeps one interval's search on the device, so that meta-steps never
synchronise, and turns it into the ``info["arbiter"]`` record described in
:meth:`arbiter_env.agents.arbiter.Arbiter.interval_diagnostics`. :func:`mode_notes` says which
number of a run to report.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from arbiter_env.agents.arbiter_network import logit_to_batch_size


class SearchDiagnostics:
    """One interval's search: running sums over its meta-steps and the latest candidates and s.

    Everything stays on the device; the host copy of s is written without waiting (on CUDA an
    event marks it as done).

    Args:
        device: The agent's device.
        num_candidates: N, the number of candidates φ proposes.
        bounds: ``(b_min, b_max)`` of the stretched logit.
    """

    def __init__(self, device: torch.device, num_candidates: int, bounds: tuple[int, int]):
        self.device = device
        self.bounds = bounds
        on_cuda = device.type == "cuda"
        self.last_logit = torch.zeros((), pin_memory=on_cuda)
        self._logit_ready = torch.cuda.Event() if on_cuda else None
        self.last_candidates = torch.full((num_candidates,), math.nan)
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

    def remember(self, s: torch.Tensor, candidates: torch.Tensor) -> None:
        """Keeps the latest candidate logits and mixed logit ``s``."""
        self.last_candidates = candidates.detach()
        self.last_logit.copy_(s.detach(), non_blocking=True)
        if self._logit_ready is not None:
            self._logit_ready.record()

    def last_s(self) -> float:
        """The latest ``s`` on the host (waits for its copy only if the host ran ahead)."""
        if self._logit_ready is not None:
            self._logit_ready.synchronize()
        return float(self.last_logit)

    def report(self, alpha: torch.Tensor, response_map: nn.Linear | None) -> dict[str, Any]:
        """The interval's search as plain numbers, with one device synchronisation.

        Args:
            alpha: The mixing weights before the decision resets them.
            response_map: The response map (``None``: Arbiter variants without one).
        """
        b_min, b_max = self.bounds
        count = max(self.meta_steps, 1)
        map_norm = (
            torch.linalg.vector_norm(response_map.weight.detach())
            if response_map is not None
            else torch.tensor(math.nan)
        )
        values = torch.cat(
            [
                self.last_candidates.float().cpu(),
                alpha.detach().float().cpu(),
                torch.stack([self.dF_ds / count, self.temperature / count]).float().cpu(),
                map_norm.reshape(1).float().cpu(),
            ]
        ).tolist()
        n = len(self.last_candidates)
        candidates, alphas = values[:n], values[n : 2 * n]
        dF_ds, temperature, map_norm_value = values[2 * n :]
        if self.meta_steps == 0:
            dF_ds = temperature = math.nan
        s = self.last_s()
        diagnostics: dict[str, Any] = {
            "s": s,
            "B_s": logit_to_batch_size(s, b_min, b_max),
            "meta_steps": self.meta_steps,
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
