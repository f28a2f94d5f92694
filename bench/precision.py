"""bf16 against fp32: epoch times, and accuracy after 10 epochs.

    python -m bench.precision [--archs base,deeper] [--rounds 2] [--accuracy-epochs 10]

Speed: one epoch of each network (training and the test set's evaluation,
through fmlab's loop) in fp32 and in bf16, in turn, ``--rounds`` times; the
median of each side and bf16 / fp32. Accuracy: base at lr 0.1, 0.01 and 0.001
(one stack per precision) for ``--accuracy-epochs`` epochs; the final test
accuracy of each, and bf16 minus fp32 in points. Set the epochs to 0 to skip.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from fmlab.trainer import data
from fmlab.trainer.device import cpu_model
from fmlab.trainer.events import EpochMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.training.loop import Member, train

PRECISIONS = ("fp32", "bf16")
LRS = (0.1, 0.01, 0.001)


def epoch_seconds(dataset, arch: str, precision: str) -> float:
    config = parse_run_config(arch=arch, lr=0.01, epochs=1, device="cpu", precision=precision)
    return next(e.seconds for _, e in train([Member(config)], dataset) if isinstance(e, EpochMetrics))


def final_accuracies(dataset, precision: str, epochs: int) -> list[float]:
    members = [
        Member(parse_run_config(lr=lr, epochs=epochs, device="cpu", precision=precision)) for lr in LRS
    ]
    finals = [0.0] * len(LRS)
    for position, event in train(members, dataset):
        if isinstance(event, EpochMetrics):
            finals[position] = event.test_acc
    return finals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="base,deeper")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--accuracy-epochs", type=int, default=10)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    print(f"machine: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"oneDNN bf16: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")  # fmt: skip
    dataset = data.load(data.locate(args.data_dir))
    for arch in args.archs.split(","):
        times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        for round_number in range(args.rounds):
            order = PRECISIONS if round_number % 2 == 0 else PRECISIONS[::-1]
            for precision in order:
                times[precision].append(epoch_seconds(dataset, arch, precision))
        median = {p: statistics.median(t) for p, t in times.items()}
        rounds = "  ".join(f"{p} " + " ".join(f"{s:.2f}" for s in times[p]) for p in PRECISIONS)
        print(f"{arch:<8} epoch fp32 {median['fp32']:6.2f} s  bf16 {median['bf16']:6.2f} s  "
              f"bf16 / fp32 {median['bf16'] / median['fp32']:.3f}   ({rounds})", flush=True)  # fmt: skip
    if args.accuracy_epochs:
        finals = {p: final_accuracies(dataset, p, args.accuracy_epochs) for p in PRECISIONS}
        print(f"\nbase, test accuracy after {args.accuracy_epochs} epochs:")
        for index, lr in enumerate(LRS):
            fp32, bf16 = finals["fp32"][index], finals["bf16"][index]
            print(f"lr {lr:<6g} fp32 {fp32:6.2f} %  bf16 {bf16:6.2f} %  difference {bf16 - fp32:+.2f} points")


if __name__ == "__main__":
    main()
