"""A 4-learning-rate sweep: stacked (the four runs as one stack) against the
same four runs one after another, each alone (a stack of one).

    python -m bench.sweep_speed [--epochs 10] [--arch base] [--lr 1,0.1,0.01,0.001]
                                [--threads N] [--device cpu|cuda] [--data-dir DIR]

Both sides run in this one process on the real data. They advance epoch by
epoch in turn (four lone epochs, then one stacked epoch of all four
members), so when other work shares the machine both sides meet it alike
rather than one side getting a quiet minute and the other a busy one. Each
generator is timed only while it runs; the per-epoch ratios show how steady
the figure was. The target is stacked / one by one <= 0.65. On CUDA both
sides use captured graphs unless FMLAB_CUDA_GRAPH=0.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from fmlab.trainer import data
from fmlab.trainer.events import EpochMetrics, RunFinished
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.training.loop import Member, train


def advance_single(stream, done: dict) -> float:
    """Run one lone run's stream up to its next epoch (or its end); the seconds it took."""
    start = time.perf_counter()
    for event in stream:
        if isinstance(event, RunFinished):
            done["finished"] = event.results
            break
        if isinstance(event, EpochMetrics):
            done["acc"] = event.test_acc
            break
    return time.perf_counter() - start


def advance_stack(stream, live: set[int], finals: dict) -> float:
    """Run the stack's stream until every live member has ended its epoch."""
    start = time.perf_counter()
    waiting = set(live)
    for index, event in stream:
        if isinstance(event, RunFinished):
            finals[index] = event.results
            live.discard(index)
            waiting.discard(index)
        elif isinstance(event, EpochMetrics):
            waiting.discard(index)
        if not waiting:
            break
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--arch", default="base")
    parser.add_argument("--lr", default="1,0.1,0.01,0.001")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    lrs = [float(v) for v in args.lr.split(",")]
    configs = [parse_run_config(arch=args.arch, lr=lr, epochs=args.epochs, device=args.device) for lr in lrs]
    dataset = data.load(data.locate(args.data_dir))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {_gpu(args.device)}"
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; load average {_load()}"
    )
    print(f"sweep: {args.arch}, lr {args.lr}, {args.epochs} epochs, batch 64, plain SGD")

    singles = [(event for _, event in train([Member(c)], dataset)) for c in configs]
    single_state: list[dict] = [{} for _ in configs]
    stack = train([Member(c) for c in configs], dataset)
    live, finals = set(range(len(configs))), {}
    seq_total = bat_total = 0.0
    ratios = []
    for epoch in range(1, args.epochs + 1):
        seq = sum(advance_single(s, st) for s, st in zip(singles, single_state) if "finished" not in st)
        bat = advance_stack(stack, live, finals) if live else 0.0
        seq_total, bat_total = seq_total + seq, bat_total + bat
        ratios.append(bat / seq)
        print(
            f"epoch {epoch:>3}: one by one {seq:7.2f} s  stacked {bat:7.2f} s  ratio {bat / seq:.3f}",
            flush=True,
        )
    # let every generator finish (RunFinished) outside the timed part
    for stream, state in zip(singles, single_state):
        for event in stream:
            if isinstance(event, RunFinished):
                state["finished"] = event.results
    for index, event in stack:
        if isinstance(event, RunFinished):
            finals[index] = event.results
    print("final test accuracy  one by one: " + "  ".join(_acc(s["finished"]) for s in single_state))
    print("final test accuracy  stacked:    " + "  ".join(_acc(finals[i]) for i in range(len(configs))))
    print(f"total: one by one {seq_total:.2f} s, stacked {bat_total:.2f} s")
    print(
        f"stacked / one by one = {bat_total:.2f} / {seq_total:.2f} = {bat_total / seq_total:.3f} "
        f"(median per epoch {statistics.median(ratios):.3f}); load average after {_load()}"
    )


def _acc(results) -> str:
    return results.status if results.final_test_acc is None else f"{results.final_test_acc:.2f}%"


def _gpu(device: str) -> str:
    return f"GPU {torch.cuda.get_device_name(0)}, " if device == "cuda" else ""


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
