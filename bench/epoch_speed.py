"""Epochs of the base model: fmlab's engine against the textbook loop.

    python -m bench.epoch_speed [--epochs 3] [--arch base] [--data-dir DIR]

Both run in this one process on the real data, with the same seed and
learning rate, their epochs interleaved (fmlab, textbook, fmlab, ...) so both
meet the same machine: this machine's speed drifts by tens of percent over
minutes. Each epoch is training plus a test-set evaluation on both sides. The
figure that matters is the ratio of the median epoch times.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.textbook import textbook_epochs, torchvision_root
from fmlab.trainer import data
from fmlab.trainer.events import EpochMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.training.loop import Member, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--arch", default="base")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--skip-textbook", action="store_true")
    args = parser.parse_args()

    source = data.locate(args.data_dir)
    config = parse_run_config(arch=args.arch, lr=args.lr, epochs=args.epochs, device="cpu")
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"config: {config.describe()}")

    load_start = time.perf_counter()
    dataset = data.load(source)
    print(f"fmlab load: {time.perf_counter() - load_start:.2f} s")
    fmlab = (e for _, e in train([Member(config)], dataset) if isinstance(e, EpochMetrics))
    if args.skip_textbook:
        for e in fmlab:
            print(f"fmlab    epoch {e.epoch}: {e.seconds:6.2f} s  test acc {e.test_acc:.2f}%")
        return
    fm_times, tb_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(source, Path(tmp))
        textbook = textbook_epochs(root, config.model, args.lr, args.epochs, config.seed)
        for epoch, (fm, (tb_seconds, tb_acc)) in enumerate(zip(fmlab, textbook), 1):
            fm_times.append(fm.seconds)
            tb_times.append(tb_seconds)
            print(f"epoch {epoch}: fmlab {fm.seconds:6.2f} s (test acc {fm.test_acc:.2f}%)   "
                  f"textbook {tb_seconds:6.2f} s (test acc {tb_acc:.2f}%)", flush=True)  # fmt: skip
    fm_median, tb_median = statistics.median(fm_times), statistics.median(tb_times)
    print(f"best epochs: fmlab {min(fm_times):.2f} s, textbook {min(tb_times):.2f} s, "
          f"ratio {min(fm_times) / min(tb_times):.3f}")  # fmt: skip
    print(
        f"fmlab epoch / textbook epoch (medians) = {fm_median:.2f} / {tb_median:.2f} = {fm_median / tb_median:.3f}"
    )


if __name__ == "__main__":
    main()
