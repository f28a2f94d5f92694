import gzip
import struct

import pytest
import torch
from idx_files import idx_bytes, learnable_split, write_dataset

from fmlab.trainer import data
from fmlab.trainer.data import FILES, IMAGE_MAGIC, DataError


@pytest.mark.parametrize("gz", [True, False])
def test_loader_reads_gzip_and_plain_idx(tmp_path, gz):
    directory = write_dataset(tmp_path / "d", train=64, test=32, gz=gz)
    source = data.locate(directory)
    assert source.how == "--data-dir"
    assert all(p.suffix == (".gz" if gz else "") for p in source.files.values())
    ds = data.load(source)
    images, labels = learnable_split(64, 0)
    assert ds.train_x.shape == (64, 784) and ds.train_x.dtype == torch.float32
    assert ds.test_x.shape == (32, 784) and ds.test_y.dtype == torch.int64
    expected = torch.tensor(list(images[:784]), dtype=torch.float32) / 255
    assert torch.equal(ds.train_x[0], expected)
    assert ds.train_y.tolist() == list(labels)
    assert 0.0 <= float(ds.train_x.min()) and float(ds.train_x.max()) <= 1.0


def test_search_order_env_then_local_then_torchvision_layout(tmp_path, monkeypatch):
    env_dir = write_dataset(tmp_path / "env", train=8, test=8)
    local = write_dataset(tmp_path / "work" / "data" / "FashionMNIST" / "raw", train=8, test=8)
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    assert data.locate(download=False).directory.resolve() == local.resolve()
    monkeypatch.setenv("FMLAB_DATA", str(env_dir))
    found = data.locate(download=False)
    assert (found.directory, found.how) == (env_dir, "FMLAB_DATA")


def test_not_found_lists_places_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data, "_download", lambda cache: "failed: no network")
    with pytest.raises(DataError) as info:
        data.locate()
    message = str(info.value)
    assert "\n" not in message
    assert "no-debian" in message and "data" in message and "no network" in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message


def test_explicit_dir_without_files_is_an_error_not_a_fallback(tmp_path):
    with pytest.raises(DataError, match="no Fashion-MNIST files in"):
        data.locate(tmp_path)


def _corrupt(directory, key, raw):
    name = FILES[key]
    for path in directory.glob(f"{name}*"):
        path.unlink()
    (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
    return directory / f"{name}.gz"


def test_wrong_magic_names_the_file(tmp_path):
    directory = write_dataset(tmp_path / "d", train=8, test=8)
    path = _corrupt(directory, "train_images", idx_bytes(0x0801, (8, 28, 28), bytes(8 * 784)))
    with pytest.raises(DataError, match="wrong IDX magic") as info:
        data.load(data.locate(directory))
    assert str(path) in str(info.value)


def test_truncated_file_names_the_file(tmp_path):
    directory = write_dataset(tmp_path / "d", train=8, test=8)
    raw = idx_bytes(IMAGE_MAGIC, (8, 28, 28), bytes(8 * 784))[:-100]
    path = _corrupt(directory, "test_images", raw)
    with pytest.raises(DataError, match="truncated") as info:
        data.load(data.locate(directory))
    assert str(path) in str(info.value)


def test_label_out_of_range_and_count_mismatch(tmp_path):
    directory = write_dataset(tmp_path / "d", train=8, test=8)
    _corrupt(directory, "train_labels", struct.pack(">II", 0x0801, 8) + bytes([1] * 7 + [12]))
    with pytest.raises(DataError, match="out of range"):
        data.load(data.locate(directory))
    _corrupt(directory, "train_labels", struct.pack(">II", 0x0801, 7) + bytes([1] * 7))
    with pytest.raises(DataError, match="7 labels for 8 images"):
        data.load(data.locate(directory))


def test_broken_gzip_is_reported(tmp_path):
    directory = write_dataset(tmp_path / "d", train=8, test=8)
    (directory / (FILES["train_images"] + ".gz")).write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="cannot read"):
        data.load(data.locate(directory))
