"""Sweeps: a list of run configs trained through the job service (stacked
where they can be), each saved as an ordinary session, plus one sweep record
that says what was asked, which session holds each run and what each gave.

A sweep that was stopped or killed continues with ``Sweep.resume``: runs that
finished are kept, runs cut off continue from their last finished epoch
(their checkpoint), and runs that never started start.

This module does not import torch at import time.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fmlab.trainer.atomic import write_atomic
from fmlab.trainer.config import RunConfig
from fmlab.trainer.data import DatasetCache
from fmlab.trainer.events import FINISHED, Event, RunFinished, RunStarted
from fmlab.trainer.fields import config_from_dict, config_to_dict
from fmlab.trainer.jobs import Job, JobError, JobService, StackRunner, resume_job
from fmlab.trainer.regular_files import NotRegularFile, read_regular_file
from fmlab.trainer.sessions import SessionError, SessionRecord, effective_status, is_safe_session_id, load
from fmlab.trainer.sessions.lock import SessionBusy, SessionLock
from fmlab.trainer.sessions.store import NEWEST
from fmlab.trainer.studies.tables import RunRow
from fmlab.trainer.text import visible

SCHEMA = "fmlab.sweep"
VERSION = 1
MAX_SWEEP_BYTES = 16 * 2**20  # a record holds a config and a row per run: a few KiB per hundred runs


class SweepError(Exception):
    """A sweep file that cannot be used; the message names file and problem."""


@dataclass
class SweepRecord:
    """The sweep file: what was asked and what each run gave."""

    id: str
    table: str
    preset: str | None
    grid: dict
    configs: list[RunConfig]
    rows: list[RunRow | None]  # by config position; set when that run ends
    sessions: list[str | None] = field(default_factory=list)  # session id per position, once started
    stacked: bool = True
    status: str = "running"
    created: str = ""
    seconds: float = 0.0  # wall time over every attempt
    pid: int = 0
    host: str = ""
    path: Path | None = None

    def to_json(self) -> str:
        runs = [
            {"config": config_to_dict(c), "session": s, "result": r.to_dict() if r else None}
            for c, s, r in zip(self.configs, self.sessions, self.rows)
        ]
        return json.dumps(
            {"schema": SCHEMA, "version": VERSION, "id": self.id, "status": self.status,
             "created": self.created, "pid": self.pid, "host": self.host, "preset": self.preset,
             "table": self.table, "stacked": self.stacked, "seconds": self.seconds, "grid": self.grid,
             "runs": runs},
            indent=1,
            allow_nan=False,
        )  # fmt: skip

    def save(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, self.to_json() + "\n")

    def pending(self) -> list[int]:
        """Positions still to train: never run, or cut off (stopped, failed, interrupted)."""
        return [i for i, row in enumerate(self.rows) if row is None or row.status not in FINISHED]


def load_sweep(path: Path) -> SweepRecord:
    """Read a sweep file; SweepError names what is wrong. A record still marked
    running whose process is gone reads as interrupted. Like a session, a
    sweep file is untrusted: only a regular file of at most MAX_SWEEP_BYTES
    is read, and its id must be safe as a file name."""
    path = Path(path)
    where = visible(path)
    try:
        data = json.loads(read_regular_file(path, MAX_SWEEP_BYTES).decode("utf-8"))
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise SweepError(f"{where}: not an fmlab sweep")
        if not isinstance(data.get("version"), int) or data["version"] > VERSION:
            raise SweepError(
                f"{where}: written by a newer fmlab (sweep version {visible(repr(data.get('version')))})"
            )
        if not is_safe_session_id(str(data["id"])):
            raise SweepError(f"{where}: sweep id {visible(repr(data['id']))} cannot name a file")
        runs = data["runs"]
        pid, host = data.get("pid", 0), data.get("host", "")
        return SweepRecord(
            id=str(data["id"]),
            table=data["table"],
            preset=data["preset"],
            grid=data["grid"],
            configs=[config_from_dict(r["config"]) for r in runs],
            rows=[RunRow.from_dict(r["result"]) if r["result"] else None for r in runs],
            # records before 0.2 named a run's session in its result only
            sessions=[
                _session_id(r.get("session") or (r["result"] or {}).get("session") or None) for r in runs
            ],
            stacked=bool(data.get("stacked", data.get("batched", True))),  # "batched" before 0.2
            status=effective_status(str(data["status"]), pid, host)
            if isinstance(pid, int)
            else "interrupted",
            created=str(data["created"]),
            seconds=float(data["seconds"]),
            pid=pid if isinstance(pid, int) else 0,
            host=str(host),
            path=path,
        )
    except SweepError:
        raise
    except NotRegularFile as exc:
        raise SweepError(f"{where}: {exc}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise SweepError(f"{where}: cannot read sweep ({type(exc).__name__}: {visible(exc)})") from None


def _session_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "/" in value or "\\" in value or value.startswith("."):
        raise ValueError(f"session {value!r} is not a session id")
    return value


def new_sweep_id(name: str) -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-sweep-{name}"


def list_sweeps(sessions_dir: Path) -> tuple[list[SweepRecord], list[str]]:
    """The sweep records saved beside a sessions folder, newest first, and one
    line per file that cannot be read."""
    folder = sweeps_dir(sessions_dir)
    good, bad = [], []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            good.append(load_sweep(path))
        except SweepError as exc:
            bad.append(str(exc))
    good.sort(key=lambda r: (r.created, r.id), reverse=True)
    return good, bad


def sweeps_dir(sessions_dir: Path) -> Path:
    """Sweep records live beside the sessions, in their own folder, so session
    listings (which read ``*.json`` in the sessions folder) never meet them."""
    return Path(sessions_dir) / "sweeps"


def find_sweep(sessions_dir: Path, ref: str) -> Path:
    """A sweep record from its id or a unique prefix of it (matched
    literally), or ``latest``, ``-1`` (the same), ``-2``... counted from the
    newest."""
    folder = sweeps_dir(sessions_dir)
    names = sorted(p.name[:-5] for p in folder.glob("*.json")) if folder.is_dir() else []
    if ref in names:
        return folder / f"{ref}.json"
    newest = 1 if ref == "latest" else int(match.group(1)) if (match := NEWEST.fullmatch(ref)) else None
    if newest is not None:
        # ids start with the time they were made: the newest sort last
        if newest > len(names):
            have = "is only 1 sweep" if len(names) == 1 else f"are only {len(names)} sweeps"
            raise SweepError(f"there {have} in {folder}" if names else f"no sweeps in {folder}")
        return folder / f"{sorted(names, key=lambda n: (_created(folder / f'{n}.json'), n))[-newest]}.json"
    matches = [name for name in names if name.startswith(ref)]
    if len(matches) == 1:
        return folder / f"{matches[0]}.json"
    if not matches:
        raise SweepError(f"no sweep {ref!r} in {folder}")
    raise SweepError(f"{ref!r} matches {len(matches)} sweeps in {folder}; give more of the id")


def _created(path: Path) -> str:
    """When a sweep record says it was made ("" when it cannot be read)."""
    try:
        return str(load_sweep(path).created)
    except SweepError:
        return ""


class Sweep:
    """Trains a sweep record's pending runs into ``sessions_dir`` and keeps the
    record on disk up to date. ``Sweep.new`` starts one, ``Sweep.resume``
    continues one; ``rows[i]`` is set once run i's RunFinished was yielded."""

    def __init__(self, record: SweepRecord, sessions_dir: Path,
                 on_warning: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.record = record
        self.sessions_dir = Path(sessions_dir)
        self.on_warning = on_warning
        self.unsaved: list[str] = []  # runs whose session could not be saved in the end

    @classmethod
    def new(cls, configs: Sequence[RunConfig], sessions_dir: Path, *, table: str = "grid",
            preset: str | None = None, grid: dict | None = None, stacked: bool = True,
            record_path: Path | None = None, on_warning: Callable[[str], None] | None = None) -> Sweep:  # fmt: skip
        record = SweepRecord(
            id=new_sweep_id(preset or "grid"),
            table=table,
            preset=preset,
            grid=grid or {},
            configs=list(configs),
            rows=[None] * len(configs),
            sessions=[None] * len(configs),
            stacked=stacked,
            created=datetime.now().astimezone().isoformat(timespec="seconds"),
        )
        record.path = record_path or sweeps_dir(sessions_dir) / f"{record.id}.json"
        return cls(record, sessions_dir, on_warning)

    @classmethod
    def resume(cls, record_path: Path, sessions_dir: Path,
               on_warning: Callable[[str], None] | None = None) -> Sweep:  # fmt: skip
        """Continue the sweep saved at ``record_path`` (SweepError if unreadable,
        or if it trains a user's module: a path read from a file is never run)."""
        record = load_sweep(record_path)
        module = next((c.model.module for c in record.configs if c.model.module is not None), None)
        if module is not None:
            raise SweepError(
                f"sweep {record.id} trains your module {visible(module.name)}; fmlab runs a module file only "
                "when you name it: run the sweep again with --model"
            )
        return cls(record, sessions_dir, on_warning)

    @property
    def rows(self) -> list[RunRow | None]:
        return self.record.rows

    def session_path(self, index: int) -> Path | None:
        session = self.record.sessions[index]
        return self.sessions_dir / f"{session}.json" if session else None

    def run(self, datasets: DatasetCache, cancel: threading.Event | None = None,
            train_limit: int | None = None, stacks: StackRunner | None = None) -> Iterator[tuple[int, Event]]:  # fmt: skip
        """Train the pending runs; yields ``(position, event)``. SweepError when
        another process is training this sweep. ``stacks`` trains the stacks
        (fmlab.trainer.jobs.StackRunner; here, one after another, unless given)."""
        lock = SessionLock(self.record.path)
        try:
            lock.acquire()
        except SessionBusy:
            raise SweepError(f"sweep {self.record.id} is being trained by another process") from None
        except OSError:
            pass  # an unwritable folder: the record's own save will say so
        started = time.perf_counter()
        before = self.record.seconds
        cancel = cancel or threading.Event()
        self.record.status, self.record.pid, self.record.host = "running", os.getpid(), socket.gethostname()
        service = JobService(self.sessions_dir, datasets, stacked=self.record.stacked,
                             train_limit=train_limit, on_warning=self.on_warning, stacks=stacks)  # fmt: skip
        jobs, positions = self._jobs(service)
        self._save()
        try:
            for slot, event in service.run(jobs, cancel):
                index = positions[slot]
                if isinstance(event, RunStarted):
                    path = service.session_path(slot)
                    self.record.sessions[index] = path.stem if path else None
                    self._save()
                elif isinstance(event, RunFinished):
                    self.rows[index] = RunRow.from_record(service.recorders[slot].record)
                    self.record.seconds = before + time.perf_counter() - started
                    self._save()
                yield index, event
        finally:
            self.unsaved = service.unsaved()
            self.record.seconds = before + time.perf_counter() - started
            done = not self.record.pending()
            self.record.status = "completed" if done and not cancel.is_set() else "stopped"
            self._save()
            lock.release()

    def _jobs(self, service: JobService) -> tuple[list[Job], list[int]]:
        """A job per pending position: resumed from its session's checkpoint
        where it has one, else from the start."""
        jobs, positions = [], []
        for index in self.record.pending():
            job = self._resumed(index, service)
            if job is None and self.rows[index] is not None and self.rows[index].status in FINISHED:
                continue  # it had finished after all
            jobs.append(job or Job(self.record.configs[index]))
            positions.append(index)
        return jobs, positions

    def _resumed(self, index: int, service: JobService) -> Job | None:
        path = self.session_path(index)
        if path is None or not path.is_file():
            return None
        try:
            record = load(path)
        except SessionError as exc:
            self._warn(f"{exc}; training that run again from the start")
            return None
        if record.status in FINISHED:  # killed after the run ended, before the record was saved
            self.rows[index] = RunRow.from_record(record)
            return None
        if not record.epochs:  # cut off in its first epoch: nothing to keep
            path.unlink(missing_ok=True)
            return None
        job = None
        try:
            job = resume_job(path)
            service.check_resumed(job)
        except JobError as exc:
            if job is not None:
                job.resume.lock.release()
            self._warn(f"{exc}; training that run again from the start")
            return None
        return job

    def _warn(self, message: str) -> None:
        if self.on_warning:
            self.on_warning(message)

    def _save(self) -> None:
        try:
            self.record.save()
        except OSError as exc:
            self._warn(f"cannot save {self.record.path}: {exc.strerror or exc}")


def finished_rows(rows: Sequence[RunRow | None]) -> list[RunRow]:
    """The rows of runs that ended on their own (not stopped, failed or cut off)."""
    return [row for row in rows if row is not None and row.status in FINISHED]


def records_of(rows: Sequence[RunRow]) -> list[SessionRecord]:
    """The session records behind rows (for figures); unreadable ones are skipped."""
    records = []
    for row in rows:
        try:
            records.append(load(Path(row.path)))
        except SessionError:
            continue
    return records
