"""Image data from files the user already has: MNIST, Fashion-MNIST and CIFAR-10/100.

Nothing is downloaded. :func:`load_idx` reads MNIST / Fashion-MNIST from the four IDX files
(plain or ``.gz``); :func:`load_cifar` reads CIFAR-10/100 from the python pickle batches with a
restricted unpickler (:mod:`arbiter_env.tasks.safe_pickle`). Both check what they read against
what the format promises (magic numbers, announced sizes, shapes, label ranges) and raise an error
that names the file and the fix. A missing file gives an error listing every folder searched and
the file names expected.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from arbiter_env.tasks.datasets import ClassificationData, all_dims, standardize_splits
from arbiter_env.tasks.safe_pickle import UnsafePickleError, restricted_load

__all__ = ["IDX_MAX_BYTES", "load_cifar", "load_idx"]

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (n, rows, cols)
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (n,)
# Sub-folders searched below `data_dir`: our own naming, and torchvision's class-named layout.
_IDX_SUBDIRS = {
    "mnist": ("mnist", "MNIST"),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST"),
}
_IDX_SOURCES = {
    "mnist": "http://yann.lecun.com/exdb/mnist/ (or any MNIST mirror)",
    "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist (folder data/fashion)",
}


def _find_idx_file(directory: Path, file_name: str) -> Path | None:
    for candidate in (directory / file_name, directory / f"{file_name}.gz"):
        if candidate.is_file():
            return candidate
    return None


_READ_CHUNK = 1 << 20
IDX_MAX_BYTES = 1 << 28
"""The largest IDX file :func:`load_idx` reads by default: 256 MiB, over five times MNIST's
largest file (60,000 images of 28x28 and a 16-byte header: 47,040,016 bytes)."""
_DEFLATE_MAX_RATIO = 1032
"""Deflate (gzip's compression) expands its input at most about 1032-fold (zlib's technical
details), so a ``.gz`` file of n bytes holds at most 1032·n bytes."""


def _read_exactly(handle: Any, size: int) -> bytes:
    """Reads at most ``size`` bytes in chunks (never asks the decompressor for more)."""
    parts, remaining = [], size
    while remaining > 0:
        chunk = handle.read(min(remaining, _READ_CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _check_claimed_size(path: Path, shape: tuple[int, ...], expected: int, max_bytes: int) -> None:
    """Refuses a header whose size is above ``max_bytes`` or more than the file can hold.

    Checked before any of the payload is read or inflated: the only size the header's author
    chooses is the one checked here, never one the reader acts on.
    """
    if expected > max_bytes:
        raise ValueError(
            f"{path}: header shape {shape} claims {expected} bytes, above the {max_bytes}-byte "
            "limit for an IDX file (load_idx(max_bytes=...)); the file is damaged or not an IDX "
            "file. Replace the file."
        )
    stored = path.stat().st_size
    if path.suffix == ".gz" and expected > stored * _DEFLATE_MAX_RATIO:
        raise ValueError(
            f"{path} is truncated: header shape {shape} needs {expected} bytes, but a "
            f"{stored}-byte gzip file inflates to at most {stored * _DEFLATE_MAX_RATIO}. "
            "Replace the file."
        )


def _read_idx(path: Path, magic: int, max_bytes: int = IDX_MAX_BYTES) -> np.ndarray:
    """Parses an IDX file of unsigned bytes and checks its magic number and length.

    The header is read first and checked against ``max_bytes`` and against what the file's size
    can hold; decompression then stops at the size the header announces (plus one byte to detect
    a longer file). A small ``.gz`` that inflates to gigabytes thus costs at most ``max_bytes``,
    whatever its header claims, and sizes are exact Python integers (no overflow in messages).
    """
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
            head = _read_exactly(handle, 4)
            if len(head) < 4:
                raise ValueError(
                    f"{path} is truncated: it has no complete IDX header. Replace the file."
                )
            found_magic = int.from_bytes(head, "big")
            if found_magic != magic:
                raise ValueError(
                    f"{path} has IDX magic number {found_magic:#010x}, expected {magic:#010x} "
                    f"({'images' if magic == _IDX_IMAGES_MAGIC else 'labels'}). Is it the right "
                    "file?"
                )
            num_dims = magic & 0xFF
            header_size = 4 + 4 * num_dims
            dims = _read_exactly(handle, 4 * num_dims)
            if len(dims) < 4 * num_dims:
                raise ValueError(f"{path} is truncated inside its IDX header. Replace the file.")
            shape = tuple(int.from_bytes(dims[i : i + 4], "big") for i in range(0, len(dims), 4))
            payload_size = math.prod(shape)
            expected = header_size + payload_size
            if path.suffix != ".gz" and path.stat().st_size != expected:
                found_size = path.stat().st_size
                payload = b""
            else:
                _check_claimed_size(path, shape, expected, max_bytes)
                payload = _read_exactly(handle, payload_size + 1)
                found_size = header_size + len(payload)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"Cannot decompress {path}: {error}. Replace the file.") from error
    if found_size != expected:
        state = "truncated" if found_size < expected else "longer than its header says"
        exact = path.suffix != ".gz" or found_size <= expected
        shown = f"{found_size}" if exact else f"more than {expected}"
        raise ValueError(
            f"{path} is {state}: header shape {shape} needs {expected} bytes, file has "
            f"{shown}. Replace the file."
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def _find_idx_files(root: Path, name: str) -> list[Path]:
    """The four IDX files in the first folder searched that holds them all."""
    searched = [root]
    for subdir in _IDX_SUBDIRS[name]:
        searched += [root / subdir, root / subdir / "raw"]
    for directory in searched:
        found = [_find_idx_file(directory, file_name) for file_name in _IDX_FILES]
        if all(path is not None for path in found):
            return found  # type: ignore[return-value]
    raise FileNotFoundError(
        f"Could not find the {name} IDX files. Searched these folders:\n"
        + "".join(f"  {directory}\n" for directory in searched)
        + "for all four of these files (each plain or with a .gz suffix):\n"
        + "".join(f"  {file_name}\n" for file_name in _IDX_FILES)
        + f"arbiter-env never downloads data: get the files from {_IDX_SOURCES[name]} and "
        "place them in one of those folders (or pass data_dir=... pointing at them)."
    )


def load_idx(
    data_dir: str | os.PathLike[str],
    name: Literal["mnist", "fashion-mnist"],
    *,
    max_bytes: int = IDX_MAX_BYTES,
) -> ClassificationData:
    """MNIST or Fashion-MNIST from the four IDX files: 60000 train / 10000 test, 10 classes.

    Nothing is downloaded: place the files (plain or ``.gz``) in one of ``data_dir``,
    ``data_dir/<name>``, ``data_dir/<name>/raw`` (and, for files laid out by torchvision,
    ``data_dir/MNIST/raw`` or ``data_dir/FashionMNIST/raw``). The first folder holding all four
    files is used. Images become ``float32`` of shape ``(n, 1, 28, 28)``, scaled to ``[0, 1]`` and
    then standardised with the scalar mean and std of the train images.

    ``max_bytes`` is the largest (decompressed) file read: a header that claims more is refused
    before anything is inflated.

    Raises:
        FileNotFoundError: No searched folder holds all four files; the message lists every
            folder searched and the exact file names expected.
        ValueError: A file is not a valid IDX file of the expected kind, or the files disagree.
    """
    if name not in _IDX_SUBDIRS:
        raise ValueError(f"name must be 'mnist' or 'fashion-mnist', got {name!r}.")
    found = _find_idx_files(Path(data_dir).expanduser(), name)
    train_images_path, train_labels_path, test_images_path, test_labels_path = found

    def split(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        images = _read_idx(images_path, _IDX_IMAGES_MAGIC, max_bytes)
        labels = _read_idx(labels_path, _IDX_LABELS_MAGIC, max_bytes)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                f"{labels.shape[0]} labels; the files do not belong together."
            )
        if labels.size and int(labels.max()) >= 10:
            raise ValueError(f"{labels_path} has labels above 9; is it a {name} label file?")
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        return x, torch.from_numpy(labels.astype(np.int64))

    x_train, y_train = split(train_images_path, train_labels_path)
    x_test, y_test = split(test_images_path, test_labels_path)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"Train images are {tuple(x_train.shape[2:])} but test images are "
            f"{tuple(x_test.shape[2:])}; the files do not belong together."
        )
    x_train, x_test = standardize_splits(x_train, x_test, dims=all_dims(x_train))
    return ClassificationData(x_train, y_train, x_test, y_test, num_classes=10)


_CIFAR_LAYOUT = {
    10: (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        b"labels",
    ),
    100: ("cifar-100-python", ("train",), "test", b"fine_labels"),
}
_CIFAR_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _read_cifar_batch(
    path: Path, label_key: bytes, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    # A plain pickle.load would run any code the file names; the restricted unpickler builds
    # only numpy arrays, dtypes and plain containers and refuses anything else unexecuted.
    try:
        batch: Any = restricted_load(path, encoding="bytes")
    except UnsafePickleError as error:
        raise ValueError(str(error)) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is not a readable CIFAR pickle batch ({error}).") from error
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(
            f"{path} is not a CIFAR-{num_classes} batch: expected a dict with keys b'data' and "
            f"{label_key!r}, found {keys}."
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key])
    if labels.size and labels.dtype.kind not in "iu":
        # A cast would turn 2.7 into 2 (and "3" into an error far away): refuse it here.
        raise ValueError(
            f"{path}: {label_key!r} must hold integer class labels, got {labels.dtype} values."
        )
    labels = labels.astype(np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{path}: b'data' must be uint8 of shape (n, 3072), got {data.dtype} {data.shape}."
        )
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path} has {data.shape[0]} images but labels of shape {labels.shape}.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{path} has labels outside [0, {num_classes - 1}]; is it a CIFAR-{num_classes} file?"
        )
    return data, labels


def load_cifar(
    data_dir: str | os.PathLike[str], num_classes: Literal[10, 100]
) -> ClassificationData:
    """CIFAR-10 or CIFAR-100 from the python pickle batches: 50000 train / 10000 test, 32x32 RGB.

    ``data_dir`` is either the extracted folder itself (``cifar-10-batches-py`` holding
    ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``; ``cifar-100-python`` holding
    ``train`` and ``test``) or its parent. Nothing is downloaded. CIFAR-100 uses the 100 fine
    labels. Images become ``float32`` of shape ``(n, 3, 32, 32)``, scaled to ``[0, 1]`` and then
    standardised per channel with the train statistics.

    The files are pickles. They are read with a restricted unpickler
    (:mod:`arbiter_env.tasks.safe_pickle`) that builds only numpy arrays, dtypes and plain
    containers, so a crafted file cannot run code: it is rejected with a ``ValueError`` naming
    the global it asked for, before anything it names is imported or called.

    Raises:
        FileNotFoundError: The files are missing; the message names the folders searched and the
            files expected.
        ValueError: A file does not have the CIFAR batch format, or names code to run.
    """
    if num_classes not in _CIFAR_LAYOUT:
        raise ValueError(f"num_classes must be 10 or 100, got {num_classes!r}.")
    folder_name, train_files, test_file, label_key = _CIFAR_LAYOUT[num_classes]
    expected = (*train_files, test_file)
    root = Path(data_dir).expanduser()
    searched = [root, root / folder_name]
    for directory in searched:
        if all((directory / file_name).is_file() for file_name in expected):
            break
    else:
        raise FileNotFoundError(
            f"Could not find the CIFAR-{num_classes} python batches. Searched these folders:\n"
            + "".join(f"  {directory}\n" for directory in searched)
            + f"for all of these files: {', '.join(expected)} (the contents of '{folder_name}/' "
            f"in the 'python version' archive from {_CIFAR_SOURCE}). arbiter-env never downloads "
            "data: extract the archive and pass data_dir pointing at that folder or its parent."
        )

    def read(file_names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_read_cifar_batch(directory / f, label_key, num_classes) for f in file_names]
        data = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        images = torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
        return images, torch.from_numpy(labels)

    x_train, y_train = read(train_files)
    x_test, y_test = read((test_file,))
    x_train, x_test = standardize_splits(x_train, x_test, dims=(0, 2, 3))
    return ClassificationData(x_train, y_train, x_test, y_test, num_classes=num_classes)
