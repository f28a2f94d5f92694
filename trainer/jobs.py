"""The job service: train runs and keep each one saved, for every front end.

``fmlab train``, ``sweep``, ``grads`` and ``reproduce``, the app's live and
sweep views and the benches all train through ``JobService.run(jobs)``. It
resolves the device, takes the data from a DatasetCache, groups the jobs into
stacks (fmlab.trainer.training.plan), trains each stack with the one loop, and
gives every member a SessionRecorder (its session file, its checkpoint after
every epoch, its lock). It yields ``(job position, event)``: one stream shape,
whatever the number of runs. A job can resume a stopped or interrupted
session from its checkpoint (``resume_job``).

How the stacks are trained is the service's ``stacks`` runner: LocalStacks
(the default) trains them one after another in this process;
fmlab.trainer.remote.RayStacks trains them all at once as tasks on a Ray
cluster. Either way the sessions are written here, by this process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fmlab.trainer.config import ModelSpec, RunConfig
from fmlab.trainer.data import DatasetCache, FashionMNIST
from fmlab.trainer.events import FINISHED, Event, RunStarted
from fmlab.trainer.sessions import SessionError, SessionRecord, SessionRecorder, checkpoint_path, load
from fmlab.trainer.sessions.lock import SessionBusy, SessionLock
from fmlab.trainer.text import visible

if TYPE_CHECKING:
    from fmlab.trainer.training.checkpoint import Checkpoint
    from fmlab.trainer.training.loop import Member

OnStackCheckpoint = Callable[[int, int, "Checkpoint"], None]


class JobError(Exception):
    """A job that cannot start (a session that cannot be resumed); one line."""


@dataclass
class Resume:
    """A session to continue: its record, its checked checkpoint and its lock (held)."""

    record: SessionRecord
    checkpoint: object  # fmlab.trainer.training.checkpoint.Checkpoint
    lock: SessionLock


@dataclass
class Job:
    """One run to train: a new session for ``config``, or ``resume``'s session."""

    config: RunConfig
    resume: Resume | None = None


def resume_job(session_path: Path, module: ModelSpec | None = None) -> Job:
    """A job continuing the session at ``session_path`` from its checkpoint.

    Takes the session's lock (so two processes never continue one session)
    and checks the checkpoint belongs to it; JobError otherwise. A session of
    a user's module resumes only with ``module``, that module loaded again
    from the same file (a path read from a session is never run).
    """
    from fmlab.trainer.training.checkpoint import Checkpoint, CheckpointError

    lock = SessionLock(session_path)
    try:
        lock.acquire()
    except SessionBusy as exc:
        raise JobError(str(exc)) from None
    except OSError as exc:
        raise JobError(f"cannot lock {lock.path}: {exc.strerror or exc}") from None
    try:
        record = load(session_path)
        if record.status in FINISHED or record.status == "running":
            raise JobError(
                f"session {record.id} is {record.status}; only stopped or interrupted runs can be resumed"
            )
        config = _with_module(record, module)
        checkpoint = Checkpoint.load(checkpoint_path(session_path), record.id, config)
    except (SessionError, CheckpointError, JobError) as exc:
        lock.release()
        raise JobError(str(exc)) from None
    return Job(config, Resume(record, checkpoint, lock))


def _with_module(record: SessionRecord, module: ModelSpec | None) -> RunConfig:
    recorded = record.config.model.module
    if recorded is None:
        return record.config
    if module is None or module.module != recorded:
        raise JobError(
            f"session {record.id} trains your module {visible(recorded.name)}: fmlab runs a module file only "
            f"when you name it; resume with fmlab train --resume {record.id} --model {visible(recorded.name)}"
        )
    return replace(record.config, model=module)


class StackRunner(Protocol):
    """Trains planned stacks: how a JobService gets its training done."""

    def data_device(self, config: RunConfig) -> str:
        """The device the data is handed over on for ``config``'s stack."""

    def run(
        self,
        stacks: Sequence[Sequence[Member]],
        data: Callable[[RunConfig], FashionMNIST],
        cancel: threading.Event,
        on_checkpoint: OnStackCheckpoint,
    ) -> Iterator[tuple[int, int, Event]]:
        """Train every stack, yielding ``(stack number, position in the stack,
        event)``: each member's ordinary stream (a member trained again after
        its trainer was lost starts over with RunStarted, from the last
        checkpoint handed to ``on_checkpoint(stack number, position,
        checkpoint)``). Once ``cancel`` is set, members end ``stopped`` and
        stacks not started never start."""


