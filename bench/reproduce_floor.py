"""How long the full reproduction's matrix products alone take on this CPU.

    python -m bench.reproduce_floor [--steps 300] [--target-minutes 45]

Counts the products of every run ``fmlab reproduce`` trains (its own plan:
each study's runs, epochs, batch size and network), the training steps' and
each epoch's test evaluation's, and times them two ways:
  large products  all of those FLOPs at the rate this CPU reaches on one
                  large product (2048 x 2048 x 2048): a bound no step at
                  batch 64 reaches
  step floor      each network's step products alone, at their real shapes
                  and in fmlab's layouts (bench.floor), timed for ``--steps``
                  steps and scaled to the runs' steps, plus the evaluation at
                  the large-product rate
Neither counts anything but the products, so the reproduction cannot finish
faster than either figure on this machine: when the step floor is over the
target, no step, however lean, meets the target here in fp32.
"""

from __future__ import annotations

import argparse
import functools
from collections import Counter

import torch

from bench.epoch_breakdown import cpu_flags, matmul_gflops
from bench.floor import floor_seconds, flops_per_step, products
from fmlab.trainer.device import cpu_model
from fmlab.trainer.studies.reproduce import plan_studies

TRAIN_SAMPLES, TEST_SAMPLES = 60_000, 10_000


def run_epochs() -> Counter:
    """Epochs per (network sizes, batch, training samples) over every run of the plan."""
    counts: Counter = Counter()
    for study in plan_studies():
        samples = study.train_limit or TRAIN_SAMPLES
        for config in study.configs:
            counts[tuple(config.model.sizes), config.batch_size, samples] += config.epochs
    return counts


@functools.cache  # once per network and batch, whatever the training set's size
def step_floor(sizes: tuple[int, ...], batch: int, steps: int) -> float:
    """Seconds a step's products take alone, in fmlab's layouts."""
    return floor_seconds(products(sizes, batch, best=False), steps) / steps


def eval_flops(sizes: tuple[int, ...]) -> int:
    return 2 * TEST_SAMPLES * sum(a * b for a, b in zip(sizes, sizes[1:]))


def row(name: str, epochs: object, flops: float, bound: float, floor: float) -> str:
    return f"{name:<28} {epochs!s:>6} {flops / 1e12:>7.1f} {bound / 60:>11.1f} min {floor / 60:>11.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="steps of each network's products to time")
    parser.add_argument("--target-minutes", type=float, default=45.0)
    args = parser.parse_args()
    print(f"{cpu_model()}: {cpu_flags()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    rate = matmul_gflops() * 1e9
    print(f"a large product: {rate / 1e9:.0f} GFLOP/s")
    print(f"{'network':<28} {'epochs':>6} {'TFLOP':>7} {'at large rate':>14} {'at step floor':>14}")
    totals = [0.0, 0.0, 0.0]  # FLOPs, seconds at the large-product rate, seconds at the step floor
    for (sizes, batch, samples), epochs in sorted(run_epochs().items()):
        flops = flops_per_step(sizes, batch) * samples / batch * epochs + eval_flops(sizes) * epochs
        floor = (
            step_floor(sizes, batch, args.steps) * -(-samples // batch) * epochs
            + eval_flops(sizes) * epochs / rate
        )
        name = ",".join(map(str, sizes[1:-1])) + ("" if samples == TRAIN_SAMPLES else f" ({samples} images)")
        print(row(name, epochs, flops, flops / rate, floor))
        totals = [total + value for total, value in zip(totals, (flops, flops / rate, floor))]
    print(row("all", "", *totals))
    verdict = "over" if totals[2] > args.target_minutes * 60 else "within"
    print(f"the step floor is {verdict} the {args.target_minutes:g}-minute target on this machine")


if __name__ == "__main__":
    main()
