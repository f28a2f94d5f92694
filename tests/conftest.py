from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from idx_files import write_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """No test sees the developer's data, sessions or download cache."""
    for name in ("FMLAB_DATA", "FMLAB_SESSIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


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
