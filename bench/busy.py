"""Base epochs on a busy machine: the thread governor against pinned threads.

    python -m bench.busy [--epochs 3] [--rounds 2] [--cases idle,busy,nice,apart] [--paired]

Every case trains base (lr 0.1) for a few epochs through fmlab's loop in this
process, on the real data; the bench starts and stops the neighbours itself:
  idle            nothing else running
  busy            one normal-priority process spinning on one core
  nice            two other fmlab trainings under ``nice -n 19``
  apart           one process spinning under ``nice -n 19`` in a terminal
                  session of its own (where the kernel's autogroups are on,
                  nice ranks programs only within a session); not in the
                  default cases: pinned threads take many times longer there
each with the governor (the default) and with the thread count pinned to the
cores (``--threads N``, what fmlab did before). Rounds repeat every case in
turn (odd rounds governed first, even rounds pinned first), so all cases
meet the same machine. Printed: each case's epoch times,
their median, and the ratios the targets are stated in (busy median against
idle median, the slowest epoch next to nice neighbours against the idle
median, governed idle against pinned idle).

``--paired``: a machine that drifts by tens of percent over minutes hides a
target stated against idle, so here one training runs a warm-up epoch and
then 2 x ``--rounds`` + 1 epochs per case and policy while its neighbours,
started once, are paused (SIGSTOP) for the even epochs and let go (SIGCONT,
a second before the epoch starts) for the odd ones: every loaded epoch is
compared with the mean of the idle epochs just before and after it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
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
from fmlab.trainer.training.threads import stat_cpu_seconds

SPIN = "while True: pass"
SETTLE = 1.0  # seconds for neighbours to get going before timing starts


@contextmanager
def neighbours(kind: str, data_dir: str | None):
    """Start the case's other processes; stop them afterwards."""
    commands: list[list[str]] = []
    if kind == "busy":
        commands = [[sys.executable, "-c", SPIN]]
    elif kind == "apart":
        commands = [["nice", "-n", "19", sys.executable, "-c", SPIN]]
    elif kind == "nice":
        train = [sys.executable, "-m", "bench.busy", "--neighbour"] + (
            ["--data-dir", data_dir] if data_dir else []
        )
        commands = [["nice", "-n", "19", *train] for _ in range(2)]
    # "apart": a session of its own, as a program started from another terminal
    processes = [
        subprocess.Popen(
            c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=kind == "apart"
        )
        for c in commands
    ]
    try:
        if processes:
            time.sleep(SETTLE + 4 if kind == "nice" else SETTLE)  # neighbours load the data first
        yield processes
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


def paired(
    dataset, kind: str, rounds: int, threads: int | None, data_dir: str | None
) -> tuple[list[float], float]:
    """Loaded epoch / the mean of the idle epochs on either side, once per
    round; and the cores the neighbours used, on average, in loaded epochs."""
    config = parse_run_config(arch="base", lr=0.1, epochs=2 * rounds + 2, device="cpu")
    with neighbours(kind, data_dir) as processes:
        pids = [p.pid for p in processes]
        used = lambda: sum(stat_cpu_seconds(f"/proc/{pid}/stat") for pid in pids)  # noqa: E731
        send = lambda sig: [os.kill(pid, sig) for pid in pids]  # noqa: E731
        send(signal.SIGSTOP)
        seconds: list[float] = []
        neighbours_cpu = 0.0
        for _, event in train([Member(config)], dataset, threads=threads):
            if not isinstance(event, EpochMetrics):
                continue
            seconds.append(event.seconds)
            if event.epoch % 2 == 0 and event.epoch < config.epochs:  # the next epoch is loaded
                send(signal.SIGCONT)
                time.sleep(SETTLE)
                neighbours_cpu -= used()
            elif event.epoch % 2 and event.epoch > 1:  # a loaded epoch ended
                neighbours_cpu += used()
                send(signal.SIGSTOP)
        send(signal.SIGCONT)
    idle, loaded = seconds[1::2], seconds[2::2]  # the first epoch warms up
    ratios = [load / ((before + after) / 2) for load, before, after in zip(loaded, idle, idle[1:])]
    return ratios, neighbours_cpu / sum(loaded)


def run_paired(dataset, kinds: list[str], rounds: int, data_dir: str | None) -> None:
    targets = {
        "busy": ("median", statistics.median, "<= 2.5"),
        "nice": ("slowest", max, "<= 1.5"),
        "apart": ("median", statistics.median, "<= 2.5, as for busy"),
    }
    for kind in kinds:
        if kind not in targets:
            continue
        name, pick, target = targets[kind]
        for threads in (None, torch.get_num_threads()):
            ratios, cores = paired(dataset, kind, rounds, threads, data_dir)
            label = f"{kind}, {'governed' if threads is None else f'pinned {threads}'}"
            print(
                f"{label:<16} loaded / idle either side: " + " ".join(f"{r:5.2f}" for r in ratios), flush=True
            )
            print(
                f"{'':<16} {name} {pick(ratios):.3f}"
                + (f"  (target: {target})" if threads is None else "")
                + f"; the neighbours used {cores:.2f} cores meanwhile"
            )


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
    parser.add_argument("--paired", action="store_true", help="loaded epochs between idle ones (see above)")
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
    kinds = [kind for kind in ("idle", "busy", "nice", "apart") if kind in args.cases.split(",")]
    if args.paired:
        run_paired(dataset, kinds, args.rounds, args.data_dir)
        return
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
