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
from fmlab.trainer.events import (
    FINISHED,
    EpochMetrics,
    Event,
    RunFinished,
    RunResults,
    RunStarted,
    StepMetrics,
)
from fmlab.trainer.metrics import results_after
from fmlab.trainer.sessions.format import (
    SessionRecord,
    StepCurve,
    TrainData,
    _now,
    check_session_id,
    encode,
    new_session_id,
)
from fmlab.trainer.sessions.lock import SessionBusy, SessionLock
from fmlab.trainer.sessions.store import checkpoint_path


class SessionRecorder:
    """Consumes a run's events and keeps its session file up to date.

    The file is created exclusively when the run starts (two processes never
    share a file), then rewritten atomically after every epoch and at the end;
    the run's checkpoint is written beside it after every epoch, and removed
    once the run has ended on its own (nothing is left to resume). While it
    records, it holds the session's lock (see fmlab.trainer.sessions.lock);
    ``close`` gives it back.

    A failed save (a full disk, say) does not stop training: ``on_error``
    hears about it once, later saves keep trying, and a checkpoint that could
    not be written is tried again when the run ends.
    """

    def __init__(
        self,
        directory: Path,
        on_error: Callable[[str], None] | None = None,
        session_id: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.on_error = on_error
        self.session_id = check_session_id(session_id) if session_id is not None else None
        self.record: SessionRecord | None = None
        self.save_error: str | None = None
        self.lock: SessionLock | None = None
        self._unsaved_checkpoint = None  # the last checkpoint, while its save failed
        self._last_point: tuple[list, int] = ([], 0)  # the last checkpoint's epochs and step (see rewind)
        self._started = 0.0
        self._resuming = False

    def resume(self, record: SessionRecord, checkpoint, lock: SessionLock) -> None:
        """Continue ``record``'s file from ``checkpoint`` (whose epochs it keeps;
        later points are dropped, the resumed run appends). ``lock`` is the
        session's lock, already held; the recorder gives it back on ``close``."""
        self.record = record
        self.lock = lock
        self._last_point = (list(checkpoint.history), checkpoint.step)
        self._back_to_last_point()
        record.pid, record.host = os.getpid(), socket.gethostname()
        self._started = time.perf_counter() - checkpoint.seconds

    def rewind(self) -> None:
        """Go back to the last checkpoint (the start, before the first one): its
        epochs are kept, later points dropped, and the next RunStarted
        continues this file. For a run that trains again from its checkpoint
        after its trainer was lost (a retried remote task)."""
        if self.record is None:
            return
        self._back_to_last_point()
        self.record.results = _running_results(self.record, time.perf_counter() - self._started)

    def _back_to_last_point(self) -> None:
        history, step = self._last_point
        self.record.epochs = list(history)
        self.record.steps.truncate(step)
        self._resuming = True

    def save_checkpoint(self, checkpoint) -> None:
        """Store a checkpoint (fmlab.trainer.training.checkpoint) beside the session file."""
        self._last_point = (list(checkpoint.history), checkpoint.step)
        if self.record is None or self.record.path is None:
            return
        path = checkpoint_path(self.record.path)
        try:
            checkpoint.save(path, self.record.id, self.record.config)
        except OSError as exc:
            self._unsaved_checkpoint = checkpoint
            self._report(f"cannot save {path}: {exc.strerror or exc}")
        else:
            self._unsaved_checkpoint = None

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
            self.finish()
            self.close()

    def finish(self) -> bool:
        """Save the ended run (retrying a checkpoint that failed) and drop a
        checkpoint that nothing will resume from. True when all is on disk."""
        assert self.record is not None
        if self.record.status in FINISHED and self.record.path is not None:
            checkpoint_path(self.record.path).unlink(missing_ok=True)
            self._unsaved_checkpoint = None
        elif self._unsaved_checkpoint is not None:
            self.save_checkpoint(self._unsaved_checkpoint)
        return self.save() and self._unsaved_checkpoint is None

    def close(self) -> None:
        """Give the session's lock back: the run has ended (done on RunFinished)
        or was abandoned."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

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
            train_data=TrainData(event.train_size, max(event.train_total or 0, event.train_size))
            if event.train_size > 0
            else None,
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
            except FileExistsError:
                self.record.id = f"{self.record.id.rsplit('-', 1)[0]}-{secrets.token_hex(2)}"
            except OSError as exc:
                self._report(f"cannot create {self.record.path}: {exc.strerror or exc}")
                return
            else:
                self._take_lock()
                return

    def _take_lock(self) -> None:
        """A new file: no other process knows its name yet, so the lock is free."""
        try:
            self.lock = SessionLock(self.record.path).acquire()
        except (OSError, SessionBusy):  # a full disk may refuse even the lock file
            self.lock = None

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
    """The results so far, after the last finished epoch."""
    epochs = record.epochs
    return results_after(
        epochs,
        status="running",
        steps_done=len(epochs) * record.steps_per_epoch,
        seconds=seconds,
        converged_epoch=epochs[-1].converged_epoch if epochs else None,
    )
