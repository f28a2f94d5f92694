"""Where a small MLP step's time beyond its matrix products goes.

    python -m bench.step_overhead [--arch base] [--rounds 7] [--steps 300] [--against FILE]

One member, fp32, plain SGD at batch 64, no gradient statistics (the step
fmlab takes on all but the metric steps), timed in turn for ``--rounds``
rounds (in a shuffled order each round, so no side always meets the machine
first) on random data of the real shapes; each round makes its stepper before
its timer starts and ends by taking the slice's loss and accuracy sums (a step
leaves them to be summed in bulk):
  floor        the step's own products alone (bench.floor, fmlab's layouts)
  C++ step     fmlab's stepper stepping in C++ (fmlab.trainer.training.native:
               the Python step's ATen calls, made from one C++ call, with
               every view and the hidden outputs made once per batch size);
               left out where it is not built
  Python step  fmlab's stepper stepping in Python
  compiled     ``torch.compile`` of the Python step (the compile is done, and
               reported, before timing)
  FILE         with ``--against FILE``: the stepper of another version of
               ``steppers.py`` (``git show REV:trainer/training/steppers.py
               > FILE``), so two versions meet the machine in one process
The C++ and the Python step give the same numbers bit for bit
(tests/test_native_step.py); the gap between them is what calling ATen from
Python, making views and allocating the hidden outputs cost, and what is left
above the floor is spent inside the ATen calls themselves.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.epoch_breakdown import cpu_flags
from bench.floor import floor_seconds, products
from fmlab.trainer.device import cpu_model
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.training import native
from fmlab.trainer.training.steppers import make_stepper

BATCH = 64


def other_version_side(path: Path, config, epoch):
    """A side training with the stepper of another version's steppers.py."""
    spec = importlib.util.spec_from_file_location("other_steppers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)

    def made():
        stepper = module.make_stepper([config], torch.device("cpu"))
        return lambda: epoch(stepper.step, stepper.take_epoch_sums)

    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="base")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300, help="steps per timed epoch slice")
    parser.add_argument("--against", type=Path, help="another version's steppers.py, timed as a side too")
    args = parser.parse_args()
    config = parse_run_config(arch=args.arch, lr=0.1, device="cpu")
    cpu = torch.device("cpu")
    print(f"{cpu_model()}: {cpu_flags()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    x = torch.rand(args.steps * BATCH, 784)
    y = torch.randint(0, 10, (len(x),))
    batches = list(zip(x.split(BATCH), y.split(BATCH), F.one_hot(y, 10).float().t().split(BATCH, 1)))

    def epoch(step, take_sums) -> None:
        for xb, yb, onehot_b in batches:
            step(xb, yb, onehot_b, False)
        take_sums()

    def stepper_side(python_step: bool):
        def made():
            stepper = make_stepper([config], cpu)
            if python_step:
                stepper.native = None
            return lambda: epoch(stepper.step, stepper.take_epoch_sums)

        return made

    # each side is made (a new stepper) before its round's timer starts
    sides = {"Python step": stepper_side(python_step=True)}
    if native.module() is not None:
        sides["C++ step"] = stepper_side(python_step=False)
    else:
        print("C++ step: left out, not built (python -m fmlab.trainer.training.native)")
    if args.against:
        sides[args.against.name] = other_version_side(args.against, config, epoch)
    compiled_stepper = make_stepper([config], cpu)
    compiled_stepper.native = None  # what is compiled is the Python step
    started = time.perf_counter()
    compiled_step = torch.compile(compiled_stepper.step)
    compiled_step(*batches[0], False)
    print(f"compiled: {time.perf_counter() - started:.1f} s to compile")
    sides["compiled"] = lambda: lambda: epoch(compiled_step, compiled_stepper.take_epoch_sums)
    floor_products = products(config.model.sizes, BATCH, best=False)
    sides["floor"] = lambda: lambda: floor_seconds(floor_products, args.steps)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name in random.sample(list(sides), len(sides)):
            run = sides[name]()
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    floor = statistics.median(times["floor"])
    print(f"\n{config.model.name}, {args.steps} steps a round, medians of {args.rounds} rounds:")
    width = max(map(len, times))
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:<{width}} {median / args.steps * 1e6:7.0f} us a step   floor / this {floor / median:6.1%}"
        )


if __name__ == "__main__":
    main()
