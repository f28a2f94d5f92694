"""Replay turns a saved session back into the events its run emitted."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "tui"))

from one_run import train_one  # noqa: E402
from sessions_fixture import fixed_record  # noqa: E402

from fmlab.trainer.events import EpochMetrics, RunFinished, RunStarted, StepMetrics  # noqa: E402
from fmlab.trainer.fields import parse_run_config  # noqa: E402
from fmlab.trainer.replay import ReplayControl, play, speed_label, timeline  # noqa: E402
from fmlab.trainer.sessions import SessionRecorder, load  # noqa: E402


def test_timeline_is_in_run_order():
    record = fixed_record("r", 0.1, 3, 1)
    events = [event for _, event in timeline(record)]
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    epochs = [e for e in events if isinstance(e, EpochMetrics)]
    assert epochs == record.epochs
    steps = [e for e in events if isinstance(e, StepMetrics)]
    assert steps == record.steps.events()
    # every step comes before the metrics of the epoch it belongs to
    position = {id(e): i for i, e in enumerate(events)}
    for step in steps:
        assert position[id(step)] < position[id(epochs[step.epoch - 1])]
    times = [t for t, _ in timeline(record)]
    assert times == sorted(times) and times[-1] == pytest.approx(6.0)


def test_replay_of_a_recorded_run_gives_back_its_events(tiny_dataset, sessions_dir):
    config = parse_run_config(epochs=2, arch="32", lr=0.1)
    recorder = SessionRecorder(sessions_dir)
    live = []
    for event in train_one(config, tiny_dataset):
        recorder(event)
        live.append(event)
    replayed = list(play(load(recorder.path), ReplayControl(math.inf)))
    assert [type(e) for e in replayed] == [type(e) for e in live]
    assert [e for e in replayed if isinstance(e, EpochMetrics)] == [
        e for e in live if isinstance(e, EpochMetrics)
    ]
    assert replayed[-1].results == live[-1].results
    started = replayed[0]
    assert started.config == config and started.steps_per_epoch == live[0].steps_per_epoch


class FakeTime:
    """A clock that moves only when the replay waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeControl(ReplayControl):
    def __init__(self, clock: FakeTime, speed: float) -> None:
        super().__init__(speed)
        self.clock = clock

    def wait(self, seconds: float) -> None:
        self.clock.now += seconds


def test_playback_is_paced_by_speed():
    record = fixed_record("r", 0.1, 3, 1)  # 3 epochs of 2 s each
    for speed, expected in ((1.0, 6.0), (2.0, 3.0), (10.0, 0.6)):
        clock = FakeTime()
        list(play(record, FakeControl(clock, speed), clock=clock))
        assert clock.now == pytest.approx(expected, abs=0.06)


def test_pause_holds_and_stop_ends_playback():
    record = fixed_record("r", 0.1, 3, 1)
    clock = FakeTime()
    control = FakeControl(clock, 1.0)
    events = play(record, control, clock=clock)
    assert isinstance(next(events), RunStarted)
    control.set_paused(True)
    stamp = clock.now

    def wait_paused(seconds: float) -> None:
        clock.now += seconds
        if clock.now - stamp > 5:  # held for 5 s: resume
            control.set_paused(False)

    control.wait = wait_paused
    first_step = next(events)
    assert isinstance(first_step, StepMetrics)
    assert clock.now - stamp > 5  # nothing came out while paused
    control.stop()
    assert list(events) == []


def test_speed_steps_through_the_choices():
    control = ReplayControl(1.0)
    seen = [speed_label(control.next_speed()) for _ in range(5)]
    assert seen == ["2x", "5x", "10x", "instant", "1x"]


def test_a_run_still_marked_running_replays_as_interrupted():
    record = fixed_record("r", 0.1, 2, 1)
    record.status, record.results = "running", None
    last = list(play(record))[-1]
    assert isinstance(last, RunFinished) and last.status == "interrupted"
