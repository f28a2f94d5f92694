"""fmlab installs under the one import name fmlab, from a plain (non-editable) install."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_package_list_names_every_folder():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {"fmlab"}
    for top in ("trainer", "tui"):
        for init in (REPO / top).rglob("__init__.py"):
            folders.add(".".join(["fmlab", *init.parent.relative_to(REPO).parts]))
    assert listed == folders


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory) -> Path:
    """A fresh venv with a wheel of this checkout installed (no editable finder)."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for folder in ("fmlab", "trainer", "tui"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "wheel"), str(source)],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    [wheel] = (root / "wheel").glob("*.whl")
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", str(wheel)], check=True, capture_output=True
    )
    return python


def run_installed(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the installed fmlab; its dependencies come from this venv, put on the
    path after the fresh install (a plain path entry runs no editable finder)."""
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    env = {"PYTHONPATH": f"{own}:{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_only_fmlab_is_importable(plain_install, tmp_path):
    for name in ("trainer", "tui"):
        result = run_installed(plain_install, tmp_path, "-c", f"import {name}")
        assert f"No module named '{name}'" in result.stderr
    result = run_installed(
        plain_install,
        tmp_path,
        "-c",
        "import fmlab.trainer.jobs, fmlab.tui.app; print(fmlab.tui.app.__file__)",
    )
    assert result.returncode == 0 and "site-packages/fmlab/tui/app.py" in result.stdout


def test_python_m_fmlab_prints_the_version(plain_install, tmp_path):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = run_installed(plain_install, tmp_path, "-m", "fmlab", "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"fmlab {version}"


def test_a_trainer_py_in_the_working_folder_changes_nothing(plain_install, tmp_path):
    (tmp_path / "trainer.py").write_text("raise SystemExit('the folder trainer.py ran')\n")
    (tmp_path / "tui.py").write_text("raise SystemExit('the folder tui.py ran')\n")
    result = run_installed(plain_install, tmp_path, "-m", "fmlab", "params", "--arch", "deeper")
    assert result.returncode == 0, result.stderr
    assert "total: 2,977,546 parameters" in result.stdout


def test_the_installed_package_finds_the_cpp_step_built_from_its_own_source(plain_install, tmp_path):
    from fmlab.trainer.training import native

    shown = "from fmlab.trainer.training import native; print(native.SOURCE.is_file(), native.build_directory().name)"
    result = run_installed(plain_install, tmp_path, "-c", shown)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", native.build_directory().name]
