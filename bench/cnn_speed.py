"""A layer-stack network (default: the cnn preset): fmlab's epoch against the
textbook loop, or (--stacking) a learning-rate sweep of it trained one model
after another against one vmapped stack.

    python -m bench.cnn_speed [--arch cnn] [--rounds 3] [--epochs-per-round 1]
                              [--lr 0.1] [--threads 2] [--data-dir DIR]
    python -m bench.cnn_speed --stacking [--arch cnn] [--lrs 0.1,0.05,0.02,0.01]
                              [--steps 300] [--rounds 3] [--threads 2]

Epochs: fmlab's engine (train() on one member, its EpochMetrics seconds:
training plus the test-set evaluation) against the textbook loop (torchvision
dataset + ToTensor + DataLoader(batch_size=64), the same network in plain
NCHW, autograd, optim.SGD, then test accuracy through a DataLoader). Both
train on, round after round, in this one process; rounds alternate textbook,
fmlab, textbook, ... because this machine's speed drifts by tens of percent
over minutes. The figure is fmlab / textbook of the median epoch seconds.

Stacking: K members of the same network, one per learning rate, each for
--steps batches of 64 from the real training images held in memory:
  one by one  each member alone after the other, autograd + optim.SGD
              (channels-last for a network with convolutions, as fmlab does)
  vmapped     one stack: torch.func.stack_module_state over the K copies,
              functional_call under vmap, grad_and_value for the gradients,
              p -= lr_k * g per member
Each round times one side then the other from fresh weights. The figures are
milliseconds per step per member and vmapped / one by one of the medians; the
losses of the first steps must agree (their max abs difference is printed).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from bench.textbook import textbook_epochs, torchvision_root
from fmlab.trainer import data
from fmlab.trainer.config import ModelSpec, RunConfig
from fmlab.trainer.events import EpochMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.models import build_model
from fmlab.trainer.training.loop import Member, train

BATCH = 64

# ---------------------------------------------------------------- epochs


def fmlab_epochs(config: RunConfig, dataset: data.FashionMNIST) -> Iterator[tuple[float, float]]:
    """(seconds, test accuracy %) per epoch of fmlab's engine."""
    for _, event in train([Member(config)], dataset):
        if isinstance(event, EpochMetrics):
            yield event.seconds, event.test_acc


def take(epochs: Iterator[tuple[float, float]], count: int) -> tuple[float, float]:
    """The next ``count`` epochs: mean seconds per epoch, last test accuracy."""
    taken = [next(epochs) for _ in range(count)]
    return statistics.mean(s for s, _ in taken), taken[-1][1]


