"""The CUDA path on a GPU: eager against graphed epochs, syncs per step, and
capture from a worker thread.

    python -m bench.gpu [--epochs 4] [--arch base,deeper,wider] [--data-dir DIR]

For each architecture an eager run (FMLAB_CUDA_GRAPH=0) and a graphed run
advance epoch by epoch in turn, in this one process on the real data, same
seed and learning rate. The first epoch of each pays for cuBLAS warm-up and
graph capture, so the figure is the median of the later epochs. Epoch times
include the test-set evaluation, as everywhere in bench/.

Then one base epoch runs with torch's sync debug mode on, counting the host
syncs (the loop should sync only when it flushes step metrics and at epoch
end), and one base run trains from a thread, as the app does, to show that the
graph is captured there too. The stacked sweep is bench.sweep_speed with
``--device cuda``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import traceback
import warnings

import torch

from fmlab.trainer import data
from fmlab.trainer.events import EpochMetrics, RunFinished, RunStarted
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.training.loop import Member, train

LR = 0.1


def alone(config, dataset):
    """One run's events (a stack of one)."""
    return (event for _, event in train([Member(config)], dataset))


def graph_setting(enabled: bool):
    """A generator wrapper that sets FMLAB_CUDA_GRAPH while its run starts:
    the loop reads it once, when it chooses the step."""

    def wrap(stream):
        previous = os.environ.get("FMLAB_CUDA_GRAPH")
        os.environ["FMLAB_CUDA_GRAPH"] = "1" if enabled else "0"
        try:
            first = next(stream)
        finally:
            if previous is None:
                os.environ.pop("FMLAB_CUDA_GRAPH", None)
            else:
                os.environ["FMLAB_CUDA_GRAPH"] = previous
        yield first
        yield from stream

    return wrap


def next_epoch(stream) -> EpochMetrics | None:
    for event in stream:
        if isinstance(event, RunStarted) and event.notes:
            print(f"    note: {event.notes[0]}")
        if isinstance(event, EpochMetrics):
            return event
        if isinstance(event, RunFinished):
            return None
    return None


def eager_vs_graphed(arch: str, epochs: int, dataset, device: str) -> None:
    config = parse_run_config(arch=arch, lr=LR, epochs=epochs, device=device)
    runs = {
        "eager": graph_setting(False)(alone(config, dataset)),
        "graphed": graph_setting(True)(alone(config, dataset)),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    accs: dict[str, float] = {}
    print(f"{arch} ({config.model.num_params:,} params), lr {LR}, batch 64:")
    for epoch in range(1, epochs + 1):
        for name, stream in runs.items():
            metrics = next_epoch(stream)
            if metrics is None:
                print(f"    {name} ended early")
                return
            times[name].append(metrics.seconds)
            accs[name] = metrics.test_acc
        print(f"    epoch {epoch}: eager {times['eager'][-1]:.3f} s  graphed {times['graphed'][-1]:.3f} s")
    eager, graphed = (statistics.median(times[n][1:] or times[n]) for n in ("eager", "graphed"))
    print(
        f"  {arch}: median epoch eager {eager:.3f} s ({60_000 / eager:,.0f} samples/s), "
        f"graphed {graphed:.3f} s ({60_000 / graphed:,.0f} samples/s), graphed/eager {graphed / eager:.3f}; "
        f"test acc after {epochs} epochs eager {accs['eager']:.2f}%, graphed {accs['graphed']:.2f}%"
    )


def count_syncs(dataset, device: str) -> None:
    config = parse_run_config(arch="base", lr=LR, epochs=1, device=device)
    stream = alone(config, dataset)
    next(stream)  # RunStarted: data copied, graph captured
    steps = 0
    if device == "cuda":
        torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for event in stream:
                if isinstance(event, RunFinished):
                    steps = event.results.steps_done
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode(0)
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    print(f"host syncs in one base epoch: {syncs} for {steps} steps ({syncs / max(steps, 1):.3f} per step)")


def train_in_thread(dataset, device: str) -> None:
    config = parse_run_config(arch="base", lr=LR, epochs=2, device=device)
    events: list = []
    worker = threading.Thread(target=lambda: events.extend(alone(config, dataset)))
    worker.start()
    worker.join()
    started = next(e for e in events if isinstance(e, RunStarted))
    finished = events[-1].results
    how = (
        started.notes[0]
        if started.notes
        else f"{started.device}, no note (on cuda: graph captured in the thread)"
    )
    print(
        f"trained from a thread: {how}; {finished.status}, test acc {finished.final_test_acc:.2f}% "
        f"after {finished.epochs_done} epochs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--arch", default="base,deeper,wider")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cuda", help="cpu only to try the script itself")
    args = parser.parse_args()
    dataset = data.load(data.locate(args.data_dir))
    if args.device == "cpu":
        print("device: cpu (a dry run of the script; the figures mean nothing)")
    elif not torch.cuda.is_available():
        raise SystemExit("bench.gpu needs a CUDA device")
    else:
        print_device()
    for arch in args.arch.split(","):
        section(eager_vs_graphed, arch, args.epochs, dataset, args.device)
    section(count_syncs, dataset, args.device)
    section(train_in_thread, dataset, args.device)


def section(part, *args) -> None:
    """Run one part; a failure is printed and the next part still runs (one
    device lease, every figure it can give)."""
    try:
        part(*args)
    except Exception:
        traceback.print_exc()


def print_device() -> None:
    props = torch.cuda.get_device_properties(0)
    print(
        f"device: {props.name}, {props.multi_processor_count} SMs, "
        f"{props.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, CUDA {torch.version.cuda}"
    )


if __name__ == "__main__":
    main()
