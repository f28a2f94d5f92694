"""Training inside the app against headless training, same config.

    python -m bench.app_throughput [--epochs 3] [--rounds 6] [--arch base]
                                   [--data-dir DIR] [--size 100x30]

Each side runs in a fresh process of its own, as people run them, and the
rounds alternate which side goes first (this machine's speed drifts):

- headless: what ``fmlab train`` does (the job service: the one loop, the
  session recorder, checkpoints), in the main thread;
- app: the app driven by ``run_test`` at the given terminal size, training in
  its thread worker (events posted as messages, live charts and progress
  redrawn on their timer), started the way the configure screen starts it.

Both report throughput over their epochs after the first (the first pays for
first-use costs on either side). The figure that matters is app throughput /
headless throughput (>= 0.9 wanted).

Why separate processes: a thread's OpenMP team runs torch's matmuls about a
fifth slower when another thread of the same process has already run
OpenMP-parallel ops (measured here); a headless run done first in the
benchmark's own main thread would slow the app's training thread in a way no
real app process sees. The app keeps torch work off its UI thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fmlab.trainer.config import RunConfig
from fmlab.trainer.fields import parse_run_config


def steady_rate(seconds: list[float], train_size: int) -> float:
    """Samples per second over the epochs after the first."""
    later = seconds[1:] or seconds
    return train_size * len(later) / sum(later)


def headless_rate(config: RunConfig, data_dir: Path | None) -> float:
    from fmlab.trainer.data import DatasetCache
    from fmlab.trainer.events import EpochMetrics
    from fmlab.trainer.jobs import Job, JobService

    with tempfile.TemporaryDirectory() as sessions:
        service = JobService(Path(sessions), DatasetCache(data_dir))
        train_size = len(service.data_for(config).train_y)
        epochs = [e.seconds for _, e in service.run([Job(config)]) if isinstance(e, EpochMetrics)]
    return steady_rate(epochs, train_size)


async def app_rate(config: RunConfig, data_dir: Path | None, size: tuple[int, int]) -> float:
    from fmlab.trainer.events import EpochMetrics, RunFinished, RunStarted
    from fmlab.tui.app import make_app
    from fmlab.tui.messages import TrainingEvent

    epochs: list[float] = []
    train_size = []
    ended = asyncio.Event()

    def hook(message) -> None:  # cheap: it sees every message the app handles
        event = message.event if isinstance(message, TrainingEvent) else None
        if isinstance(event, RunStarted):
            train_size.append(event.train_size)
        elif isinstance(event, EpochMetrics):
            epochs.append(event.seconds)
        elif isinstance(event, RunFinished):
            ended.set()

    with tempfile.TemporaryDirectory() as sessions:
        app = make_app(Path(sessions), data_dir)
        async with app.run_test(size=size, message_hook=hook) as pilot:
            app.start_training(config)
            await ended.wait()
            await pilot.pause(0.3)
    return steady_rate(epochs, train_size[0])


def measure(side: str, args: argparse.Namespace) -> float:
    """One side's rate, measured in a fresh process."""
    command = [sys.executable, "-m", "bench.app_throughput", "--side", side, "--epochs", str(args.epochs),
               "--arch", args.arch, "--lr", str(args.lr), "--device", args.device, "--size", args.size]  # fmt: skip
    if args.data_dir:
        command += ["--data-dir", str(args.data_dir)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} side failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["rate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--arch", default="base")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--size", default="100x30", help="terminal size the app draws at")
    parser.add_argument("--rounds", type=int, default=6, help="headless/app pairs, alternating")
    parser.add_argument("--side", choices=("headless", "app"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = parse_run_config(arch=args.arch, lr=args.lr, epochs=args.epochs, device=args.device)
    if args.side == "headless":
        print(json.dumps({"rate": headless_rate(config, args.data_dir)}))
        return
    if args.side == "app":
        size = tuple(int(v) for v in args.size.split("x"))
        print(json.dumps({"rate": asyncio.run(app_rate(config, args.data_dir, size))}))
        return

    print(f"config: {config.describe()}; app at {args.size}; epochs 2-{args.epochs} timed")
    started = time.perf_counter()
    rates: dict[str, list[float]] = {"headless": [], "app": []}
    for round_ in range(1, args.rounds + 1):
        order = ("headless", "app") if round_ % 2 else ("app", "headless")
        for side in order:
            rates[side].append(measure(side, args))
        headless, app = rates["headless"][-1], rates["app"][-1]
        print(f"round {round_}: headless {headless:,.0f} samples/s, app {app:,.0f} samples/s, "
              f"app/headless {app / headless:.3f}", flush=True)  # fmt: skip
    ratios = [a / h for a, h in zip(rates["app"], rates["headless"])]
    median_ratio = statistics.median(rates["app"]) / statistics.median(rates["headless"])
    print(
        f"per-round ratios: median {statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f}"
    )
    print(f"app/headless throughput (medians of {args.rounds} rounds): {median_ratio:.3f}"
          f"  (bench took {time.perf_counter() - started:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
