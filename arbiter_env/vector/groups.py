"""One interval of a group of population members, trained batched (see :mod:`.population`).

A :class:`MemberGroup` holds the members that share an architecture (the built-in ReLU MLP of
one set of shapes) and a batch size this interval. Their parameters and momentum buffers are
stacked; each step runs one batched forward and backward pass
(:func:`~arbiter_env.vector.batched.mlp_loss_and_grads`) and ``torch.optim.SGD``'s update
(:func:`~arbiter_env.vector.batched.sgd`); the results are written back into the members' own modules
and optimizer states, and each member gets the ``IntervalResult`` (statistics included) that
``InnerTrainer.train`` would have returned.

Members may differ in the interval's length (family instances of other budgets, or the one-sample
differences of rounded interval boundaries) and in their SGD settings (learning rate, momentum).
Members are ordered by length (longest first) and settings, so that at every step those still
training are a prefix of the stack and the members taking a step of one size, or sharing one set
of SGD settings, are consecutive: their slices of the stacked tensors are views, computed and
updated in place with the same arithmetic as a single member's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch.nn.utils.rnn import pad_sequence

from arbiter_env.training.stats import linear_statistics
from arbiter_env.training.trainer import InnerTrainer, IntervalResult, recorded_offsets
from arbiter_env.vector.batched import (
    MemberSgd,
    SgdSettings,
    batch_mean_losses,
    mlp_loss_and_grads,
    sgd,
    stack_buffers,
)


def _runs(values: Sequence[T], start: int = 0) -> list[tuple[int, int, T]]:
    """``(start, stop, value)`` of each run of equal consecutive ``values``, from index ``start``."""
    runs: list[tuple[int, int, T]] = []
    for j, value in enumerate(values, start):
        if runs and runs[-1][2] == value:
            runs[-1] = (runs[-1][0], j + 1, value)
        else:
            runs.append((j, j + 1, value))
    return runs


def _rows(tensors: list[torch.Tensor], start: int, stop: int, count: int) -> list[torch.Tensor]:
    """Rows ``start:stop`` of each of ``tensors`` (of ``count`` rows); themselves if that is all."""
    return tensors if start == 0 and stop == count else [t[start:stop] for t in tensors]


T = TypeVar("T")
MemberResults = dict[int, IntervalResult]
Span = tuple[int, int]


@dataclass
class _Recorded:
    """The statistics sums of one step of the members ``start:stop``."""

    start: int
    stop: int
    size: int
    offset: int
    unit_sq: torch.Tensor
    mean_sq: torch.Tensor


@dataclass
class MemberGroup:
    """Members trained together for one interval: one architecture and one batch size.

    Attributes:
        batch_size: The interval's batch size.
        members: Population indices of the members, in the order of the stack.
        trainers: The members' trainers.
        samples: The interval's samples of each member.
        settings: Each member's SGD settings.
    """

    batch_size: int
    members: list[int] = field(default_factory=list)
    trainers: list[InnerTrainer] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    settings: list[SgdSettings] = field(default_factory=list)

    def add(self, index: int, trainer: InnerTrainer, samples: int, settings: SgdSettings) -> None:
        """Adds a member."""
        self.members.append(index)
        self.trainers.append(trainer)
        self.samples.append(samples)
        self.settings.append(settings)

    def order(self) -> None:
        """Orders the members by samples (longest first), then by SGD settings."""
        order = sorted(
            range(len(self.members)), key=lambda j: (-self.samples[j], self.settings[j].order())
        )
        self.members = [self.members[j] for j in order]
        self.trainers = [self.trainers[j] for j in order]
        self.samples = [self.samples[j] for j in order]
        self.settings = [self.settings[j] for j in order]

    def slices(self, offset: int) -> list[tuple[int, int, int]]:
        """``(start, stop, size)`` of the consecutive members taking a step of ``size`` here."""
        sizes = [min(self.batch_size, samples - offset) for samples in self.samples]
        # Longest first: the members after the first one that is done are done too.
        return _runs(list(itertools.takewhile(lambda size: size > 0, sizes)))

    def runs(self, start: int, stop: int) -> list[tuple[int, int, SgdSettings]]:
        """``(start, stop, settings)`` of the consecutive members sharing SGD settings."""
        return _runs(self.settings[start:stop], start)

    def lengths(self) -> list[tuple[int, int, int]]:
        """``(start, stop, samples)`` of the consecutive members of one interval length."""
        return _runs(self.samples)

    def record_window(self, j: int) -> Span:
        """Offsets of member ``j``'s recorded steps, as ``InnerTrainer.train`` chooses them."""
        if self.trainers[j].statistics != "training":
            return (-1, -1)
        return recorded_offsets(self.batch_size, self.samples[j], self.trainers[j].task.probe_size)

    # --- training -------------------------------------------------------------------------------

    # The arithmetic is written out (no autograd); torch.func's transforms ignore no_grad.
    @torch.no_grad()
    def train(self) -> MemberResults:
        """Trains every member for the interval; returns each one's result and statistics."""
        trainers = self.trainers
        params: list[list[torch.Tensor]] = [list(t.trainable_parameters) for t in trainers]
        stacked = [torch.stack([p[k] for p in params]) for k in range(len(params[0]))]
        buffers, fresh = None, None
        if any(settings.momentum for settings in self.settings):
            states = [
                [t.optimizer.state.get(p, {}).get("momentum_buffer") for p in own]
                for t, own in zip(trainers, params, strict=True)
            ]
            buffers, fresh = stack_buffers(states, params)
        losses, recorded = self._run_steps(stacked, buffers, fresh)
        # Write back into each member's own module and optimizer state, one _foreach copy for
        # all of them; a member's first buffers are new tensors, as torch.optim.SGD makes them.
        targets: list[torch.Tensor] = []
        sources: list[torch.Tensor] = []
        # unbind: every member's view at once (indexing them one by one costs µs each).
        param_rows = [s.unbind(0) for s in stacked]
        buffer_rows = [] if buffers is None else [b.unbind(0) for b in buffers]
        for j, (trainer, own) in enumerate(zip(trainers, params, strict=True)):
            targets += own
            sources += [rows[j] for rows in param_rows]
            if buffers is None or not self.settings[j].momentum:
                continue
            state = trainer.optimizer.state
            for p, rows in zip(own, buffer_rows, strict=True):
                row = rows[j]
                if (buffer := state[p].get("momentum_buffer")) is None:
                    state[p]["momentum_buffer"] = row.clone()
                else:
                    targets.append(buffer)
                    sources.append(row)
        torch._foreach_copy_(targets, sources)
        return self._results(losses, recorded, stacked)

    def _run_steps(
        self,
        stacked: list[torch.Tensor],
        buffers: list[torch.Tensor] | None,
        fresh: torch.Tensor | None,
    ) -> tuple[list[list[tuple[int, int, torch.Tensor]]], list[_Recorded]]:
        """Trains the stacked members; returns each step's losses by slice, and the sums."""
        # No dropout seed is drawn: the population takes networks without dropout, for which
        # InnerTrainer.train draws none either.
        # The sampler is a stream: one draw of the whole interval holds the same examples, in
        # the same order, as one draw per batch, and each step takes a slice of it.
        drawn = [t.sampler.next_batch(n) for t, n in zip(self.trainers, self.samples, strict=True)]
        uniform = len(set(self.samples)) == 1
        inputs_drawn, targets_drawn = [x for x, _ in drawn], [y for _, y in drawn]
        if uniform:  # no padding to do: a plain stack is cheaper
            all_inputs, all_targets = torch.stack(inputs_drawn), torch.stack(targets_drawn)
        else:
            all_inputs = pad_sequence(inputs_drawn, batch_first=True)
            all_targets = pad_sequence(targets_drawn, batch_first=True)
        windows = [self.record_window(j) for j in range(len(self.members))]
        distinct_windows = list(set(windows))  # usually one: a check per step, not per member
        count = len(self.members)
        losses, recorded = [], []
        updates: dict[Span, MemberSgd | list[tuple[int, int, SgdSettings]]] = {}
        offsets = range(0, self.samples[0], self.batch_size)
        step_inputs = all_inputs.split(self.batch_size, dim=1)  # one view per step, at once
        step_targets = all_targets.split(self.batch_size, dim=1)
        for offset, inputs, targets in zip(offsets, step_inputs, step_targets, strict=True):
            step = []
            # Members of one interval length take every step together: one slice of all.
            spans = [(0, count, inputs.shape[1])] if uniform else self.slices(offset)
            for start, stop, size in spans:
                in_window = distinct_windows if len(distinct_windows) == 1 else windows[start:stop]
                record = any(low <= offset <= high for low, high in in_window)
                if start == 0 and stop == count:  # the common case: no member slices
                    x, y = inputs, targets
                else:
                    x, y = inputs[start:stop, :size], targets[start:stop, :size]
                members = _rows(stacked, start, stop, count)
                picked, grads, sums = mlp_loss_and_grads(members, x, y, record)
                if sums is not None:
                    recorded.append(_Recorded(start, stop, size, offset, *sums))
                self._update(start, stop, stacked, grads, buffers, fresh, updates)
                step.append((start, stop, picked))
            fresh = None  # every member's first update is the first step's
            losses.append(step)
        return losses, recorded

    def _update(
        self,
        start: int,
        stop: int,
        stacked: list[torch.Tensor],
        grads: list[torch.Tensor],
        buffers: list[torch.Tensor] | None,
        fresh: torch.Tensor | None,
        updates: dict[Span, MemberSgd | list[tuple[int, int, SgdSettings]]],
    ) -> None:
        """The SGD update of the members ``start:stop`` (``grads`` holds theirs)."""
        plan = updates.get((start, stop))
        if plan is None:
            runs = self.runs(start, stop)
            # Shared settings take torch's own _foreach update, which is faster than the
            # per-member tensors of lr and momentum that MemberSgd needs.
            member_sgd = (
                None
                if len(runs) == 1
                else MemberSgd.of(self.settings[start:stop], stacked[0].device)
            )
            plan = updates[start, stop] = runs if member_sgd is None else member_sgd
        count = len(self.members)
        if isinstance(plan, MemberSgd):  # one update for all, each with its own lr and momentum
            plan.step(
                _rows(stacked, start, stop, count),
                grads,
                None if buffers is None else _rows(buffers, start, stop, count),
                None if fresh is None else fresh[start:stop],
            )
            return
        for a, b, settings in plan:  # settings differ in more than lr and momentum: one each
            sgd(
                _rows(stacked, a, b, count),
                _rows(grads, a - start, b - start, stop - start),
                None if buffers is None else _rows(buffers, a, b, count),
                None if fresh is None else fresh[a:b],
                settings,
            )

    def _results(
        self,
        losses: list[list[tuple[int, int, torch.Tensor]]],
        recorded: list[_Recorded],
        stacked: list[torch.Tensor],
    ) -> MemberResults:
        """Each member's ``IntervalResult``, statistics included, as ``InnerTrainer.train`` has it."""
        count, batch_size = len(self.members), self.batch_size
        rows = []
        for start, stop, samples in self.lengths():
            picked = [
                p if (a, b) == (start, stop) else p[start - a : stop - a]
                for step in losses
                for a, b, p in step
                if a <= start < b
            ]
            table = batch_mean_losses(picked)  # (members, updates), as InnerTrainer.train has
            last_size = samples - batch_size * (table.shape[1] - 1)  # its (updates,) vector
            rows.append(
                (table.sum(1) * batch_size - table[:, -1] * (batch_size - last_size)) / samples
            )
        # As InnerTrainer.train checks divergence: each parameter tensor's norm, in its dtype,
        # is finite (the largest of a member's norms stands for all of them).
        norms = torch.stack(
            [torch.linalg.vector_norm(s.reshape(count, -1), dim=1) for s in stacked]
        )
        pieces = [torch.cat(rows).double(), norms.amax(0).double()]
        pieces += [t.double() for r in recorded for t in (r.unit_sq, r.mean_sq)]
        values = torch.cat(pieces).tolist()  # one host transfer for the whole group
        out: MemberResults = {}
        cursor = 2 * count
        # Each member's recorded steps: sizes, unit sums and squared mean-gradient norms.
        steps: list[tuple[list[int], list[float], list[float]]] = [
            ([], [], []) for _ in range(count)
        ]
        for r in recorded:
            width = r.stop - r.start
            for j in range(r.start, r.stop):
                low, high = self.record_window(j)
                if low <= r.offset <= high:
                    k = cursor + j - r.start
                    sizes, unit_sums, mean_sq = steps[j]
                    sizes.append(r.size)
                    unit_sums.append(values[k])
                    mean_sq.append(values[k + width])
            cursor += 2 * width
        probe_size = self.trainers[0].task.probe_size
        for j, index in enumerate(self.members):
            samples = self.samples[j]
            loss_value, norm_value = values[j], values[count + j]
            out[index] = IntervalResult(
                train_loss=loss_value,
                updates=-(-samples // batch_size),
                samples=samples,
                diverged=not (math.isfinite(loss_value) and math.isfinite(norm_value)),
                statistics=linear_statistics(*steps[j], probe_size),  # the one estimator
            )
        return out
