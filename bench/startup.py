"""Start-up and listing times, the way a user meets them (fresh processes).

    python -m bench.startup [--sessions 1000] [--epochs 200]

1. ``fmlab --help``, best of 5 runs.
2. ``fmlab sessions list`` over N generated sessions of E epochs each (with
   step curves as long as a real run of that length keeps), best of 3.
3. The app, from process start until its first screen has been painted
   (headless, same sessions folder), best of 3.
4. The app's sessions browser in a real terminal (tmux, 100x30, when tmux is
   installed): from pressing F4 until session rows are on screen, best of 3.
Also checks that 1 and 2 import neither torch nor textual.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fmlab.trainer.atomic import write_atomic
from fmlab.trainer.events import EpochMetrics, RunFinished, RunResults, RunStarted, StepMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.models import summarize
from fmlab.trainer.sessions import SessionRecorder, encode

FMLAB = [sys.executable, "-m", "fmlab"]
# leaves at once after the first refresh: an exit that waits for background
# workers (the CUDA probe imports torch) would be timed as start-up
FIRST_PAINT = """
import os, sys
from pathlib import Path
from fmlab.tui.app import make_app
app = make_app(sessions_dir=Path(sys.argv[1]), data_dir=None, replay=None)
app.call_after_refresh(lambda: os._exit(0))
app.run(headless=True, size=(100, 30))
"""


def template_record(epochs: int):
    """One session shaped like a real run: per-epoch metrics and the bounded
    step curve a run of that length keeps."""
    steps_per_epoch = 938
    config = parse_run_config(epochs=epochs)
    recorder = SessionRecorder(Path(tempfile.mkdtemp()))
    recorder(RunStarted(config, summarize(config.model), "cpu", "cpu", "2", 60000, 10000, steps_per_epoch))
    recorder.save = lambda: True  # no need to write every epoch here
    step = 0
    for epoch in range(1, epochs + 1):
        for _ in range(steps_per_epoch // 10):
            step += 10
            recorder(StepMetrics(step, epoch, 0.5, 1e-5, 0.3, (0.1, 0.2, 0.05)))
        recorder(EpochMetrics(epoch, 0.4, 85.0, 0.45, 84.0 + epoch / 100, 1.2, 50000.0))
    recorder(RunFinished(RunResults("completed", epochs, step, 86.0, 86.0, epochs, None, 240.0)))
    return recorder.record


def write_sessions(directory: Path, count: int, epochs: int) -> None:
    record = template_record(epochs)
    for index in range(count):
        record.id = f"20260101-000000-base-{index:04d}"
        record.config = parse_run_config(lr=[1, 0.1, 0.01, 0.001][index % 4], epochs=epochs, seed=index)
        write_atomic(directory / f"{record.id}.json", encode(record))


def best_of(runs: int, command: list[str]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def imports_of(args: list[str]) -> list[str]:
    code = (
        "import sys\nfrom fmlab.tui.cli import app\n"
        f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'textual') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def browser_seconds(sessions: str) -> float:
    """F4 to rows on screen, read back from a tmux pane like a person would see it."""
    session = f"fmlab-bench-{os.getpid()}"
    command = f"{sys.executable} -m fmlab tui --sessions-dir {sessions}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", command], check=True)
    try:
        deadline = time.perf_counter() + 30
        while "Start run" not in pane(session):  # the first screen is up
            if time.perf_counter() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.05)
        time.sleep(1.0)  # let start-up work settle, as a person would
        subprocess.run(["tmux", "send-keys", "-t", session, "F4"], check=True)
        start = time.perf_counter()
        while pane(session).count("completed") < 5:
            if time.perf_counter() > start + 30:
                raise RuntimeError("no session rows appeared")
            time.sleep(0.01)
        return time.perf_counter() - start
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def pane(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
    ).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        start = time.perf_counter()
        write_sessions(directory, args.sessions, args.epochs)
        sizes = [p.stat().st_size for p in directory.glob("*.json")]
        print(f"wrote {len(sizes)} sessions of {args.epochs} epochs in {time.perf_counter() - start:.1f} s, "
              f"{sum(sizes) / len(sizes) / 1024:.0f} KiB each")  # fmt: skip
        print(
            f"fmlab --help:          {best_of(5, [*FMLAB, '--help']):.3f} s   imports {imports_of(['--help'])}"
        )
        listing = [*FMLAB, "sessions", "list", "--sessions-dir", tmp]
        print(f"fmlab sessions list:   {best_of(3, listing):.3f} s   imports "
              f"{imports_of(['sessions', 'list', '--sessions-dir', tmp])}")  # fmt: skip
        try:
            paint = best_of(3, [sys.executable, "-c", FIRST_PAINT, tmp])
            print(
                f"app first paint:       {paint:.3f} s   (process start to first screen, {len(sizes)} sessions)"
            )
        except subprocess.CalledProcessError as exc:
            print(f"app first paint: failed ({exc.stderr.decode().strip().splitlines()[-1:]})")
        if shutil.which("tmux"):
            browser = min(browser_seconds(tmp) for _ in range(3))
            print(f"app sessions browser:  {browser:.3f} s   (F4 to rows on screen, tmux 100x30)")
        else:
            print("app sessions browser: skipped (no tmux)")


if __name__ == "__main__":
    main()
