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


def _gzip_bomb(path: Path, header: bytes, inflated_mib: int) -> Path:
    """``header`` followed by ``inflated_mib`` MiB of zeros, gzip-compressed (about 1 KB per MiB)."""
    with gzip.open(path, "wb") as handle:
        handle.write(header)
        zeros = bytes(1 << 20)
        for _ in range(inflated_mib):
            handle.write(zeros)
    return path


def _counting_gzip_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of every decompressed chunk read from a ``GzipFile`` from now on."""
    read: list[int] = []
    original_read = gzip.GzipFile.read

    def counting_read(self, size=-1):
        chunk = original_read(self, size)
        read.append(len(chunk))
        return chunk

    monkeypatch.setattr(gzip.GzipFile, "read", counting_read)
    return read


def test_idx_gzip_bomb_claiming_2_to_the_30_images_is_refused_fast_without_inflating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time
    import tracemalloc

    header = np.array([_IDX_IMAGES_MAGIC, 2**30, 28, 28], dtype=">u4").tobytes()
    bomb = _gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", header, inflated_mib=256)
    assert bomb.stat().st_size < 1 << 20
    read = _counting_gzip_reads(monkeypatch)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ValueError, match="limit for an IDX file") as refused:
            _read_idx(bomb, _IDX_IMAGES_MAGIC)
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert sum(read) == 16  # the header, and not one byte of the payload
    assert elapsed < 2.0 and peak < 8 << 20
    assert f"claims {16 + 2**30 * 28 * 28} bytes" in str(refused.value)


def test_idx_gzip_whose_header_needs_more_than_its_compressed_size_can_hold_is_not_inflated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 60,000 images (47 MB: under the cap) announced by a file of about 1 KB.
    header = np.array([_IDX_IMAGES_MAGIC, 60_000, 28, 28], dtype=">u4").tobytes()
    path = _gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", header, inflated_mib=1)
    read = _counting_gzip_reads(monkeypatch)
    with pytest.raises(ValueError, match=r"truncated.*inflates to at most"):
        _read_idx(path, _IDX_IMAGES_MAGIC)
    assert sum(read) == 16


def test_idx_cap_is_the_callers_not_the_headers(tmp_path: Path) -> None:
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(
        gzip.compress(np.array([_IDX_IMAGES_MAGIC, 4, 28, 28], ">u4").tobytes() + images.tobytes())
    )
    assert _read_idx(path, _IDX_IMAGES_MAGIC).shape == (4, 28, 28)
    with pytest.raises(ValueError, match="above the 1000-byte limit"):
        _read_idx(path, _IDX_IMAGES_MAGIC, max_bytes=1000)


def test_idx_size_messages_use_exact_integers(tmp_path: Path) -> None:
    top = 2**32 - 1
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(np.array([_IDX_IMAGES_MAGIC, top, top, top], dtype=">u4").tobytes())
    with pytest.raises(ValueError) as refused:
        _read_idx(path, _IDX_IMAGES_MAGIC)
    message = str(refused.value)
    assert f"needs {16 + top**3} bytes, file has 16" in message, message
    gz = tmp_path / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(ValueError, match=f"claims {16 + top**3} bytes"):
        _read_idx(gz, _IDX_IMAGES_MAGIC)


def test_float_cifar_labels_are_refused_not_truncated(tmp_path: Path) -> None:
    folder = _cifar10_folder(tmp_path)
    batch = pickle.loads((folder / "data_batch_3").read_bytes())
    batch[b"labels"] = [0.0, 1.7]
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3: b'labels' must hold integer"):
        load_cifar(tmp_path, 10)