class LocalStacks:
    """Trains the stacks one after another in this process, each on its
    config's device (the default); ``threads`` pins torch's thread count
    (None: as many as other programs leave free, see training.threads)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def data_device(self, config: RunConfig) -> str:
        return config.device

    def run(self, stacks, data, cancel, on_checkpoint) -> Iterator[tuple[int, int, Event]]:
        from fmlab.trainer.training.loop import train

        for number, members in enumerate(stacks):
            if cancel.is_set():
                break
            events = train(members, data(members[0].config), cancel,
                           on_checkpoint=partial(on_checkpoint, number), threads=self.threads)  # fmt: skip
            for slot, event in events:
                yield number, slot, event


class JobService:
    """Trains jobs into ``sessions_dir``; see the module doc.

    ``stacked=False`` trains every job alone. ``train_limit`` trains on the
    first N training images only. ``on_warning`` hears, once per outage, that a
    session or checkpoint could not be saved (training goes on). ``stacks``
    trains the planned stacks (LocalStacks unless given).
    """

    def __init__(
        self,
        sessions_dir: Path,
        datasets: DatasetCache,
        *,
        stacked: bool = True,
        train_limit: int | None = None,
        on_warning: Callable[[str], None] | None = None,
        stacks: StackRunner | None = None,
    ) -> None:
        self.sessions_dir = Path(sessions_dir)
        self.datasets = datasets
        self.stacked = stacked
        self.train_limit = train_limit
        self.on_warning = on_warning
        self.stacks = stacks or LocalStacks()
        self.recorders: dict[int, SessionRecorder] = {}

    def data_for(self, config: RunConfig) -> FashionMNIST:
        """The training data for ``config``'s stack, on the device the stack
        runner takes it on (DataError, ConfigError)."""
        return self.datasets.get(self.stacks.data_device(config)).first(self.train_limit)

    def session_path(self, position: int) -> Path | None:
        recorder = self.recorders.get(position)
        return recorder.path if recorder else None

    def unsaved(self) -> list[str]:
        """One line per run whose session or checkpoint is not on disk."""
        return [r.save_error for r in self.recorders.values() if r.save_error]

    def run(self, jobs: Sequence[Job], cancel: threading.Event | None = None) -> Iterator[tuple[int, Event]]:
        """Train every job, yielding ``(position in jobs, event)``. A job's
        RunFinished comes after its session is saved. Once ``cancel`` is set,
        the runs training end ``stopped`` and the rest never start."""
        from fmlab.trainer.training.loop import Member
        from fmlab.trainer.training.plan import plan_stacks, stack_key

        cancel = cancel or threading.Event()
        keys = [(stack_key(j.config), _resume_point(j)) for j in jobs]
        try:
            for job in jobs:
                self.check_resumed(job)
            stacks = plan_stacks(keys, self.stacked)
            members = [[Member(jobs[i].config, jobs[i].resume.checkpoint if jobs[i].resume else None)
                        for i in stack] for stack in stacks]  # fmt: skip

            def save_checkpoint(number: int, slot: int, checkpoint) -> None:
                self.recorders[stacks[number][slot]].save_checkpoint(checkpoint)

            for number, slot, event in self.stacks.run(members, self.data_for, cancel, save_checkpoint):
                position = stacks[number][slot]
                recorder = self.recorders.get(position)
                if recorder is None:
                    recorder = self.recorders[position] = self._recorder(jobs[position])
                elif isinstance(event, RunStarted):  # its trainer was lost: it trains again
                    recorder.rewind()
                    self._warn(f"{recorder.record.id}: its trainer was lost; it continues from epoch "
                               f"{len(recorder.record.epochs) + 1}")  # fmt: skip
                recorder(event)
                yield position, event
        finally:
            for job in jobs:  # locks of resumed jobs that never started
                if job.resume is not None:
                    job.resume.lock.release()
            for recorder in self.recorders.values():
                recorder.close()

    def check_resumed(self, job: Job) -> None:
        """JobError unless ``job``'s checkpoint (if any) continues on this data:
        the one it was trained on gives the same steps per epoch."""
        if job.resume is None:
            return
        checkpoint, record = job.resume.checkpoint, job.resume.record
        steps_per_epoch = -(-len(self.data_for(job.config).train_x) // job.config.batch_size)
        if checkpoint.step != checkpoint.epoch * steps_per_epoch:
            raise JobError(
                f"{record.path}: the checkpoint was trained with {checkpoint.step // checkpoint.epoch:,} "
                f"steps per epoch, this data gives {steps_per_epoch:,}; resume it with the same data"
            )

    def _warn(self, message: str) -> None:
        if self.on_warning:
            self.on_warning(message)

    def _recorder(self, job: Job) -> SessionRecorder:
        recorder = SessionRecorder(self.sessions_dir, on_error=self.on_warning)
        if job.resume is not None:
            recorder.directory = job.resume.record.path.parent
            recorder.resume(job.resume.record, job.resume.checkpoint, job.resume.lock)
        return recorder


def _resume_point(job: Job) -> tuple[int, int]:
    checkpoint = job.resume.checkpoint if job.resume else None
    return (checkpoint.epoch, checkpoint.step) if checkpoint else (0, 0)
