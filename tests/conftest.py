import os

import pytest
import torch
from torch import nn

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("MPLBACKEND", "Agg")
# The test networks are tiny: one thread avoids oversubscribing the two cores of CI machines,
# where worker processes (SubprocVecEnv, process pools) run beside the test process.
torch.set_num_threads(1)

from arbiter_env.tasks import ClassificationData, OptimizerConfig, Task, from_tensors  # noqa: E402
from arbiter_env.user_code import IMPORTS_ENV_VAR  # noqa: E402

# What `arbiter --import MODULE` (user_code.share_with_workers) writes into os.environ for the
# worker processes of its command. Run in this process by tests/lab/test_cli.py, it would stay set.
_SHARED_WITH_WORKERS = (IMPORTS_ENV_VAR, "PYTHONPATH")


@pytest.fixture(autouse=True)
def _restore_what_the_cli_shares_with_workers():
    """Each test leaves ``ARBITER_IMPORTS`` and ``PYTHONPATH`` as it found them."""
    saved = {name: os.environ.get(name) for name in _SHARED_WITH_WORKERS}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips the tests marked ``gpu`` on a machine without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def make_blobs(
    num_train: int = 200, num_test: int = 50, dim: int = 6, classes: int = 3, seed: int = 0
):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=generator) * 2

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(classes, (n,), generator=generator)
        return centres[labels] + torch.randn(n, dim, generator=generator), labels

    x_train, y_train = draw(num_train)
    x_test, y_test = draw(num_test)
    return from_tensors(x_train, y_train, x_test, y_test, num_classes=classes)


_BLOBS = make_blobs()


def blobs() -> ClassificationData:
    return _BLOBS


def small_mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 16) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.Tanh(), nn.Linear(hidden, num_classes)
    )


TINY_TASK = Task(
    name="tiny-blobs",
    data=blobs,
    model=small_mlp,
    optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9),
    epochs=2,
    num_intervals=4,
    batch_min=4,
    batch_max=64,
    batch_start=16,
    probe_size=16,
)


@pytest.fixture
def tiny_task() -> Task:
    return TINY_TASK


def small_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A 1-D convolution over flat inputs: a network that is not made of nn.Linear alone."""
    return nn.Sequential(
        nn.Unflatten(1, (1, input_shape[0])),
        nn.Conv1d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * (input_shape[0] - 2), num_classes),
    )


@pytest.fixture
def cnn_task() -> Task:
    return TINY_TASK.replace(name="tiny-cnn", model=small_cnn)


@pytest.fixture
def dropout_task() -> Task:
    def model(input_shape, num_classes):
        return nn.Sequential(
            nn.Linear(input_shape[0], 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, num_classes)
        )

    return TINY_TASK.replace(name="tiny-dropout", model=model)


def relu_mlp(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(input_shape[0], 16), nn.ReLU(), nn.Linear(16, num_classes))


@pytest.fixture
def exploding_task() -> Task:
    """A ReLU network (unbounded activations) with a learning rate that overflows float32."""
    return TINY_TASK.replace(name="tiny-exploding", model=relu_mlp, optimizer={"lr": 1e30})


@pytest.fixture
def restore_threads(monkeypatch):
    """For tests that call execute_run in this process: it changes process-wide settings."""
    # execute_run pins torch to one thread and silences W&B, as in a worker process.
    monkeypatch.setenv("WANDB_SILENT", "true")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
