"""One epoch of the base model: fmlab's engine against the textbook loop.

    python bench/epoch_speed.py [--epochs 1] [--arch base] [--data-dir DIR]

Both run in this one process, one after the other, on the real data, with the
same seed and learning rate; the figure that matters is the ratio.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from bench.textbook import textbook_epochs, torchvision_root
from trainer import data, engine
from trainer.config import parse_run_config
from trainer.events import EpochMetrics


def fmlab_epochs(dataset, config):
    return [e for e in engine.run(config, dataset) if isinstance(e, EpochMetrics)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
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
    fm = fmlab_epochs(dataset, config)
    for e in fm:
        print(f"fmlab    epoch {e.epoch}: {e.seconds:6.2f} s  test acc {e.test_acc:.2f}%")
    if args.skip_textbook:
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(source, Path(tmp))
        tb = list(textbook_epochs(root, config.model, args.lr, args.epochs, config.seed))
    for i, (seconds, acc) in enumerate(tb, 1):
        print(f"textbook epoch {i}: {seconds:6.2f} s  test acc {acc:.2f}%")
    fm_mean = sum(e.seconds for e in fm) / len(fm)
    tb_mean = sum(s for s, _ in tb) / len(tb)
    print(f"fmlab epoch / textbook epoch = {fm_mean:.2f} / {tb_mean:.2f} = {fm_mean / tb_mean:.3f}")


if __name__ == "__main__":
    main()