def compare_epochs(args: argparse.Namespace, source: data.DataSource) -> None:
    total = args.rounds * args.epochs_per_round
    config = parse_run_config(arch=args.arch, lr=args.lr, epochs=total, device="cpu")
    print(f"config: {config.describe()}")
    dataset = data.load(source)
    fmlab = fmlab_epochs(config, dataset)
    textbook_times, fmlab_times = [], []
    print(
        f"{'round':>5}  {'textbook s/epoch':>16} {'test acc':>9}  {'fmlab s/epoch':>13} {'test acc':>9}  {'ratio':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(source, Path(tmp))
        textbook = textbook_epochs(root, config.model, args.lr, total, config.seed)
        for round_ in range(1, args.rounds + 1):
            textbook_seconds, textbook_acc = take(textbook, args.epochs_per_round)
            fmlab_seconds, fmlab_acc = take(fmlab, args.epochs_per_round)
            textbook_times.append(textbook_seconds)
            fmlab_times.append(fmlab_seconds)
            print(f"{round_:>5}  {textbook_seconds:16.2f} {textbook_acc:8.2f}%  {fmlab_seconds:13.2f} "
                  f"{fmlab_acc:8.2f}%  {fmlab_seconds / textbook_seconds:6.3f}", flush=True)  # fmt: skip
    textbook_median, fmlab_median = statistics.median(textbook_times), statistics.median(fmlab_times)
    print(f"median epoch: textbook {textbook_median:.2f} s, fmlab {fmlab_median:.2f} s")
    print(f"fmlab / textbook (medians) = {fmlab_median:.2f} / {textbook_median:.2f} = "
          f"{fmlab_median / textbook_median:.3f}; load average after {load_average()}")  # fmt: skip


# -------------------------------------------------------------- stacking


def training_batches(dataset: data.FashionMNIST, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` batches of 64 in order, from the start again past the last full one."""
    images = dataset.train_x.view(-1, 1, 28, 28)
    full = len(images) // BATCH
    starts = [(step % full) * BATCH for step in range(steps)]
    return [(images[s : s + BATCH], dataset.train_y[s : s + BATCH]) for s in starts]


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def train_one_by_one(spec: ModelSpec, seed: int, lrs: list[float], batches, check_steps: int):
    """Seconds spent training, and the losses [check_steps, K] of the first steps."""
    losses = torch.zeros(check_steps, len(lrs))
    seconds = 0.0
    for member, lr in enumerate(lrs):
        model = build_model(spec, seed)
        if has_conv(model):
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        start = time.perf_counter()
        for step, (x, y) in enumerate(batches):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            if step < check_steps:
                losses[step, member] = loss.detach()
        seconds += time.perf_counter() - start
    return seconds, losses


def train_vmapped(spec: ModelSpec, seed: int, lrs: list[float], batches, check_steps: int):
    """Seconds spent training the K members as one vmapped stack, and the
    losses [check_steps, K] of the first steps."""
    members = [build_model(spec, seed) for _ in lrs]
    params, buffers = stack_module_state(members)
    # the update is in place, outside autograd: plain tensors, not leaves
    params = {name: p.detach() for name, p in params.items()}
    skeleton = copy.deepcopy(members[0]).to("meta")

    def member_loss(member_params, member_buffers, x, y):
        return F.cross_entropy(functional_call(skeleton, (member_params, member_buffers), (x,)), y)

    grads_and_losses = vmap(grad_and_value(member_loss), in_dims=(0, 0, None, None), randomness="different")
    rates = torch.tensor(lrs)
    rate_of = {name: rates.view(-1, *[1] * (p.dim() - 1)) for name, p in params.items()}
    losses = torch.zeros(check_steps, len(lrs))
    start = time.perf_counter()
    for step, (x, y) in enumerate(batches):
        grads, loss = grads_and_losses(params, buffers, x, y)
        for name, p in params.items():
            p.addcmul_(rate_of[name], grads[name], value=-1.0)
        if step < check_steps:
            losses[step] = loss
    return time.perf_counter() - start, losses


def compare_stacking(args: argparse.Namespace, source: data.DataSource) -> None:
    lrs = [float(v) for v in args.lrs.split(",")]
    config = parse_run_config(arch=args.arch, lr=lrs[0], device="cpu")
    spec, seed = config.model, config.seed
    batches = training_batches(data.load(source), args.steps)
    check_steps = min(args.check_steps, args.steps)
    members_steps = len(lrs) * args.steps
    print(f"sweep: {spec.name}, {spec.num_params:,} parameters, lr {args.lrs}, {args.steps} steps of batch {BATCH}, "
          f"seed {seed}, plain SGD")  # fmt: skip
    print(f"{'round':>5}  {'one by one ms/step/member':>25}  {'vmapped ms/step/member':>22}  {'ratio':>6}")
    one_by_one_times, vmapped_times, loss_gaps = [], [], []
    for round_ in range(1, args.rounds + 1):
        one_seconds, one_losses = train_one_by_one(spec, seed, lrs, batches, check_steps)
        vmapped_seconds, vmapped_losses = train_vmapped(spec, seed, lrs, batches, check_steps)
        one_ms, vmapped_ms = 1e3 * one_seconds / members_steps, 1e3 * vmapped_seconds / members_steps
        one_by_one_times.append(one_ms)
        vmapped_times.append(vmapped_ms)
        loss_gaps.append((one_losses - vmapped_losses).abs().max().item())
        print(f"{round_:>5}  {one_ms:25.2f}  {vmapped_ms:22.2f}  {vmapped_ms / one_ms:6.3f}", flush=True)
    print(
        f"losses, one by one: step 1 {format_losses(one_losses[0])}, step {check_steps} {format_losses(one_losses[-1])}"
    )
    print(f"max |one by one - vmapped| over those losses: {max(loss_gaps):.2e}")
    one_median, vmapped_median = statistics.median(one_by_one_times), statistics.median(vmapped_times)
    print(f"vmapped / one by one (medians, ms per step per member) = {vmapped_median:.2f} / {one_median:.2f} = "
          f"{vmapped_median / one_median:.3f}; load average after {load_average()}")  # fmt: skip


# ------------------------------------------------------------------ main


def format_losses(losses: torch.Tensor) -> str:
    return " ".join(f"{v:.4f}" for v in losses.tolist())


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs-per-round", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--stacking", action="store_true", help="one by one against a vmapped stack")
    parser.add_argument("--lrs", default="0.1,0.05,0.02,0.01", help="the sweep's learning rates (--stacking)")
    parser.add_argument("--steps", type=int, default=300, help="steps per member and round (--stacking)")
    parser.add_argument("--check-steps", type=int, default=5, help="first steps whose losses must agree")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; load average {load_average()}")  # fmt: skip
    source = data.locate(args.data_dir)
    if args.stacking:
        compare_stacking(args, source)
    else:
        compare_epochs(args, source)


if __name__ == "__main__":
    main()
