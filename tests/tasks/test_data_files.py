"""Tests of the readers of data files the user already has: IDX (MNIST, Fashion-MNIST) and CIFAR."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch

from arbiter_env.tasks.data_files import load_cifar, load_idx

# --- IDX (MNIST / Fashion-MNIST) -----------------------------------------------------------------


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_set(folder: Path, rng: np.random.Generator, gz: bool, n_train: int = 6) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (n_train, 28, 28)), 0x803),
        "train-labels-idx1-ubyte": (rng.integers(0, 10, n_train), 0x801),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (3, 28, 28)), 0x803),
        "t10k-labels-idx1-ubyte": (rng.integers(0, 10, 3), 0x801),
    }
    for name, (array, magic) in arrays.items():
        payload = _idx_bytes(array, magic)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / name).write_bytes(payload)
    return {name: array for name, (array, _) in arrays.items()}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_idx_reader_round_trips_values(tmp_path: Path, gz: bool) -> None:
    raw = _write_idx_set(tmp_path, np.random.default_rng(0), gz)
    data = load_idx(tmp_path, "mnist")
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert data.x_train.dtype == torch.float32
    assert torch.equal(data.y_train, torch.as_tensor(raw["train-labels-idx1-ubyte"]))
    assert torch.equal(data.y_test, torch.as_tensor(raw["t10k-labels-idx1-ubyte"]))
    # Undo the scalar standardisation with the train statistics of the [0, 1]-scaled images.
    train01 = raw["train-images-idx3-ubyte"] / 255.0
    mean, std = train01.mean(), train01.std()
    expected_test = (raw["t10k-images-idx3-ubyte"] / 255.0 - mean) / std
    assert np.allclose(data.x_test[:, 0].numpy(), expected_test, atol=1e-5)
    assert np.allclose(data.x_train[:, 0].numpy(), (train01 - mean) / std, atol=1e-5)


@pytest.mark.parametrize("layout", ["fashion-mnist", "fashion-mnist/raw", "FashionMNIST/raw"])
def test_idx_reader_finds_torchvision_style_subfolders(tmp_path: Path, layout: str) -> None:
    raw = _write_idx_set(tmp_path / layout, np.random.default_rng(1), gz=True)
    data = load_idx(str(tmp_path), "fashion-mnist")
    assert torch.equal(data.y_train, torch.as_tensor(raw["train-labels-idx1-ubyte"]))


def test_idx_missing_files_error_names_paths_and_expected_files(tmp_path: Path) -> None:
    # Only three of the four files: still missing.
    _write_idx_set(tmp_path, np.random.default_rng(2), gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_idx(tmp_path, "mnist")
    message = str(info.value)
    for expected in (
        str(tmp_path),
        str(tmp_path / "mnist" / "raw"),
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        assert expected in message
    assert "download" in message


def test_idx_wrong_magic_raises_value_error_naming_the_file(tmp_path: Path) -> None:
    _write_idx_set(tmp_path, np.random.default_rng(3), gz=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(_idx_bytes(np.zeros(6), 0x803))  # image magic number on a label file
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.*magic"):
        load_idx(tmp_path, "mnist")


def test_idx_truncated_file_raises_value_error_naming_the_file(tmp_path: Path) -> None:
    _write_idx_set(tmp_path, np.random.default_rng(4), gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated"):
        load_idx(tmp_path, "mnist")


def test_idx_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    _write_idx_set(tmp_path, np.random.default_rng(5), gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(5), 0x801))
    with pytest.raises(ValueError, match="6 images"):
        load_idx(tmp_path, "mnist")


def test_idx_rejects_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fashion-mnist"):
        load_idx(tmp_path, "kmnist")  # type: ignore[arg-type]


# --- CIFAR ---------------------------------------------------------------------------------------


def _write_cifar(folder: Path, num_classes: int, rng: np.random.Generator) -> tuple:
    folder.mkdir(parents=True)
    if num_classes == 10:
        train_names, test_name, label_key = (
            [f"data_batch_{i}" for i in range(1, 6)],
            "test_batch",
            b"labels",
        )
    else:
        train_names, test_name, label_key = ["train"], "test", b"fine_labels"
    batches = {}
    for name in [*train_names, test_name]:
        n = 3 if name != "train" else 8
        batch = {
            b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            label_key: rng.integers(0, num_classes, n).tolist(),
            b"batch_label": b"x",
        }
        if num_classes == 100:
            batch[b"coarse_labels"] = [0] * n
        with (folder / name).open("wb") as handle:
            pickle.dump(batch, handle)
        batches[name] = batch
    train = [batches[name] for name in train_names]
    x_train = np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32) / 255.0
    y_train = np.concatenate([b[label_key] for b in train])
    x_test = batches[test_name][b"data"].reshape(-1, 3, 32, 32) / 255.0
    return x_train, y_train, x_test, np.asarray(batches[test_name][label_key])


@pytest.mark.parametrize(
    ("num_classes", "folder", "point_at_folder"),
    [
        (10, "cifar-10-batches-py", False),
        (10, "cifar-10-batches-py", True),
        (100, "cifar-100-python", False),
        (100, "cifar-100-python", True),
    ],
)
def test_cifar_reader_round_trips_values_with_per_channel_standardisation(
    tmp_path: Path, num_classes: Literal[10, 100], folder: str, point_at_folder: bool
) -> None:
    x_train, y_train, x_test, y_test = _write_cifar(
        tmp_path / folder, num_classes, np.random.default_rng(num_classes)
    )
    data = load_cifar(tmp_path / folder if point_at_folder else tmp_path, num_classes)
    assert data.input_shape == (3, 32, 32) and data.num_classes == num_classes
    assert torch.equal(data.y_train, torch.as_tensor(y_train))
    assert torch.equal(data.y_test, torch.as_tensor(y_test))
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    std = x_train.std(axis=(0, 2, 3), keepdims=True)
    assert np.allclose(data.x_train.numpy(), (x_train - mean) / std, atol=1e-5)
    assert np.allclose(data.x_test.numpy(), (x_test - mean) / std, atol=1e-5)


@pytest.mark.parametrize(
    ("num_classes", "expected_names"),
    [
        (10, ["cifar-10-batches-py", "data_batch_1", "data_batch_5", "test_batch"]),
        (100, ["cifar-100-python", "train", "test"]),
    ],
)
def test_cifar_missing_files_error_names_path_and_expected_files(
    tmp_path: Path, num_classes: int, expected_names: list[str]
) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_cifar(tmp_path, num_classes)  # type: ignore[arg-type]
    message = str(info.value)
    assert str(tmp_path) in message
    for name in expected_names:
        assert name in message


def test_cifar_malformed_batch_raises_value_error_naming_the_file(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "cifar-10-batches-py", 10, np.random.default_rng(0))
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    with bad.open("wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(ValueError, match="data_batch_3"):
        load_cifar(tmp_path, 10)
