"""Base epochs on a busy machine: the thread governor against pinned threads.

    python -m bench.busy [--epochs 3] [--rounds 2] [--data-dir DIR]

Every case trains base (lr 0.1) for a few epochs through fmlab's loop in this
process, on the real data; the bench starts and stops the neighbours itself:
  idle            nothing else running
  busy            one normal-priority process spinning on one core
  nice            two other fmlab trainings under ``nice -n 19``
each with the governor (the default) and with the thread count pinned to the
cores (``--threads N``, what fmlab did before). Rounds repeat every case in
turn (odd rounds governed first, even rounds pinned first), so all cases
meet the same machine. Printed: each case's epoch times,
their median, and the ratios the targets are stated in (busy median against
idle median, the slowest epoch next to nice neighbours against the idle
median, governed idle against pinned idle).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import torch

from fmlab.trainer import data
from fmlab.trainer.device import cpu_model
from fmlab.trainer.events import EpochMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.training.loop import Member, train

SPIN = "while True: pass"
SETTLE = 1.0  # seconds for neighbours to get going before timing starts


@contextmanager
def neighbours(kind: str, data_dir: str | None):
    """Start the case's other processes; stop them afterwards."""
    commands: list[list[str]] = []
    if kind == "busy":
        commands = [[sys.executable, "-c", SPIN]]
    elif kind == "nice":
        train = [sys.executable, "-m", "bench.busy", "--neighbour"] + (
            ["--data-dir", data_dir] if data_dir else []
        )
        commands = [["nice", "-n", "19", *train] for _ in range(2)]
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in commands]
    try:
        if processes:
            time.sleep(SETTLE if kind == "busy" else SETTLE + 4)  # neighbours load the data first
        yield
    finally:
        for process in processes:
            process.kill()
            process.wait()


class Changes(logging.Handler):
    """Counts the governor's thread changes (its debug log)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


CHANGES = Changes()


def epochs(dataset, epochs: int, threads: int | None) -> list[float]:
    config = parse_run_config(arch="base", lr=0.1, epochs=epochs, device="cpu")
    return [
        e.seconds for _, e in train([Member(config)], dataset, threads=threads) if isinstance(e, EpochMetrics)
    ]


def neighbour(data_dir: str | None) -> None:
    """A multi-threaded training that never ends (the nice case's neighbour)."""
    dataset = data.load(data.locate(data_dir))
    while True:
        epochs(dataset, 1, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cases", default="idle,busy,nice", help="which of idle,busy,nice to run")
    parser.add_argument("--neighbour", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.neighbour:
        neighbour(args.data_dir)
        return
    governor_log = logging.getLogger("fmlab.threads")
    governor_log.setLevel(logging.DEBUG)
    governor_log.addHandler(CHANGES)
    cores = len(os.sched_getaffinity(0))
    print(
        f"machine: {cpu_model()}, {cores} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    dataset = data.load(data.locate(args.data_dir))
    kinds = [kind for kind in ("idle", "busy", "nice") if kind in args.cases.split(",")]
    cases = [(kind, pinned) for kind in kinds for pinned in (None, torch.get_num_threads())]
    epochs(dataset, 1, None)  # a process's first epoch warms up; it counts for no case
    times: dict[tuple[str, int | None], list[float]] = {case: [] for case in cases}
    for round_number in range(1, args.rounds + 1):
        # even rounds put the pinned case first: neither side always meets a fresh machine
        order = cases if round_number % 2 else [c for pair in zip(cases[1::2], cases[::2]) for c in pair]
        for kind, pinned in order:
            with neighbours(kind, args.data_dir):
                seconds = epochs(dataset, args.epochs, pinned)
            times[(kind, pinned)] += seconds
            label = f"{kind}, {'governed' if pinned is None else f'pinned {pinned}'}"
            changes = f"   ({CHANGES.count} thread changes)" if pinned is None else ""
            print(
                f"round {round_number} {label:<16} " + " ".join(f"{s:6.2f}" for s in seconds) + changes,
                flush=True,
            )
            CHANGES.count = 0
    print()
    median = {case: statistics.median(t) for case, t in times.items()}
    for case, values in times.items():
        kind, pinned = case
        label = f"{kind}, {'governed' if pinned is None else f'pinned {pinned}'}"
        print(
            f"{label:<18} median {median[case]:6.2f} s  slowest {max(values):6.2f} s  ({len(values)} epochs)"
        )
    if "idle" in kinds:
        ratios(times, median, kinds, cases[1][1])


def ratios(times: dict, median: dict, kinds: list[str], pinned: int) -> None:
    """The figures the targets are stated in, each against its own side's idle median."""
    governed_idle, pinned_idle = median[("idle", None)], median[("idle", pinned)]
    lines = [("idle, governed / pinned", governed_idle / pinned_idle, "within 5%")]
    if "busy" in kinds:
        lines.append(("busy, governed median / idle", median[("busy", None)] / governed_idle, "<= 2.5"))
        lines.append(("busy, pinned median / idle", median[("busy", pinned)] / pinned_idle, ""))
    if "nice" in kinds:
        lines.append(
            ("nice, governed slowest / idle median", max(times[("nice", None)]) / governed_idle, "<= 1.5")
        )
        lines.append(("nice, pinned slowest / idle median", max(times[("nice", pinned)]) / pinned_idle, ""))
    print()
    for label, value, target in lines:
        print(f"{label:<38} {value:6.3f}" + (f"  (target: {target})" if target else ""))


if __name__ == "__main__":
    main()
