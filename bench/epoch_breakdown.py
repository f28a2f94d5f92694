"""Where an epoch's time goes: the textbook loop, then one change at a time.

    python -m bench.epoch_breakdown [--arch base] [--threads 2]

Variants, all one epoch of SGD at batch 64 on the real training set, timed in
this one process (training only, no evaluation):
  textbook   DataLoader over torchvision's dataset, autograd, optim.SGD
  in-memory  the same, but batches are slices of tensors held in memory
  by-hand    in-memory + the hand-written backward writing every gradient, then
             the SGD update (fmlab's explicit-gradient stepper)
  fmlab      fmlab's plain-SGD stepper (the update folded into the backward)
It also prints the arithmetic limit: 6 x parameters FLOP per sample (forward
2, backward 4) at the matmul rate this machine reaches on a large product.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from bench.textbook import torchvision_root
from fmlab.trainer import data
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.models import build_mlp
from fmlab.trainer.training.steppers import MomentumOrAdam, make_stepper

BATCH = 64


def timed(label: str, fn) -> float:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"{label:<10} {seconds:7.2f} s", flush=True)
    return seconds


def matmul_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def autograd_epoch(model, batches) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in batches:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="base")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-textbook", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = parse_run_config(arch=args.arch, lr=0.1, device="cpu")
    source = data.locate()
    ds = data.load(source)
    x, y = ds.train_x, ds.train_y
    onehot_t = F.one_hot(y, 10).float().t()
    slices = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    print(f"{config.model.name}: {config.model.num_params:,} parameters, {args.threads} threads")
    results = {}
    if not args.skip_textbook:
        with tempfile.TemporaryDirectory() as tmp:
            root = torchvision_root(source, Path(tmp))
            train = datasets.FashionMNIST(str(root), train=True, transform=transforms.ToTensor())
            loader = DataLoader(train, batch_size=BATCH)
            results["textbook"] = timed(
                "textbook", lambda: autograd_epoch(build_mlp(config.model, 0), loader)
            )
    results["in-memory"] = timed("in-memory", lambda: autograd_epoch(build_mlp(config.model, 0), slices))

    def epoch(stepper) -> None:
        for i in range(0, len(x), BATCH):
            stepper.step(x[i : i + BATCH], y[i : i + BATCH], onehot_t[:, i : i + BATCH], want_stats=False)

    def by_hand() -> None:
        epoch(MomentumOrAdam([config], torch.device("cpu")))  # momentum 0: SGD on written gradients

    def fmlab() -> None:
        epoch(make_stepper([config], torch.device("cpu")))

    results["by-hand"] = timed("by-hand", by_hand)
    results["fmlab"] = timed("fmlab", fmlab)
    rate = matmul_gflops()
    limit = 6 * config.model.num_params * len(x) / (rate * 1e9)
    print(f"matmul rate {rate:.0f} GFLOP/s -> arithmetic limit {limit:.2f} s per epoch")
    base = results.get("textbook", results["in-memory"])
    for name, seconds in results.items():
        print(f"{name:<10} {seconds / base:6.3f} x {'textbook' if 'textbook' in results else 'in-memory'}"
              f"   {limit / seconds:5.1%} of the arithmetic limit")  # fmt: skip


if __name__ == "__main__":
    main()
