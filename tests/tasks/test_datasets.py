"""Tests of the data loaders: shapes, standardisation, determinism, error messages.

The readers of data files are tested in tests/tasks/test_data_files.py.
"""

from __future__ import annotations

import random
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from arbiter_env.tasks import datasets
from arbiter_env.tasks.datasets import (
    ClassificationData,
    from_tensors,
    from_torch_datasets,
    load_digits,
    load_mnist1d,
    make_synthetic_teacher,
)


def _global_rng_states() -> tuple:
    """The global numpy and python RNG states, which loaders must leave unchanged."""
    return np.random.get_state(), random.getstate()


def _assert_same_rng_states(before: tuple, after: tuple) -> None:
    (numpy_before, python_before), (numpy_after, python_after) = before, after
    assert numpy_before[0] == numpy_after[0]
    assert np.array_equal(numpy_before[1], numpy_after[1])
    assert numpy_before[2:] == numpy_after[2:]
    assert python_before == python_after


# --- digits --------------------------------------------------------------------------------------


def test_digits_shapes_stratified_split_and_train_standardisation() -> None:
    data = load_digits()
    assert data.input_shape == (64,)
    assert data.num_classes == 10
    assert data.num_train + data.num_test == 1797
    assert data.num_test == pytest.approx(0.2 * 1797, abs=1)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    # Stratified: every class is in the test split in roughly its overall proportion.
    counts = torch.bincount(data.y_test, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38
    # Train statistics: each non-constant pixel has mean 0 and std 1, constant ones are all 0.
    mean, std = data.x_train.mean(0), data.x_train.std(0, correction=0)
    assert torch.allclose(mean, torch.zeros(64), atol=1e-5)
    constant = std < 1e-6
    assert constant.any(), "digits has blank border pixels; they must not divide by zero"
    assert torch.allclose(std[~constant], torch.ones(int((~constant).sum())), atol=1e-4)
    assert torch.isfinite(data.x_test).all()


def test_digits_is_deterministic_and_leaves_global_rngs_alone() -> None:
    states = _global_rng_states()
    first, second = load_digits(), load_digits()
    assert torch.equal(first.x_train, second.x_train)
    assert torch.equal(first.y_test, second.y_test)
    _assert_same_rng_states(states, _global_rng_states())


# --- MNIST-1D ------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    requests = pytest.importorskip("requests")
    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr("socket.socket.connect", refuse)


@pytest.mark.usefixtures("no_network")
def test_mnist1d_generates_locally_and_restores_global_rng_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mnist1d's get_dataset would write/read ./mnist1d_data.pkl; run in an empty folder to see it
    # does not.
    monkeypatch.chdir(tmp_path)
    datasets._generate_mnist1d.cache_clear()  # force a real generation, not a cache hit
    states = _global_rng_states()

    data = load_mnist1d(num_samples=200, seed=3)

    _assert_same_rng_states(states, _global_rng_states())
    assert list(tmp_path.iterdir()) == []
    assert data.input_shape == (40,)
    assert (data.num_train, data.num_test) == (160, 40)
    assert data.num_classes == 10
    assert float(data.x_train.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(data.x_train.std(correction=0)) == pytest.approx(1.0, abs=1e-4)


def test_mnist1d_is_deterministic_per_seed_and_cache_is_not_shared_mutably() -> None:
    first = load_mnist1d(num_samples=100, seed=5)
    first.x_train.zero_()  # a caller mutating its copy must not corrupt the cache
    second = load_mnist1d(num_samples=100, seed=5)
    datasets._generate_mnist1d.cache_clear()
    regenerated = load_mnist1d(num_samples=100, seed=5)
    other_seed = load_mnist1d(num_samples=100, seed=6)
    assert torch.equal(second.x_train, regenerated.x_train)
    assert torch.equal(second.y_train, regenerated.y_train)
    assert not torch.equal(second.x_train, first.x_train)
    assert not torch.equal(second.x_train, other_seed.x_train)


def test_mnist1d_channels_first_adds_a_channel_dimension() -> None:
    flat = load_mnist1d(num_samples=100, seed=5)
    channels = load_mnist1d(num_samples=100, seed=5, channels_first=True)
    assert channels.input_shape == (1, 40)
    assert torch.equal(channels.x_train[:, 0], flat.x_train)


@pytest.mark.parametrize("num_samples", [0, 9, 10.5, True])
def test_mnist1d_rejects_bad_num_samples(num_samples: object) -> None:
    with pytest.raises(ValueError, match="num_samples"):
        load_mnist1d(num_samples=num_samples)  # type: ignore[arg-type]


# --- synthetic teacher ---------------------------------------------------------------------------


def test_synthetic_teacher_is_deterministic_per_seed() -> None:
    a, b = make_synthetic_teacher(seed=1), make_synthetic_teacher(seed=1)
    c = make_synthetic_teacher(seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.input_shape == (20,) and (a.num_train, a.num_test, a.num_classes) == (2000, 1000, 5)
    assert torch.bincount(a.y_train, minlength=5).min() > 0.05 * 2000  # no class nearly empty


def test_synthetic_teacher_replaces_the_requested_fraction_of_labels() -> None:
    noise, classes = 0.3, 4
    clean = make_synthetic_teacher(num_classes=classes, label_noise=0.0, seed=7)
    noisy = make_synthetic_teacher(num_classes=classes, label_noise=noise, seed=7)
    # Same inputs and clean labels; replaced labels are uniform, so 1/classes of them coincide.
    assert torch.equal(clean.x_train, noisy.x_train)
    for clean_y, noisy_y in ((clean.y_train, noisy.y_train), (clean.y_test, noisy.y_test)):
        changed = (clean_y != noisy_y).float().mean().item()
        assert changed == pytest.approx(noise * (1 - 1 / classes), abs=0.04)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_train": 0},
        {"num_test": -1},
        {"input_dim": 0},
        {"num_classes": 1},
        {"hidden": 2.5},
        {"label_noise": -0.1},
        {"label_noise": 1.5},
    ],
)
def test_synthetic_teacher_rejects_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make_synthetic_teacher(**kwargs)


# --- user data and validation --------------------------------------------------------------------


def test_from_tensors_converts_infers_classes_and_optionally_standardises() -> None:
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(3.0, 2.0, (50, 4)), rng.normal(3.0, 2.0, (10, 4))
    y_train, y_test = rng.integers(0, 3, 50), np.array([3] + [0] * 9)  # class 3 only in test
    raw = from_tensors(x_train, y_train, x_test, y_test)
    assert raw.num_classes == 4
    assert raw.x_train.dtype == torch.float32 and raw.y_train.dtype == torch.int64
    assert np.allclose(raw.x_train.numpy(), x_train, atol=1e-6)  # kept as given by default
    scaled = from_tensors(
        torch.as_tensor(x_train), y_train, x_test, y_test, num_classes=6, standardize=True
    )
    assert scaled.num_classes == 6
    assert torch.allclose(scaled.x_train.mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(scaled.x_train.std(0, correction=0), torch.ones(4), atol=1e-5)
    expected_test = (x_test - x_train.mean(0)) / x_train.std(0)
    assert np.allclose(scaled.x_test.numpy(), expected_test, atol=1e-5)


def test_from_tensors_rejects_float_labels() -> None:
    with pytest.raises(ValueError, match="integer class labels"):
        from_tensors(torch.zeros(4, 2), torch.tensor([0.0, 1.0, 0.5, 1.0]), torch.zeros(1, 2), [0])


class _PairDataset(torch.utils.data.Dataset):
    def __init__(self, n: int, tensor_labels: bool) -> None:
        self.n, self.tensor_labels = n, tensor_labels

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple:
        x = torch.full((2, 3), float(index))
        y = index % 3
        return x, (torch.tensor(y) if self.tensor_labels else y)


def test_from_torch_datasets_stacks_pairs_with_int_or_tensor_labels() -> None:
    data = from_torch_datasets(_PairDataset(7, tensor_labels=False), _PairDataset(4, True))
    assert data.input_shape == (2, 3) and data.num_classes == 3
    assert data.num_train == 7 and data.num_test == 4
    assert torch.equal(data.y_train, torch.arange(7) % 3)
    assert torch.equal(data.x_train[5], torch.full((2, 3), 5.0))


def test_from_torch_datasets_rejects_items_that_are_not_pairs() -> None:
    triples = torch.utils.data.TensorDataset(torch.zeros(3, 2), torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\(x, y\) pair"):
        from_torch_datasets(triples, triples)


def _valid_parts() -> dict:
    return {
        "x_train": torch.zeros(4, 3),
        "y_train": torch.tensor([0, 1, 2, 1]),
        "x_test": torch.zeros(2, 3),
        "y_test": torch.tensor([0, 2]),
        "num_classes": 3,
    }


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"y_train": torch.tensor([0, 1, 2])}, "4 rows but y_train has 3"),
        ({"y_test": torch.tensor([0, 3])}, "num_classes=3"),
        ({"y_train": torch.tensor([-1, 0, 1, 2])}, "labels must lie"),
        ({"x_train": torch.zeros(4, 3, dtype=torch.int64)}, "float32"),
        ({"x_test": torch.zeros(2, 3, dtype=torch.float64)}, "float32"),
        ({"y_train": torch.tensor([0.0, 1.0, 2.0, 1.0])}, "int64"),
        ({"x_test": torch.zeros(0, 3), "y_test": torch.zeros(0, dtype=torch.int64)}, "empty"),
        ({"x_test": torch.zeros(2, 4)}, "same shape"),
        ({"x_train": torch.zeros(4)}, "at least 2 dimensions"),
        ({"x_train": torch.full((4, 3), float("nan"))}, "NaN"),
        ({"num_classes": 1}, "num_classes"),
    ],
)
def test_classification_data_rejects_invalid_inputs(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ClassificationData(**{**_valid_parts(), **change})


def test_classification_data_is_frozen_and_reports_input_shape() -> None:
    data = ClassificationData(**_valid_parts())
    assert data.input_shape == (3,)
    with pytest.raises(AttributeError):
        data.num_classes = 5  # type: ignore[misc]
