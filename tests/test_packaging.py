"""The built wheel installs `agents/` and `baselines/` inside the `arbiter_env` namespace only."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
    )
    (built,) = out.glob("arbiter_env-*.whl")
    return built


def test_wheel_has_only_arbiter_env_at_the_top_level(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {
        "arbiter_env",
        f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info",
    }
    assert "arbiter_env/agents/__init__.py" in names
    assert "arbiter_env/baselines/__init__.py" in names
    assert "arbiter_env/tasks/__init__.py" in names


def test_every_source_module_is_in_the_wheel(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        f"arbiter_env/{path.relative_to(ROOT / 'arbiter_env').as_posix()}"
        for path in (ROOT / "arbiter_env").rglob("*.py")
    }
    for folder in ("agents", "baselines"):
        sources |= {
            f"arbiter_env/{folder}/{p.relative_to(ROOT / folder).as_posix()}"
            for p in (ROOT / folder).rglob("*.py")
        }
    assert sources <= names, (
        f"missing from the wheel (add the sub-package to pyproject.toml): {sorted(sources - names)}"
    )


def test_installed_wheel_imports_namespaced_packages_and_not_generic_names(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    assert not (target / "agents").exists() and not (target / "baselines").exists()
    probe = (
        "import importlib.util, arbiter_env, arbiter_env.agents, arbiter_env.baselines;"
        "print(arbiter_env.__file__);"
        "print(importlib.util.find_spec('agents'), importlib.util.find_spec('baselines'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    location, specs = result.stdout.strip().splitlines()
    assert location.startswith(str(target))
    assert specs == "None None"
