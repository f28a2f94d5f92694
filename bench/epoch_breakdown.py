"""Where an epoch's time goes: the textbook loop, then one change at a time.

    python -m bench.epoch_breakdown [--arch base] [--threads 2] [--rounds 3] [--skip-textbook]

Variants, all one epoch of SGD at batch 64 on the real training set, timed in
this one process (training only, no evaluation):
  textbook   DataLoader over torchvision's dataset, autograd, optim.SGD
  in-memory  the same, but batches are slices of tensors held in memory
  by-hand    in-memory + the hand-written backward writing every gradient, then
             the SGD update (fmlab's explicit-gradient stepper)
  fmlab      fmlab's plain-SGD stepper (the update folded into the backward),
             stepping in C++ where that is built (fmlab.trainer.training.native);
             against the floors it is timed with its Python step too
It also prints the arithmetic limit: 6 x parameters FLOP per sample (forward
2, backward 4) at the matmul rate this machine reaches on a large product.

Then the floor that means something on any CPU (bench.floor): the step's own
matrix products alone, at their real shapes and batch, as fmlab lays out
their operands and in the fastest layouts; fmlab's epoch and both floors are
timed in turn for ``--rounds`` rounds, and the medians compared. The
percentages are floor / fmlab: 100% would be a step with nothing but its
products.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from bench.floor import floor_seconds, flops_per_step, products
from bench.textbook import torchvision_root
from fmlab.trainer import data
from fmlab.trainer.device import cpu_model
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.models import build_mlp
from fmlab.trainer.training import native
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
    parser.add_argument("--rounds", type=int, default=3, help="rounds of fmlab's epoch against the floors")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = parse_run_config(arch=args.arch, lr=0.1, device="cpu")
    source = data.locate()
    ds = data.load(source)
    x, y = ds.train_x, ds.train_y
    onehot_t = F.one_hot(y, 10).float().t()
    slices = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    print(f"{cpu_model()}: {cpu_flags()}; torch {torch.__version__}")
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
        # batches cut as the loop cuts them, and the epoch's sums taken as it takes them
        for xb, yb, onehot_b in zip(x.split(BATCH), y.split(BATCH), onehot_t.split(BATCH, 1)):
            stepper.step(xb, yb, onehot_b, want_stats=False)
        stepper.take_epoch_sums()

    def by_hand() -> None:
        epoch(MomentumOrAdam([config], torch.device("cpu")))  # momentum 0: SGD on written gradients

    def fmlab(python_step: bool = False) -> None:
        stepper = make_stepper([config], torch.device("cpu"))
        if python_step:
            stepper.native = None
        epoch(stepper)

    results["by-hand"] = timed("by-hand", by_hand)
    results["fmlab"] = timed("fmlab", fmlab)
    rate = matmul_gflops()
    limit = 6 * config.model.num_params * len(x) / (rate * 1e9)
    print(f"matmul rate {rate:.0f} GFLOP/s -> arithmetic limit {limit:.2f} s per epoch")
    base = results.get("textbook", results["in-memory"])
    for name, seconds in results.items():
        print(f"{name:<10} {seconds / base:6.3f} x {'textbook' if 'textbook' in results else 'in-memory'}"
              f"   {limit / seconds:5.1%} of the arithmetic limit")  # fmt: skip
    if native.module() is None:
        sides = {"Python step": fmlab}
    else:  # fmlab's own choice, and the step it takes where nothing is built
        sides = {"C++ step": fmlab, "Python step": lambda: fmlab(python_step=True)}
    against_floor(config, len(x), args.rounds, sides)


def cpu_flags() -> str:
    """The vector extensions this CPU reports (Linux), for the record."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return "flags unknown"
    wanted = [f for f in flags if f.startswith(("avx", "amx", "fma"))]
    return " ".join(sorted(wanted)) or "no AVX"


def against_floor(config, samples: int, rounds: int, epochs: dict) -> None:
    """fmlab's epochs (by name) against the step's own products, in turn, ``rounds`` times."""
    sizes = config.model.sizes
    steps = math.ceil(samples / BATCH)
    sample_steps = min(steps, 300)  # the floors are timed on part of an epoch, then scaled
    layouts = {"fmlab's layouts": products(sizes, BATCH, best=False),
               "best layouts": products(sizes, BATCH, best=True)}  # fmt: skip
    times: dict[str, list[float]] = {**{name: [] for name in epochs}, **{name: [] for name in layouts}}
    for _ in range(rounds):
        for name, run in epochs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
        for name, step_products in layouts.items():
            times[name].append(floor_seconds(step_products, sample_steps) * steps / sample_steps)
    median = {name: statistics.median(values) for name, values in times.items()}
    rate = flops_per_step(sizes, BATCH) * steps / median["best layouts"] / 1e9
    print(f"\nagainst the step's own products ({rounds} rounds, medians; per epoch of {steps} steps):")
    for name in epochs:
        print(f"fmlab, {name:<16} {median[name]:5.2f} s   ({' '.join(f'{v:.2f}' for v in times[name])})")
    for name in layouts:
        at = "   ".join(f"{epoch} at {median[name] / median[epoch]:5.1%}" for epoch in epochs)
        print(f"floor, {name:<16} {median[name]:5.2f} s   {at} of it")
    print(f"(the products in the best layouts run at {rate:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
