"""Every command-line error is one line on stderr and exit status 2, caught before any work."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from arbiter_env.lab.cli import main


def _one_line_error(capsys: pytest.CaptureFixture, *fragments: str) -> str:
    """The single stderr line of a refused command; it must hold every fragment."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --- --import -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "last_line"),
    [
        ("x = 1 / 0\n", "ZeroDivisionError: division by zero"),
        ("def broken(:\n", "SyntaxError"),
        ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
        ("import sys\nsys.exit(0)\n", "sys.exit(0)"),
        ("raise SystemExit(3)\n", "sys.exit(3)"),
    ],
)
def test_an_import_that_fails_or_exits_is_one_line_naming_the_module(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    source: str,
    last_line: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_tasks_broken.py").write_text(source)
    assert main(["tasks", "--import", "my_tasks_broken"]) == 2
    _one_line_error(capsys, "'my_tasks_broken'", last_line)


def test_compare_with_an_import_that_exits_zero_is_an_error_not_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quits.py").write_text("import sys\nsys.exit(0)\n")
    config = tmp_path / "experiment.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "tasks": ["digits-mlp"],
                "imports": ["quits"],
                "controllers": [{"name": "b64", "controller": "fixed"}],
                "wandb": {"mode": "disabled"},
            }
        )
    )
    assert main(["compare", "--config", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err  # the experiment's check lists its problems, one a line
    assert "importing 'quits' failed: it called sys.exit(0)" in error, error


# --- checkpoints ----------------------------------------------------------------------------------


class _CreatesMarker:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def arbiter_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from arbiter_env.agents.arbiter import Arbiter
    from arbiter_env.envs.batch_size import BatchSizeEnv

    folder = tmp_path_factory.mktemp("arbiter") / "checkpoint"
    folder.mkdir()
    task_kwargs = {"epochs": 0.25, "num_intervals": 2}
    env = BatchSizeEnv("digits-mlp", task_kwargs=task_kwargs, action_encoding="continuous")
    Arbiter(env).save(folder / "arbiter.pt")
    run_config = {"task": "digits-mlp", "task_kwargs": task_kwargs}
    (folder / "arbiter_run.yaml").write_text(yaml.safe_dump(run_config))
    return folder


def _damaged(arbiter_checkpoint: Path, tmp_path: Path, kind: str, marker: Path) -> Path:
    folder = tmp_path / kind
    shutil.copytree(arbiter_checkpoint, folder)
    agent = folder / "arbiter.pt"
    if kind == "truncated":
        agent.write_bytes(agent.read_bytes()[:300])
    elif kind == "another-controller":
        torch.save({"weights": torch.zeros(3)}, agent)
    elif kind == "pickle-payload":
        torch.save({"config": _CreatesMarker(marker)}, agent)
    elif kind == "python-tag":
        (folder / "arbiter_run.yaml").write_text("task: !!python/object/apply:os.getcwd []\n")
    return folder


@pytest.mark.parametrize(
    ("kind", "names", "what"),
    [
        ("truncated", "arbiter.pt", "damaged or truncated"),
        ("another-controller", "arbiter.pt", "not an Arbiter checkpoint"),
        ("pickle-payload", "arbiter.pt", "nothing in it was run"),
        ("python-tag", "arbiter_run.yaml", "invalid YAML"),
    ],
)
def test_a_damaged_arbiter_checkpoint_is_one_line_naming_the_file_before_any_work(
    arbiter_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    kind: str,
    names: str,
    what: str,
) -> None:
    marker = tmp_path / "pwned"
    folder = _damaged(arbiter_checkpoint, tmp_path, kind, marker)
    run_dir = tmp_path / "run"
    argv = ["evaluate", "--controller", str(folder), "--seeds", "0", "--wandb", "disabled"]
    assert main([*argv, "--run-dir", str(run_dir)]) == 2
    _one_line_error(capsys, str(folder / names), what)
    assert not marker.exists() and not run_dir.exists()


def test_an_arbiter_checkpoint_saved_for_another_network_is_one_line(
    arbiter_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "cnn"
    shutil.copytree(arbiter_checkpoint, folder)
    state = torch.load(folder / "arbiter.pt", weights_only=True)
    state["phi"] = {name: value[..., :1] for name, value in state["phi"].items()}
    torch.save(state, folder / "arbiter.pt")
    argv = ["evaluate", "--controller", str(folder), "--seeds", "0", "--wandb", "disabled"]
    assert main([*argv, "--run-dir", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, str(folder / "arbiter.pt"), "does not fit an Arbiter")


# --- run folders ----------------------------------------------------------------------------------

EPISODE = ["episode", "--batch-size", "64", "--wandb", "disabled", "epochs=0.25"]


def test_a_run_dir_that_is_a_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert main([*EPISODE, "--run-dir", str(a_file)]) == 2
    _one_line_error(capsys, str(a_file), "is a file")
    assert main([*EPISODE, "--run-dir", str(a_file / "run")]) == 2
    _one_line_error(capsys, str(a_file / "run"), f"lies under {a_file}")


def test_compare_run_dir_under_a_file_is_exit_2_not_74(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    config = tmp_path / "experiment.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "tasks": ["digits-mlp"],
                "controllers": [{"name": "b64", "controller": "fixed"}],
                "wandb": {"mode": "disabled"},
            }
        )
    )
    assert main(["compare", "--config", str(config), "--run-dir", str(a_file / "run")]) == 2
    _one_line_error(capsys, "lies under")


def test_a_run_dir_in_a_read_only_folder_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() == 0:
        # Permission bits do not bind root; make the folder read-only as access(2) reports it.
        real_access = os.access
        monkeypatch.setattr(
            os,
            "access",
            lambda path, mode, **kw: (
                False if Path(path) == read_only and mode & os.W_OK else real_access(path, mode)
            ),
        )
        monkeypatch.setattr(Path, "mkdir", _refuse_under(read_only, Path.mkdir))
    try:
        assert main([*EPISODE, "--run-dir", str(read_only / "run")]) == 2
        _one_line_error(capsys, str(read_only / "run"), "not writable")
    finally:
        read_only.chmod(0o755)


def _refuse_under(folder: Path, mkdir):
    """``Path.mkdir`` that fails like a read-only folder below ``folder`` (for root)."""

    def refusing(self, *args, **kwargs):
        if folder in Path(self).parents:
            raise PermissionError(13, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    return refusing
