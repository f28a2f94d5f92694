"""Training inside the app against headless training, same config, one process.

    python -m bench.app_throughput [--epochs 2] [--arch base] [--data-dir DIR] [--size 100x30]

The headless run is what ``fmlab train`` does (engine.run feeding the session
recorder, checkpoints on); the app run goes through the
app's thread worker (events posted as messages, charts redrawn on their timer)
with the app driven headless by run_test. Both report their epochs' wall time;
the figure that matters is app throughput / headless throughput (>= 0.9 wanted).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from trainer import data, engine
from trainer.config import RunConfig, parse_run_config
from trainer.events import EpochMetrics
from trainer.session import SessionRecorder


def headless_seconds(config: RunConfig, dataset) -> float:
    """What ``fmlab train`` does: train, record the session and its checkpoints."""
    with tempfile.TemporaryDirectory() as sessions:
        recorder = SessionRecorder(Path(sessions))
        epochs = []
        for event in engine.run(config, dataset, on_checkpoint=recorder.save_checkpoint):
            recorder(event)
            if isinstance(event, EpochMetrics):
                epochs.append(event.seconds)
    return sum(epochs)


async def app_seconds(config: RunConfig, data_dir: Path | None, size: tuple[int, int]) -> float:
    from tui.app import make_app
    from tui.messages import EpochEnded, RunEnded

    epochs: list = []
    ended = asyncio.Event()

    def hook(message) -> None:  # cheap: it sees every message the app handles
        if isinstance(message, EpochEnded):
            epochs.append(message.event.seconds)
        elif isinstance(message, RunEnded):
            ended.set()

    with tempfile.TemporaryDirectory() as sessions:
        app = make_app(Path(sessions), data_dir)
        async with app.run_test(size=size, message_hook=hook) as pilot:
            app.start_training(config)
            await ended.wait()
            await pilot.pause(0.3)
    return sum(epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--arch", default="base")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--size", default="100x30", help="terminal size the app draws at")
    parser.add_argument("--rounds", type=int, default=5, help="headless/app pairs, interleaved")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    config = parse_run_config(arch=args.arch, lr=args.lr, epochs=args.epochs, device=args.device)
    dataset = data.load(data.locate(args.data_dir), engine.resolve_device(args.device))
    # warm-up: first-use costs (optimizer import, allocator) stay out of both timings
    headless_seconds(parse_run_config(arch=args.arch, epochs=1, device=args.device), dataset)
    samples = len(dataset.train_y) * args.epochs
    started = time.perf_counter()
    headless_rates, app_rates = [], []
    for round_ in range(1, args.rounds + 1):
        # alternate which side goes first: this machine's speed drifts
        order = ("headless", "app") if round_ % 2 else ("app", "headless")
        for side in order:
            if side == "headless":
                headless_rates.append(samples / headless_seconds(config, dataset))
            else:
                app_rates.append(samples / asyncio.run(app_seconds(config, args.data_dir, size)))
        print(
            f"round {round_}: headless {headless_rates[-1]:,.0f} samples/s, "
            f"app {app_rates[-1]:,.0f} samples/s, app/headless {app_rates[-1] / headless_rates[-1]:.3f}"
        )
    median_ratio = statistics.median(app_rates) / statistics.median(headless_rates)
    print(f"best: headless {max(headless_rates):,.0f}, app {max(app_rates):,.0f} samples/s, "
          f"app/headless {max(app_rates) / max(headless_rates):.3f}")  # fmt: skip
    print(f"app/headless throughput (medians of {args.rounds} rounds): {median_ratio:.3f}"
          f"  (bench took {time.perf_counter() - started:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
