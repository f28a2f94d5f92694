from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from idx_files import write_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """No test sees the developer's data, sessions, download cache or app
    settings, nor writes to them: each test has its own (empty) folders."""
    for name in ("FMLAB_DATA", "FMLAB_SESSIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """512 train / 128 test generated images as gzip IDX files."""
    return write_dataset(tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture(scope="session")
def tiny_dataset(tiny_data_dir):
    from fmlab.trainer import data

    return data.load(data.locate(tiny_data_dir))


@pytest.fixture(scope="session")
def tiny_datasets(tiny_data_dir):
    """The tiny set as the job service takes it (loaded once per device)."""
    from fmlab.trainer.data import DatasetCache

    return DatasetCache(tiny_data_dir)


@pytest.fixture
def sessions_dir(tmp_path) -> Path:
    path = tmp_path / "sessions"
    path.mkdir()
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests train tiny models: one thread avoids oversubscribing a shared CPU."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _cli_never_shows_a_traceback(monkeypatch):
    """Every command the suite runs in-process ends in an exit status, never
    an uncaught exception, and prints no traceback (fmlab speaks one line)."""
    from typer.testing import CliRunner

    invoke = CliRunner.invoke

    def checked(self, *args, **kwargs):
        result = invoke(self, *args, **kwargs)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            trace = "".join(traceback.format_exception(*result.exc_info))
            pytest.fail(f"the command raised instead of exiting:\n{trace}")
        assert "Traceback" not in result.output, result.output
        return result

    monkeypatch.setattr(CliRunner, "invoke", checked)
