"""Data files from a `data_dir` never run code, and never inflate past what their header says."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from arbiter_env.tasks.data_files import _IDX_IMAGES_MAGIC, _read_idx, load_cifar, load_idx
from arbiter_env.tasks.safe_pickle import UnsafePickleError, restricted_load


class _RunsCode:
    """Unpickling this calls ``os.system`` -- the classic pickle exploit."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar10_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (2, 3072)).astype(np.uint8),
            b"labels": [0, 1],
            b"batch_label": b"x",
            b"filenames": [b"a.png", b"b.png"],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def test_malicious_cifar_batch_is_refused_and_never_runs_its_code(tmp_path: Path) -> None:
    folder = _cifar10_folder(tmp_path)
    marker = tmp_path / "pwned"
    payload = {b"data": _RunsCode(marker), b"labels": [0]}
    (folder / "data_batch_2").write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError, match=r"data_batch_2 names posix\.system|data_batch_2 names"):
        load_cifar(tmp_path, 10)
    assert not marker.exists()


@pytest.mark.parametrize(
    "target", [(eval, ("1",)), (getattr, (object, "x")), (__import__, ("os",))]
)
def test_restricted_unpickler_refuses_every_global_off_the_list(tmp_path: Path, target) -> None:
    class Evil:
        def __reduce__(self):
            return target

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UnsafePickleError, match="nothing in the file was executed"):
        restricted_load(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_numpy_arrays_of_every_protocol(
    tmp_path: Path, protocol: int
) -> None:
    data = {
        b"data": np.arange(12, dtype=np.uint8).reshape(3, 4),
        b"labels": [1, 2, 3],
        "name": "x",
        b"f": np.float32(1.5),
    }
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = restricted_load(path)
    np.testing.assert_array_equal(loaded[b"data"], data[b"data"])
    assert loaded[b"labels"] == [1, 2, 3] and loaded["name"] == "x"
    assert loaded[b"f"] == np.float32(1.5)


def test_genuine_cifar_batches_still_load(tmp_path: Path) -> None:
    _cifar10_folder(tmp_path)
    data = load_cifar(tmp_path, 10)
    assert data.num_train == 10 and data.num_test == 2


def test_idx_gzip_bomb_is_stopped_at_the_size_its_header_announces(tmp_path: Path) -> None:
    # A header for 1 image of 28x28 followed by 64 MB of zeros: compresses to ~64 KB.
    header = np.array([_IDX_IMAGES_MAGIC, 1, 28, 28], dtype=">u4").tobytes()
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb") as handle:
        handle.write(header)
        zeros = bytes(1 << 20)
        for _ in range(64):
            handle.write(zeros)
    assert bomb.stat().st_size < 1 << 20
    read: list[int] = []
    original_read = gzip.GzipFile.read

    def counting_read(self, size=-1):
        chunk = original_read(self, size)
        read.append(len(chunk))
        return chunk

    gzip.GzipFile.read = counting_read  # type: ignore[method-assign]
    try:
        with pytest.raises(ValueError, match="longer than its header says"):
            _read_idx(bomb, _IDX_IMAGES_MAGIC)
    finally:
        gzip.GzipFile.read = original_read  # type: ignore[method-assign]
    assert sum(read) <= 16 + 28 * 28 + 1


def test_idx_header_claiming_more_than_the_file_holds_is_truncated(tmp_path: Path) -> None:
    header = np.array([_IDX_IMAGES_MAGIC, 10**6, 28, 28], dtype=">u4").tobytes()
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(header + bytes(100))
    with pytest.raises(ValueError, match="truncated"):
        _read_idx(path, _IDX_IMAGES_MAGIC)


def test_idx_files_round_trip_after_the_capped_reader(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28) % 251
    labels = np.array([3, 7], dtype=np.uint8)
    for prefix in ("train", "t10k"):
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(
                np.array([_IDX_IMAGES_MAGIC, 2, 28, 28], ">u4").tobytes() + images.tobytes()
            )
        )
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(
            np.array([0x801, 2], ">u4").tobytes() + labels.tobytes()
        )
    data = load_idx(tmp_path, "mnist")
    assert data.num_train == 2 and data.y_train.tolist() == [3, 7]
