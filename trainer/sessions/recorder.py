"""The session recorder: a consumer of one run's events that keeps its
session file up to date."""

from __future__ import annotations

import os
import platform
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path

from fmlab.trainer.atomic import write_atomic, write_new
from fmlab.trainer.events import EpochMetrics, Event, RunFinished, RunResults, RunStarted, StepMetrics
from fmlab.trainer.sessions.format import SessionRecord, StepCurve, _now, encode, new_session_id
from fmlab.trainer.sessions.store import checkpoint_path


class SessionRecorder:
    """Consumes a run's events and keeps its session file up to date.

    The file is created exclusively when the run starts (two processes never
    share a file), then rewritten atomically after every epoch and at the end.
    A failed save does not stop training: ``on_error`` hears about it once,
    and later saves keep trying.
    """

    def __init__(
        self,
        directory: Path,
        on_error: Callable[[str], None] | None = None,
        session_id: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.on_error = on_error
        self.session_id = session_id
        self.record: SessionRecord | None = None
        self.save_error: str | None = None
        self._started = 0.0
        self._resuming = False

    def resume(self, record: SessionRecord, history: list[EpochMetrics], step: int) -> None:
        """Continue ``record``'s file from a checkpoint's epochs (``history``)
        and ``step``: later points are dropped, the resumed run appends."""
        self.record = record
        self._resuming = True
        record.epochs = list(history)
        record.steps.truncate(step)
        record.pid, record.host = os.getpid(), socket.gethostname()
        seconds = record.results.seconds if record.results else 0.0
        self._started = time.perf_counter() - seconds

    def save_checkpoint(self, checkpoint) -> None:
        """Store a fmlab.trainer.training.loop.Checkpoint beside the session file, atomically."""
        if self.record is None or self.record.path is None:
            return
        try:
            checkpoint.save(checkpoint_path(self.record.path))
        except OSError as exc:
            self._report(f"cannot save {checkpoint_path(self.record.path)}: {exc.strerror or exc}")

    @property
    def path(self) -> Path | None:
        return self.record.path if self.record else None

    def __call__(self, event: Event) -> None:
        self.handle(event)

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted) and self._resuming:
            self._resuming = False
            self.record.status = "running"
            self.save()
        elif isinstance(event, RunStarted):
            self._start(event)
        elif self.record is None:
            return
        elif isinstance(event, StepMetrics):
            self.record.steps.add(event)
        elif isinstance(event, EpochMetrics):
            self.record.epochs.append(event)
            self.record.results = _running_results(self.record, time.perf_counter() - self._started)
            self.save()
        elif isinstance(event, RunFinished):
            self.record.status = event.status
            self.record.results = event.results
            self.save()

    def _start(self, event: RunStarted) -> None:

        self._started = time.perf_counter()
        self.record = SessionRecord(
            id=self.session_id or new_session_id(event.config),
            config=event.config,
            created=_now(),
            pid=os.getpid(),
            host=socket.gethostname(),
            environment={
                "torch": event.torch_version,
                "device": event.device,
                "device_name": event.device_name,
                "python": platform.python_version(),
                "train_size": str(event.train_size),
                "test_size": str(event.test_size),
                "steps_per_epoch": str(event.steps_per_epoch),
            },
            model=event.model,
            steps=StepCurve(full_steps=event.config.full_steps),
        )
        self.record.results = _running_results(self.record, 0.0)
        self._create()

    def _create(self) -> None:
        """Write the first version under a name no other process holds."""
        assert self.record is not None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._report(f"cannot create sessions folder {self.directory}: {exc.strerror or exc}")
        for _ in range(100):
            self.record.path = self.directory / f"{self.record.id}.json"
            self.record.updated = _now()
            try:
                write_new(self.record.path, encode(self.record))
                return
            except FileExistsError:
                self.record.id = f"{self.record.id.rsplit('-', 1)[0]}-{secrets.token_hex(2)}"
            except OSError as exc:
                self._report(f"cannot create {self.record.path}: {exc.strerror or exc}")
                return

    def save(self) -> bool:
        assert self.record is not None and self.record.path is not None
        self.record.updated = _now()
        try:
            write_atomic(self.record.path, encode(self.record))
        except OSError as exc:
            self._report(f"cannot save {self.record.path}: {exc.strerror or exc}")
            return False
        if self.save_error:
            self.save_error = None
        return True

    def _report(self, message: str) -> None:
        if self.save_error is None and self.on_error:
            self.on_error(message)
        self.save_error = message


def _running_results(record: SessionRecord, seconds: float) -> RunResults:
    best = max(record.epochs, key=lambda e: e.test_acc, default=None)
    last = record.epochs[-1] if record.epochs else None
    return RunResults(
        status="running",
        epochs_done=len(record.epochs),
        steps_done=record.steps.step[-1] if record.steps.step else 0,
        final_test_acc=last.test_acc if last else None,
        best_test_acc=best.test_acc if best else None,
        best_epoch=best.epoch if best else None,
        converged_epoch=last.converged_epoch if last else None,
        seconds=seconds,
    )
