"""Small Fashion-MNIST-shaped IDX files for tests, written the way the real
ones are (big-endian header, uint8 payload), optionally gzipped."""

from __future__ import annotations

import gzip
import random
import struct
from pathlib import Path

from fmlab.trainer.data import FILES, IMAGE_MAGIC, LABEL_MAGIC


def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload


def learnable_split(count: int, seed: int) -> tuple[bytes, bytes]:
    """Images whose class is written as a bright band at rows 2k..2k+2 plus
    noise: easy for an MLP, hard to get right by accident."""
    rng = random.Random(seed)
    labels = bytes(rng.randrange(10) for _ in range(count))
    images = bytearray()
    for label in labels:
        pixels = bytearray(rng.randrange(0, 60) for _ in range(784))
        for row in range(2 * label + 2, 2 * label + 5):
            for col in range(4, 24):
                pixels[row * 28 + col] = rng.randrange(180, 256)
        images += pixels
    return bytes(images), labels


def write_dataset(directory: Path, train: int = 512, test: int = 128, gz: bool = True, seed: int = 0) -> Path:
    """Write the four IDX files into ``directory`` and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    splits = {"train": learnable_split(train, seed), "test": learnable_split(test, seed + 1)}
    for split, (images, labels) in splits.items():
        n = len(labels)
        contents = {
            f"{split}_images": idx_bytes(IMAGE_MAGIC, (n, 28, 28), images),
            f"{split}_labels": idx_bytes(LABEL_MAGIC, (n,), labels),
        }
        for key, raw in contents.items():
            name = FILES[key]
            if gz:
                (directory / f"{name}.gz").write_bytes(gzip.compress(raw, mtime=0))
            else:
                (directory / name).write_bytes(raw)
    return directory
