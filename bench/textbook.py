"""The textbook training loop fmlab is measured against.

torchvision's FashionMNIST with ToTensor, a DataLoader(batch_size=64), the
same network (an MLP, or a layer stack in plain NCHW with out-of-place ReLUs)
and SGD, autograd and ``optimizer.step()``; each epoch trains on the
train split and then measures test accuracy through a DataLoader, as the
reference study does.
"""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from fmlab.trainer.config import ModelSpec
from fmlab.trainer.data import DataSource
from fmlab.trainer.models import build_model, build_stack


def torchvision_root(source: DataSource, workdir: Path) -> Path:
    """A root torchvision accepts: it wants plain files in <root>/FashionMNIST/raw."""
    raw = workdir / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for path in source.files.values():
        target = raw / path.name.removesuffix(".gz")
        if not target.exists():
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return workdir


def textbook_epochs(root: Path, spec: ModelSpec, lr: float, epochs: int, seed: int = 0):
    """Yield (seconds, test accuracy %) per epoch of the textbook loop."""
    to_tensor = transforms.ToTensor()
    train = datasets.FashionMNIST(str(root), train=True, transform=to_tensor)
    test = datasets.FashionMNIST(str(root), train=False, transform=to_tensor)
    train_loader = DataLoader(train, batch_size=64)
    test_loader = DataLoader(test, batch_size=64)
    model = build_stack(spec.layers, seed, in_place=False) if spec.layers else build_model(spec, seed)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
        correct = 0
        model.eval()
        with torch.no_grad():
            for images, labels in test_loader:
                correct += (model(images).argmax(1) == labels).sum().item()
        yield time.perf_counter() - start, 100.0 * correct / len(test)
