"""Replay: a saved session turned back into the event stream its run emitted.

``timeline(record)`` rebuilds the events (RunStarted, StepMetrics, EpochMetrics,
RunFinished) each with the moment it happened, measured from the run's start
and reconstructed from the recorded epoch durations. ``play(record, control)``
yields them paced by ``control.speed`` (1x is the original pace, ``math.inf``
is instant) and holds while ``control`` is paused. Everything that consumes a
live run (the app's live view, the recorder) therefore consumes a replay too.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator

from fmlab.trainer.events import Event, RunFinished, RunResults, RunStarted, StepMetrics
from fmlab.trainer.sessions import SessionRecord

SPEEDS = (1.0, 2.0, 5.0, 10.0, math.inf)
# Playback wakes at most this often; events that fall due meanwhile come out
# together, which keeps a fast replay from flooding consumers one by one.
TICK_SECONDS = 0.05
FALLBACK_EPOCH_SECONDS = 1.0  # for a stopped run's unfinished last epoch


def speed_label(speed: float) -> str:
    return "instant" if math.isinf(speed) else f"{speed:g}x"


class ReplayControl:
    """Speed, pause and stop for one playback, safe to change from any thread."""

    def __init__(self, speed: float = 1.0, paused: bool = False) -> None:
        self._speed = speed
        self._paused = paused
        self._stopped = threading.Event()
        self._changed = threading.Event()

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def set_speed(self, speed: float) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self._speed = speed
        self._changed.set()

    def next_speed(self) -> float:
        """Step through SPEEDS (1x, 2x, 5x, 10x, instant, then 1x again)."""
        later = [s for s in SPEEDS if s > self._speed]
        self.set_speed(later[0] if later else SPEEDS[0])
        return self._speed

    def set_paused(self, paused: bool) -> None:
        self._paused = paused
        self._changed.set()

    def toggle_pause(self) -> bool:
        self.set_paused(not self._paused)
        return self._paused

    def stop(self) -> None:
        self._stopped.set()
        self._changed.set()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``; any change of speed, pause or stop wakes it."""
        self._changed.wait(seconds)
        self._changed.clear()


def run_started_of(record: SessionRecord) -> RunStarted:
    """The RunStarted event the recorded run began with."""
    from fmlab.trainer.models import summarize

    env = record.environment
    return RunStarted(
        config=record.config,
        model=record.model or summarize(record.config.model),
        device=env.get("device", "cpu"),
        device_name=env.get("device_name", ""),
        torch_version=env.get("torch", ""),
        train_size=int(env.get("train_size", 0) or 0),
        test_size=int(env.get("test_size", 0) or 0),
        steps_per_epoch=record.steps_per_epoch,
        train_total=record.train_data.of if record.train_data else None,
    )


def results_of(record: SessionRecord) -> RunResults:
    if record.results is not None and record.results.status != "running":
        return record.results
    base = record.results or RunResults(status=record.status)
    status = record.status if record.status != "running" else "interrupted"
    return RunResults(**{**base.__dict__, "status": status})


def _step_times(record: SessionRecord, steps: list[StepMetrics], starts: list[float]) -> list[float]:
    """When each recorded step happened: spread evenly over its epoch's time."""
    spe = record.steps_per_epoch
    durations = [e.seconds for e in record.epochs]
    typical = sum(durations) / len(durations) if durations else FALLBACK_EPOCH_SECONDS
    times = []
    for event in steps:
        index = event.epoch - 1
        start = starts[min(index, len(starts) - 1)]
        seconds = durations[index] if index < len(durations) else typical
        if spe:
            within = min(max(event.step - index * spe, 0), spe) / spe
        else:
            within = 1.0
        times.append(start + seconds * within)
    return times


def timeline(record: SessionRecord) -> list[tuple[float, Event]]:
    """Every event of the recorded run with its time (seconds from the start)."""
    starts = [0.0]
    for epoch in record.epochs:
        starts.append(starts[-1] + max(epoch.seconds, 0.0))
    steps = record.steps.events()
    stamped: list[tuple[float, int, Event]] = [(0.0, 0, run_started_of(record))]
    # at equal times, steps (1) come before their epoch's metrics (2)
    stamped += [(t, 1, s) for t, s in zip(_step_times(record, steps, starts), steps, strict=True)]
    stamped += [(starts[e.epoch], 2, e) for e in record.epochs if e.epoch < len(starts)]
    end = max((t for t, _, _ in stamped), default=0.0)
    stamped.append((end, 3, RunFinished(results_of(record))))
    stamped.sort(key=lambda item: (item[0], item[1]))
    return [(t, event) for t, _, event in stamped]


def play(
    record: SessionRecord,
    control: ReplayControl | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Event]:
    """Yield the recorded events at ``control``'s pace; ends early once stopped."""
    control = control or ReplayControl(math.inf)
    position, last = 0.0, clock()
    for at, event in timeline(record):
        while position < at:
            if control.stopped:
                return
            now = clock()
            if math.isinf(control.speed) and not control.paused:
                position = at
            elif not control.paused:
                position += (now - last) * control.speed
            last = now
            if position < at:
                control.wait(TICK_SECONDS)
        if control.stopped:
            return
        yield event
