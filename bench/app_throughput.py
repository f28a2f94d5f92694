"""Training inside the app against headless training, same config, one process.

    python -m bench.app_throughput [--epochs 2] [--arch base] [--data-dir DIR] [--size 100x30]

The headless run iterates engine.run directly; the app run goes through the
app's thread worker (events posted as messages, charts redrawn on their timer)
with the app driven headless by run_test. Both report their epochs' wall time;
the figure that matters is app throughput / headless throughput (>= 0.9 wanted).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from trainer import data, engine
from trainer.config import RunConfig, parse_run_config
from trainer.events import EpochMetrics


def headless_seconds(config: RunConfig, dataset) -> float:
    epochs = [e for e in engine.run(config, dataset) if isinstance(e, EpochMetrics)]
    return sum(e.seconds for e in epochs)


async def app_seconds(config: RunConfig, data_dir: Path | None, size: tuple[int, int]) -> float:
    from tui.app import make_app
    from tui.messages import EpochEnded, RunEnded

    seen: list = []
    with tempfile.TemporaryDirectory() as sessions:
        app = make_app(Path(sessions), data_dir)
        async with app.run_test(size=size, message_hook=seen.append) as pilot:
            app.start_training(config)
            while not any(isinstance(m, RunEnded) for m in seen):
                await pilot.pause(0.1)
            await pilot.pause(0.3)
    return sum(m.event.seconds for m in seen if isinstance(m, EpochEnded))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--arch", default="base")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--size", default="100x30", help="terminal size the app draws at")
    parser.add_argument("--rounds", type=int, default=2, help="headless/app pairs, interleaved")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    config = parse_run_config(arch=args.arch, lr=args.lr, epochs=args.epochs, device=args.device)
    dataset = data.load(data.locate(args.data_dir), engine.resolve_device(args.device))
    # warm-up: first-use costs (optimizer import, allocator) stay out of both timings
    headless_seconds(parse_run_config(arch=args.arch, epochs=1, device=args.device), dataset)
    samples = len(dataset.train_y) * args.epochs
    started = time.perf_counter()
    ratios = []
    for round_ in range(1, args.rounds + 1):
        headless = headless_seconds(config, dataset)
        app = asyncio.run(app_seconds(config, args.data_dir, size))
        ratios.append(headless / app)
        print(
            f"round {round_}: headless {samples / headless:,.0f} samples/s, "
            f"app {samples / app:,.0f} samples/s, app/headless {headless / app:.3f}"
        )
    ratios.sort()
    print(
        f"app/headless throughput (median of {len(ratios)}): {ratios[len(ratios) // 2]:.3f}"
        f"  (bench took {time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
