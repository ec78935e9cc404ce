"""Classification data sets for the inner training runs, as CPU tensors.

Every loader returns a :class:`ClassificationData`: a train and a test split as tensors, inputs
``float32`` standardised with statistics of the *train* split only (so that nothing about the test
split leaks into training), labels ``int64``.

Built-in sources, none of which touches the network:

* :func:`load_digits` -- scikit-learn's embedded 8x8 digits (the default task's data).
* :func:`load_mnist1d` -- MNIST-1D generated locally by the ``mnist1d`` package.
* :func:`make_synthetic_teacher` -- labels from a random teacher network, with label noise.

Image data from files the user already has is read by :mod:`arbiter_env.tasks.data_files`:
MNIST / Fashion-MNIST from IDX files (``load_idx``) and CIFAR-10/100 from the python pickle
batches (``load_cifar``).

Users bring their own data with :func:`from_tensors` or :func:`from_torch_datasets`.

No loader uses the global random number generators: randomness comes from seeded
``numpy.random.Generator`` / ``torch.Generator`` objects (or ``random_state`` arguments), and the
``mnist1d`` generator, which does reseed the global RNGs, has their state restored afterwards.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from arbiter_env.checks import check_int

__all__ = [
    "ClassificationData",
    "from_tensors",
    "from_torch_datasets",
    "load_digits",
    "load_mnist1d",
    "make_synthetic_teacher",
]

# Standard deviations below this are treated as zero (a constant feature) and replaced by 1, so
# that standardising never divides by zero; constant features then simply become 0.
_MIN_STD = 1e-8


@dataclass(frozen=True, eq=False)  # eq=False: `==` on tensors is elementwise, not a bool.
class ClassificationData:
    """Train and test split of a classification data set, as tensors on the CPU.

    Attributes:
        x_train: ``float32``, shape ``(n_train, *input_shape)``, standardised with train statistics.
        y_train: ``int64`` class labels in ``[0, num_classes)``, shape ``(n_train,)``.
        x_test: ``float32``, shape ``(n_test, *input_shape)``, standardised with *train* statistics.
        y_test: ``int64`` class labels in ``[0, num_classes)``, shape ``(n_test,)``.
        num_classes: Number of classes (at least 2).

    The test split is for reporting only; the trainer carves its validation set out of the train
    split. Construction validates shapes, dtypes and label ranges and raises ``ValueError``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int | np.integer):
            raise ValueError(f"num_classes must be an int, got {type(self.num_classes).__name__}.")
        if self.num_classes < 2:
            raise ValueError(
                f"num_classes must be >= 2 for classification, got {self.num_classes}."
            )
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise ValueError(
                    f"x_{split} and y_{split} must be torch.Tensors; use "
                    "arbiter_env.tasks.datasets.from_tensors to convert arrays."
                )
            if x.device.type != "cpu" or y.device.type != "cpu":
                raise ValueError(
                    f"x_{split} and y_{split} must be on the CPU (the trainer moves data to its "
                    "device); call .cpu() first."
                )
            if x.dtype != torch.float32:
                raise ValueError(
                    f"x_{split} must be float32, got {x.dtype}; convert with .float() or use "
                    "from_tensors."
                )
            if x.ndim < 2:
                raise ValueError(
                    f"x_{split} must have shape (n, *input_shape) with at least 2 dimensions, got "
                    f"shape {tuple(x.shape)}; add a feature dimension with x.unsqueeze(1)."
                )
            if y.dtype != torch.int64:
                raise ValueError(
                    f"y_{split} must hold int64 class labels, got {y.dtype}; convert with .long() "
                    "or use from_tensors."
                )
            if y.ndim != 1:
                raise ValueError(f"y_{split} must be 1-D, got shape {tuple(y.shape)}.")
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"x_{split} has {x.shape[0]} rows but y_{split} has {y.shape[0]}; every "
                    "example needs exactly one label."
                )
            if x.shape[0] == 0:
                raise ValueError(f"The {split} split is empty; it needs at least one example.")
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(
                    f"y_{split} has labels in [{low}, {high}] but num_classes={self.num_classes}; "
                    f"labels must lie in [0, {self.num_classes - 1}] (remap them or raise "
                    "num_classes)."
                )
            if not bool(torch.isfinite(x).all()):
                raise ValueError(
                    f"x_{split} contains NaN or infinite values; clean the data first."
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"Train inputs have shape {tuple(self.x_train.shape[1:])} per example but test "
                f"inputs have {tuple(self.x_test.shape[1:])}; both splits need the same shape."
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example, without the batch dimension."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        """Number of examples in the train split."""
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        """Number of examples in the test split."""
        return int(self.x_test.shape[0])


# --- shared helpers ------------------------------------------------------------------------------


def standardize_splits(
    x_train: torch.Tensor, x_test: torch.Tensor, dims: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres and scales both splits with the mean and std of ``x_train`` over ``dims``.

    ``dims=(0,)`` standardises every feature separately, ``(0, 2, 3)`` every image channel, and
    ``tuple(range(x.ndim))`` uses one scalar mean and std. Standard deviations below ``_MIN_STD``
    (constant features, e.g. the always-blank border pixels of ``digits``) are replaced by 1.
    """
    x_train = x_train.float()
    x_test = x_test.float()
    # float64 accumulation keeps the statistics accurate for large data sets such as CIFAR.
    var, mean = torch.var_mean(x_train.double(), dim=tuple(dims), keepdim=True, correction=0)
    std = var.sqrt()
    std = torch.where(std < _MIN_STD, torch.ones_like(std), std)
    mean, std = mean.float(), std.float()
    return (x_train - mean) / std, (x_test - mean) / std


def all_dims(x: torch.Tensor) -> tuple[int, ...]:
    """Every dimension of ``x``: ``standardize_splits`` then uses one scalar mean and std."""
    return tuple(range(x.ndim))


# --- built-in, network-free data -----------------------------------------------------------------

_DIGITS_SPLIT_SEED = 0


def load_digits() -> ClassificationData:
    """scikit-learn's 8x8 handwritten digits: 1797 examples, 10 classes, inputs of shape ``(64,)``.

    The data set ships inside scikit-learn, so nothing is downloaded. It is split 80/20 into train
    and test, stratified by class, with a fixed seed (the split is part of the task, identical in
    every call and process). Every pixel is standardised with the train split's mean and std;
    pixels that are constant in the train split become 0.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_load_digits()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=_DIGITS_SPLIT_SEED, shuffle=True
    )
    xt_train, xt_test = standardize_splits(
        torch.from_numpy(x_train), torch.from_numpy(x_test), dims=(0,)
    )
    return ClassificationData(
        x_train=xt_train,
        y_train=torch.from_numpy(y_train),
        x_test=xt_test,
        y_test=torch.from_numpy(y_test),
        num_classes=10,
    )


@functools.lru_cache(maxsize=8)
def _generate_mnist1d(
    num_samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs the MNIST-1D generator (the slow part of loading) and returns read-only arrays.

    Cached per process; arrays are made read-only so that no caller can corrupt the cache.
    """
    # mnist1d imports matplotlib.pyplot at import time; without a display that must not try to
    # open a GUI backend, so default to the non-interactive one (a user's explicit choice wins).
    os.environ.setdefault("MPLBACKEND", "Agg")
    import mnist1d.data

    # mnist1d.data.make_dataset calls random.seed and np.random.seed and then draws from the
    # global numpy RNG. Save and restore both so that loading data has no side effect on the
    # caller's random streams (and on reproducibility elsewhere).
    numpy_state = np.random.get_state()  # noqa: NPY002 -- saving, not drawing
    python_state = random.getstate()
    try:
        args = mnist1d.data.get_dataset_args()
        args.num_samples = num_samples
        args.seed = seed
        # make_dataset only generates; get_dataset would try to download a pickle first.
        raw = mnist1d.data.make_dataset(args)
    finally:
        np.random.set_state(numpy_state)  # noqa: NPY002 -- restoring the caller's state
        random.setstate(python_state)

    arrays = (
        np.asarray(raw["x"], dtype=np.float32),
        np.asarray(raw["y"], dtype=np.int64),
        np.asarray(raw["x_test"], dtype=np.float32),
        np.asarray(raw["y_test"], dtype=np.int64),
    )
    for array in arrays:
        array.setflags(write=False)
    return arrays


def load_mnist1d(
    num_samples: int = 5000, seed: int = 42, channels_first: bool = False
) -> ClassificationData:
    """MNIST-1D (Greydanus, 2020), generated locally: 10 classes, 1-D signals of length 40.

    The ``mnist1d`` package's generator is called directly (its ``get_dataset`` would try to
    download); the global numpy and python RNG states it reseeds are restored afterwards. The
    default arguments reproduce the standard data set: 5000 examples, 4000 train / 1000 test.
    Inputs are standardised with one scalar mean and std of the train split, which keeps the shape
    of each signal intact. The generation is cached per process.

    Args:
        num_samples: Total number of examples (train + test), at least 10; split 80/20.
        seed: Seed of the generator.
        channels_first: Return inputs of shape ``(1, 40)`` (one channel, for 1-D convolutions)
            instead of ``(40,)``.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 10:
        raise ValueError(
            f"num_samples must be an int >= 10 (one per class at least), got {num_samples!r}."
        )
    x_train, y_train, x_test, y_test = _generate_mnist1d(num_samples, int(seed))
    # torch.tensor copies, so the cached arrays stay untouched whatever callers do.
    xt_train, xt_test = torch.tensor(x_train), torch.tensor(x_test)
    xt_train, xt_test = standardize_splits(xt_train, xt_test, dims=all_dims(xt_train))
    if channels_first:
        xt_train, xt_test = xt_train.unsqueeze(1), xt_test.unsqueeze(1)
    return ClassificationData(
        x_train=xt_train.contiguous(),
        y_train=torch.tensor(y_train),
        x_test=xt_test.contiguous(),
        y_test=torch.tensor(y_test),
        num_classes=10,
    )


def make_synthetic_teacher(
    num_train: int = 2000,
    num_test: int = 1000,
    input_dim: int = 20,
    num_classes: int = 5,
    hidden: int = 32,
    label_noise: float = 0.1,
    seed: int = 0,
) -> ClassificationData:
    """Inputs from a standard Gaussian, labelled by a random two-layer tanh teacher network.

    The teacher is ``argmax(tanh(x @ W1 + b1) @ W2 + b2)`` with Gaussian weights scaled by
    ``1/sqrt(fan_in)``. Its output bias ``b2`` is set to minus the mean teacher logit over the
    train inputs, which balances the classes far better than a random bias would. Then exactly
    ``round(label_noise * n)`` labels of each split, chosen at random, are replaced by labels drawn
    uniformly from all classes (so about ``label_noise * (1 - 1/num_classes)`` of them change).
    The noise bounds the reachable accuracy and makes the training signal noisy, which is what the
    batch size interacts with.

    Everything is drawn from one ``torch.Generator`` seeded with ``seed``, in a fixed order
    (teacher, train inputs, test inputs, then noise), so the clean labels do not depend on
    ``label_noise``. Inputs are already standardised and returned as drawn.
    """
    for name, value, minimum in (
        ("num_train", num_train, 1),
        ("num_test", num_test, 1),
        ("input_dim", input_dim, 1),
        ("num_classes", num_classes, 2),
        ("hidden", hidden, 1),
    ):
        check_int(name, value, minimum)
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must be a fraction in [0, 1], got {label_noise!r}.")

    generator = torch.Generator().manual_seed(int(seed))
    w1, b1, w2 = _draw_teacher(generator, input_dim, hidden, num_classes)
    x_train = torch.randn(num_train, input_dim, generator=generator)
    x_test = torch.randn(num_test, input_dim, generator=generator)

    def features(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ w1 + b1) @ w2

    b2 = -features(x_train).mean(dim=0)

    def labels(x: torch.Tensor) -> torch.Tensor:
        clean = (features(x) + b2).argmax(dim=1)
        return _with_label_noise(clean, label_noise, num_classes, generator)

    y_train = labels(x_train)
    y_test = labels(x_test)
    return ClassificationData(
        x_train=x_train,
        y_train=y_train.long(),
        x_test=x_test,
        y_test=y_test.long(),
        num_classes=num_classes,
    )


def _draw_teacher(
    generator: torch.Generator, input_dim: int, hidden: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The teacher's ``W1``, ``b1`` and ``W2``: Gaussian, weights scaled by ``1/sqrt(fan_in)``."""
    w1 = torch.randn(input_dim, hidden, generator=generator) / input_dim**0.5
    b1 = torch.randn(hidden, generator=generator)
    w2 = torch.randn(hidden, num_classes, generator=generator) / hidden**0.5
    return w1, b1, w2


def _with_label_noise(
    labels: torch.Tensor, label_noise: float, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """Replaces ``round(label_noise * n)`` labels, chosen at random, by uniform random labels."""
    num_noisy = round(label_noise * labels.shape[0])
    noisy_index = torch.randperm(labels.shape[0], generator=generator)[:num_noisy]
    random_labels = torch.randint(num_classes, (num_noisy,), generator=generator)
    labels[noisy_index] = random_labels
    return labels


# --- user data -----------------------------------------------------------------------------------

TensorLike = torch.Tensor | np.ndarray | Sequence[float]
"""What :func:`from_tensors` accepts: tensors, numpy arrays or nested lists of numbers."""


def _as_labels(y: Any, name: str) -> torch.Tensor:
    y = torch.as_tensor(y).cpu()
    if y.is_floating_point() or y.is_complex():
        # Silent truncation of e.g. 0.7 to 0 would hide a bug; ask for integer labels instead.
        raise ValueError(
            f"{name} must hold integer class labels, got dtype {y.dtype}; convert one-hot or "
            "probability targets with .argmax(dim=1), or integral floats with .long()."
        )
    return y.long()


def from_tensors(
    x_train: TensorLike,
    y_train: TensorLike,
    x_test: TensorLike,
    y_test: TensorLike,
    num_classes: int | None = None,
    standardize: bool = False,
) -> ClassificationData:
    """Wraps your own tensors (or numpy arrays) as :class:`ClassificationData`.

    Inputs are moved to the CPU and converted to ``float32``, labels to ``int64`` (they must be
    integers already). ``num_classes`` defaults to the largest label plus one. With
    ``standardize=True`` every input feature is centred and scaled with the train split's mean and
    std (constant features become 0); otherwise inputs are kept as given.
    """
    xs = []
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        x = torch.as_tensor(x).cpu()
        if x.is_complex():
            raise ValueError(f"{name} is complex; pass real-valued inputs.")
        xs.append(x.float())
    x_train_t, x_test_t = xs
    y_train_t, y_test_t = _as_labels(y_train, "y_train"), _as_labels(y_test, "y_test")
    if num_classes is None:
        if y_train_t.numel() == 0:
            raise ValueError("y_train is empty; the train split needs at least one example.")
        labels = torch.cat([y_train_t, y_test_t])
        num_classes = int(labels.max()) + 1
    if standardize:
        if x_train_t.ndim == 0 or x_train_t.shape[0] == 0:
            raise ValueError("Cannot standardise with an empty train split.")
        x_train_t, x_test_t = standardize_splits(x_train_t, x_test_t, dims=(0,))
    return ClassificationData(
        x_train=x_train_t.contiguous(),
        y_train=y_train_t,
        x_test=x_test_t.contiguous(),
        y_test=y_test_t,
        num_classes=num_classes,
    )


def _stack_dataset(
    dataset: torch.utils.data.Dataset, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        length = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(
            f"The {name} dataset has no len(); pass a map-style torch.utils.data.Dataset or "
            "stack the data yourself and use from_tensors."
        ) from None
    if length == 0:
        raise ValueError(f"The {name} dataset is empty; it needs at least one example.")
    xs, ys = [], []
    for index in range(length):
        item = dataset[index]
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ValueError(
                f"Item {index} of the {name} dataset is not an (x, y) pair; wrap the dataset so "
                "that dataset[i] returns (input, label)."
            )
        x, y = item
        xs.append(torch.as_tensor(x))
        y = torch.as_tensor(y)
        if y.numel() != 1:
            raise ValueError(
                f"Item {index} of the {name} dataset has a label of shape {tuple(y.shape)}; "
                "labels must be single class indices (an int or a 0-d tensor)."
            )
        ys.append(y.reshape(()))
    try:
        x_all = torch.stack(xs)
    except RuntimeError as error:
        raise ValueError(
            f"The inputs of the {name} dataset do not all have the same shape ({error})."
        ) from None
    return x_all, torch.stack(ys)


def from_torch_datasets(
    train: torch.utils.data.Dataset,
    test: torch.utils.data.Dataset,
    num_classes: int | None = None,
    standardize: bool = False,
) -> ClassificationData:
    """Materialises two map-style datasets whose items are ``(x, y)`` pairs as tensors.

    ``x`` may be a tensor or an array, ``y`` an int or a 0-d tensor. Every item is read once and
    stacked, so any per-item transform is applied once, not per epoch (the trainer keeps the data
    as tensors on its device). See :func:`from_tensors` for ``num_classes`` and ``standardize``.
    """
    x_train, y_train = _stack_dataset(train, "train")
    x_test, y_test = _stack_dataset(test, "test")
    return from_tensors(x_train, y_train, x_test, y_test, num_classes, standardize)
