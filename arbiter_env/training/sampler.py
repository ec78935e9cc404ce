"""How the trainer draws its batches: an epoch sampler with a cursor, and seeded host generators."""

from __future__ import annotations

import torch


class EpochSampler:
    """Draws batches from a stream of epoch permutations, with a cursor.

    Every run of ``n`` consecutive samples that starts at an epoch boundary holds each example
    exactly once, whatever the batch sizes asked for; a batch that crosses a boundary takes the
    rest of one epoch and the start of the next. Each epoch's permutation is applied to the data
    once (one gather per epoch), so a batch is a contiguous slice, which is cheaper than gathering
    every batch as a ``DataLoader`` does.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
            raise ValueError("The sampler needs as many targets as inputs, and at least one.")
        self._inputs = inputs
        self._targets = targets
        self._generator = generator
        self.num_examples = inputs.shape[0]
        self.samples_drawn = 0
        self._cursor = self.num_examples  # start a fresh permutation on the first draw
        self._epoch_inputs = inputs
        self._epoch_targets = targets

    def with_data(self, inputs: torch.Tensor, targets: torch.Tensor) -> EpochSampler:
        """This sampler's stream over an equal copy of its data; only before anything is drawn."""
        if self.samples_drawn:
            raise RuntimeError("A sampler can move to a copy of its data only before any draw.")
        return EpochSampler(inputs, targets, self._generator)

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``batch_size`` examples of the stream, as ``(inputs, targets)``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        parts_x, parts_y = [], []
        needed = batch_size
        while needed > 0:
            if self._cursor == self.num_examples:
                self._start_epoch()
            take = min(needed, self.num_examples - self._cursor)
            stop = self._cursor + take
            parts_x.append(self._epoch_inputs[self._cursor : stop])
            parts_y.append(self._epoch_targets[self._cursor : stop])
            self._cursor = stop
            needed -= take
        self.samples_drawn += batch_size
        if len(parts_x) == 1:
            return parts_x[0], parts_y[0]
        return torch.cat(parts_x), torch.cat(parts_y)

    def reseed(self, seed: int) -> None:
        """Draws from a new stream seeded with ``seed`` from now on, still without replacement.

        The examples not yet drawn in the current epoch are shuffled afresh, and later epochs
        are drawn from the new stream.
        """
        self._generator.manual_seed(seed)
        cursor = self._cursor
        remaining = self.num_examples - cursor
        if remaining > 0:
            order = torch.randperm(remaining, generator=self._generator).to(self._inputs.device)
            self._epoch_inputs = torch.cat(
                [self._epoch_inputs[:cursor], self._epoch_inputs[cursor:][order]]
            )
            self._epoch_targets = torch.cat(
                [self._epoch_targets[:cursor], self._epoch_targets[cursor:][order]]
            )

    def _start_epoch(self) -> None:
        order = torch.randperm(self.num_examples, generator=self._generator)
        order = index_to_device(order, self._inputs.device)
        self._epoch_inputs = self._inputs[order]
        self._epoch_targets = self._targets[order]
        self._cursor = 0


def index_to_device(index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor of indices (drawn with a CPU generator) on ``device``, without a device sync.

    Indices are drawn on the host so that CPU and GPU runs of a seed see the same examples. A plain
    host-to-GPU copy from pageable memory blocks until every kernel queued before it has run; from
    pinned memory it is queued like a kernel, and torch keeps the pinned block alive until the copy
    is done. This matters inside the inner loop: at each epoch start, and at each of Arbiter's
    meta-steps, which draw validation examples after every inner update.
    """
    if device.type != "cuda":
        return index.to(device)
    return index.pin_memory().to(device, non_blocking=True)


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (the episode's streams are host streams)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
