"""Finding and loading Fashion-MNIST into memory.

The four IDX files (gzip or plain) are parsed directly; the whole set is held
as tensors on the training device, images scaled to [0, 1] like ToTensor, so a
batch is a slice rather than per-sample Python work.
"""

from __future__ import annotations

import gzip
import os
import struct
import threading
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from fmlab.trainer.regular_files import NotRegularFile, open_regular_file
from fmlab.trainer.text import first_line, visible

if TYPE_CHECKING:
    import torch

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801
# Fashion-MNIST's largest file holds 47 MB; a header promising more than this
# is refused before anything is read (a gzip bomb unpacks to what it likes).
MAX_IDX_PAYLOAD = 2**30


class DataError(Exception):
    """Data that cannot be found or read; the message is one line for the user."""


@dataclass(frozen=True)
class DataSource:
    directory: Path
    files: dict[str, Path]  # keys of FILES -> the file found (gzip or plain)
    how: str  # which search step found it


@dataclass
class FashionMNIST:
    train_x: torch.Tensor  # float32 (N, 784) in [0, 1]
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: DataSource | None = None
    train_total: int | None = None  # the training split's size, when this holds only its first images

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def first(self, count: int | None) -> FashionMNIST:
        """The same set with only the first ``count`` training images (all: None);
        ``train_total`` remembers how many there were."""
        if count is None or count >= len(self.train_x):
            return self
        total = self.train_total or len(self.train_x)
        return replace(self, train_x=self.train_x[:count], train_y=self.train_y[:count], train_total=total)


class DatasetCache:
    """Fashion-MNIST loaded once per device and kept for the next run; safe to
    share between threads (the app's views take turns training)."""

    def __init__(self, data_dir: Path | str | None = None) -> None:
        self.data_dir = data_dir
        self._loaded: dict[str, FashionMNIST] = {}
        self._lock = threading.Lock()

    def get(self, device_name: str) -> FashionMNIST:
        """The set on the device ``device_name`` resolves to; DataError or ConfigError."""
        from fmlab.trainer.device import resolve_device

        device = resolve_device(device_name)
        with self._lock:
            if str(device) not in self._loaded:
                self._loaded[str(device)] = load(locate(self.data_dir), device)
            return self._loaded[str(device)]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fmlab"


def _files_in(directory: Path) -> dict[str, Path] | None:
    """The four files in ``directory`` (plain or .gz), or None if any is missing."""
    found = {}
    for key, name in FILES.items():
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def candidate_dirs(data_dir: Path | str | None = None) -> list[tuple[Path, str]]:
    """Where to look, in order, each with the reason it is on the list."""
    places: list[tuple[Path, str]] = []
    if data_dir is not None:
        places.append((Path(data_dir), "--data-dir"))
    elif os.environ.get("FMLAB_DATA"):
        places.append((Path(os.environ["FMLAB_DATA"]), "FMLAB_DATA"))
    places.append((Path("data"), "./data"))
    places.append((DEBIAN_DIR, "dataset-fashion-mnist package"))
    places.append((default_cache_dir(), "download cache"))
    return places


def locate(data_dir: Path | str | None = None, download: bool = True) -> DataSource:
    """Find the dataset, downloading it with torchvision as a last resort.

    Each candidate directory is tried as it is and in torchvision's layout
    (``<dir>/FashionMNIST/raw``). An explicit ``data_dir`` that holds nothing is
    an error at once, so a typo is not hidden by a copy found elsewhere.
    """
    looked = []
    for directory, how in candidate_dirs(data_dir):
        for sub in (directory, directory / "FashionMNIST" / "raw"):
            files = _files_in(sub)
            if files:
                return DataSource(sub, files, how)
            looked.append(str(sub))
        if how in ("--data-dir", "FMLAB_DATA"):
            raise DataError(
                f"no Fashion-MNIST files in {directory} ({how}); expected "
                f"{', '.join(FILES.values())} (plain or .gz)"
            )
    if download:
        cache = default_cache_dir()
        error = _download(cache)
        files = _files_in(cache / "FashionMNIST" / "raw")
        if files:
            return DataSource(cache / "FashionMNIST" / "raw", files, "downloaded")
        looked.append(f"download into {cache} ({error})")
    raise DataError(
        "Fashion-MNIST not found; looked in "
        + "; ".join(looked)
        + ". Install it with `apt-get install dataset-fashion-mnist` or pass --data-dir DIR"
    )


def _download(cache: Path) -> str:
    """Let torchvision fetch the set; returns why it failed, or ''."""
    try:
        from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

        TorchvisionFashionMNIST(str(cache), train=True, download=True)
        TorchvisionFashionMNIST(str(cache), train=False, download=True)
    except Exception as exc:  # network down, no torchvision, disk full: all just "no"
        return f"failed: {first_line(exc, 120)}"
    return ""


def _read_exactly(handle: BinaryIO, count: int) -> bytes:
    chunks, left = [], count
    while left > 0:
        chunk = handle.read(min(left, 2**24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_idx(path: Path, expected_magic: int) -> tuple[tuple[int, ...], bytes]:
    """The dimensions and raw uint8 payload of one IDX file, checked: every
    problem, gzip's included, is a DataError of one line naming the file."""
    where = visible(path)
    try:
        with open_regular_file(path) as plain:
            handle = gzip.GzipFile(fileobj=plain, mode="rb") if path.suffix == ".gz" else plain
            with handle:
                dims, size = _read_header(handle, where, expected_magic)
                payload = _read_exactly(handle, size)
                extra = handle.read(1)
    except DataError:
        raise
    except NotRegularFile as exc:
        raise DataError(f"{where}: {exc}") from None
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        reason = getattr(exc, "strerror", None) or exc or type(exc).__name__
        raise DataError(f"{where}: cannot read ({visible(reason)})") from None
    if len(payload) != size or extra:
        raise DataError(
            f"{where}: truncated or padded: {len(payload) + len(extra):,}{'+' if extra else ''} data bytes "
            f"where the header promises {size:,}"
        )
    if dims[0] == 0:
        raise DataError(f"{where}: holds no items (the header says 0)")
    return dims, payload


def _read_header(handle: BinaryIO, where: str, expected_magic: int) -> tuple[tuple[int, ...], int]:
    start = handle.read(4)
    if len(start) < 4:
        raise DataError(f"{where}: truncated ({len(start)} bytes, no IDX header)")
    (magic,) = struct.unpack(">I", start)
    if magic != expected_magic:
        raise DataError(f"{where}: wrong IDX magic 0x{magic:08x} (expected 0x{expected_magic:08x})")
    ndim = magic & 0xFF
    raw_dims = handle.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{where}: truncated header")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    size = 1
    for dim in dims:
        size *= dim
    if size > MAX_IDX_PAYLOAD:
        raise DataError(f"{where}: the header promises {size:,} bytes, more than an IDX file here may hold")
    return dims, size


def _images(path: Path) -> torch.Tensor:
    import torch

    dims, payload = read_idx(path, IMAGE_MAGIC)
    if len(dims) != 3 or dims[1:] != (28, 28):
        raise DataError(f"{visible(path)}: images are {dims}, expected (N, 28, 28)")
    pixels = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    return pixels.view(dims[0], 28 * 28)


def _labels(path: Path) -> torch.Tensor:
    import torch

    dims, payload = read_idx(path, LABEL_MAGIC)
    labels = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    if labels.numel() and int(labels.max()) >= len(CLASS_NAMES):
        raise DataError(f"{visible(path)}: label {int(labels.max())} is out of range 0-9")
    return labels.view(dims[0]).long()


def load(source: DataSource, device: str | torch.device = "cpu", limit: int | None = None) -> FashionMNIST:
    """Read all four files onto ``device``; ``limit`` keeps the first N of each split."""
    parts = {}
    for split in ("train", "test"):
        images = _images(source.files[f"{split}_images"])
        labels = _labels(source.files[f"{split}_labels"])
        if len(images) != len(labels):
            raise DataError(
                f"{visible(source.files[f'{split}_labels'])}: {len(labels):,} labels for {len(images):,} images"
            )
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        # scale on the device: the uint8 copy is a quarter of the float one
        parts[split] = (images.to(device).float().div_(255.0), labels.to(device))
    return FashionMNIST(*parts["train"], *parts["test"], source=source)
