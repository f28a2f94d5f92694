"""Sweeps: a list of run configs trained together where they can be, each
saved as an ordinary session, plus one sweep record that says what was asked
and what each run gave.

This module does not import torch at import time.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fmlab.trainer.atomic import write_atomic
from fmlab.trainer.config import RunConfig, config_from_dict, config_to_dict
from fmlab.trainer.events import Event, RunFinished
from fmlab.trainer.sessions import SessionRecord, SessionRecorder, load
from fmlab.trainer.studies.tables import FINISHED, RunRow

if TYPE_CHECKING:
    from fmlab.trainer.data import FashionMNIST

SCHEMA = "fmlab.sweep"
VERSION = 1
MAX_STACK = 16  # members per stacked group; more share nothing but memory


# ----------------------------------------------------------------- the record


@dataclass
class SweepRecord:
    """The sweep file: what was asked and what each run gave."""

    id: str
    table: str
    preset: str | None
    grid: dict
    configs: list[RunConfig]
    rows: list[RunRow | None]  # by config position; None until that run ends
    batched: bool = True
    status: str = "running"
    created: str = ""
    seconds: float = 0.0
    path: Path | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema": SCHEMA,
                "version": VERSION,
                "id": self.id,
                "status": self.status,
                "created": self.created,
                "preset": self.preset,
                "table": self.table,
                "batched": self.batched,
                "seconds": self.seconds,
                "grid": self.grid,
                "runs": [
                    {"config": config_to_dict(c), "result": r.to_dict() if r else None}
                    for c, r in zip(self.configs, self.rows)
                ],
            },
            indent=1,
            allow_nan=False,
        )

    def save(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, self.to_json() + "\n")


class SweepError(Exception):
    """A sweep file that cannot be used; the message names file and problem."""


def load_sweep(path: Path) -> SweepRecord:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA:
            raise SweepError(f"{path}: not an fmlab sweep")
        if data.get("version", 0) > VERSION:
            raise SweepError(f"{path}: written by a newer fmlab (sweep version {data['version']})")
        runs = data["runs"]
        return SweepRecord(
            id=data["id"],
            table=data["table"],
            preset=data["preset"],
            grid=data["grid"],
            configs=[config_from_dict(r["config"]) for r in runs],
            rows=[RunRow.from_dict(r["result"]) if r["result"] else None for r in runs],
            batched=data["batched"],
            status=data["status"],
            created=data["created"],
            seconds=data["seconds"],
            path=Path(path),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, SweepError):
            raise
        raise SweepError(f"{path}: cannot read sweep ({type(exc).__name__}: {exc})") from None


def new_sweep_id(name: str) -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-sweep-{name}"


def sweeps_dir(sessions_dir: Path) -> Path:
    """Sweep records live beside the sessions, in their own folder, so session
    listings (which read ``*.json`` in the sessions folder) never meet them."""
    return Path(sessions_dir) / "sweeps"


# ----------------------------------------------------------------- training


def plan_groups(configs: Sequence[RunConfig], batched: bool) -> list[list[int]]:
    """Config positions grouped into what trains together, in grid order; a
    one-member group goes through the engine."""
    from fmlab.trainer.training.stack import can_batch, group_key

    if not batched:
        return [[i] for i in range(len(configs))]
    groups: list[list[int]] = []
    open_groups: dict[tuple, list[int]] = {}
    for index, config in enumerate(configs):
        if not can_batch(config):
            groups.append([index])
            continue
        key = group_key(config)
        group = open_groups.get(key)
        if group is None or len(group) >= MAX_STACK:
            group = open_groups[key] = []
            groups.append(group)
        group.append(index)
    return groups


def train_configs(
    configs: Sequence[RunConfig],
    data: FashionMNIST,
    cancel: threading.Event | None = None,
    batched: bool = True,
) -> Iterator[tuple[int, Event]]:
    """Train every config, yielding ``(position, event)``; stacked where possible."""
    from fmlab.trainer.training import loop as engine
    from fmlab.trainer.training.stack import run_batched

    cancel = cancel or threading.Event()
    for group in plan_groups(configs, batched):
        if cancel.is_set():
            return
        if len(group) == 1:
            for event in engine.run(configs[group[0]], data, cancel):
                yield group[0], event
        else:
            for position, event in run_batched([configs[i] for i in group], data, cancel):
                yield group[position], event


def find_finished(sessions_dir: Path, config: RunConfig) -> SessionRecord | None:
    """A session in ``sessions_dir`` that already ran ``config`` to its end."""
    from fmlab.trainer.sessions import SessionError, list_sessions

    wanted = config_to_dict(config)
    summaries, _ = list_sessions(Path(sessions_dir))
    for summary in summaries:
        if summary.status not in FINISHED:
            continue
        try:
            record = load(summary.path)
        except SessionError:
            continue
        if config_to_dict(record.config) == wanted:
            return record
    return None


class Sweep:
    """Trains a list of configs, saving each run as a session in ``sessions_dir``
    and the sweep record in ``record_path``; with ``resume``, runs whose
    finished session is already in ``sessions_dir`` are taken from it instead."""

    def __init__(
        self,
        configs: Sequence[RunConfig],
        sessions_dir: Path,
        *,
        table: str = "grid",
        preset: str | None = None,
        grid: dict | None = None,
        record_path: Path | None = None,
        batched: bool = True,
        resume: bool = False,
        on_save_error: Callable[[str], None] | None = None,
    ) -> None:
        self.sessions_dir = Path(sessions_dir)
        self.on_save_error = on_save_error
        self.resume = resume
        name = preset or "grid"
        self.record = SweepRecord(
            id=new_sweep_id(name),
            table=table,
            preset=preset,
            grid=grid or {},
            configs=list(configs),
            rows=[None] * len(configs),
            batched=batched,
            created=datetime.now().astimezone().isoformat(timespec="seconds"),
        )
        self.record.path = record_path or sweeps_dir(self.sessions_dir) / f"{self.record.id}.json"
        self.recorders: dict[int, SessionRecorder] = {}

    @property
    def rows(self) -> list[RunRow | None]:
        return self.record.rows

    def reused(self) -> list[int]:
        """Positions already finished in an earlier attempt (with ``resume``)."""
        if not self.resume:
            return []
        done = []
        for index, config in enumerate(self.record.configs):
            if self.rows[index] is None:
                found = find_finished(self.sessions_dir, config)
                if found is not None:
                    self.rows[index] = RunRow.from_record(found)
                    done.append(index)
        return done

    def run(self, data: FashionMNIST, cancel: threading.Event | None = None) -> Iterator[tuple[int, Event]]:
        """Train what is not done yet; yields ``(position, event)``. The row for a
        position is in ``rows`` once its RunFinished has been yielded."""
        started = time.perf_counter()
        todo = [i for i, row in enumerate(self.rows) if row is None]
        self._save()
        cancel = cancel or threading.Event()
        try:
            configs = [self.record.configs[i] for i in todo]
            for position, event in train_configs(configs, data, cancel, self.record.batched):
                index = todo[position]
                recorder = self.recorders.get(index)
                if recorder is None:
                    recorder = self.recorders[index] = SessionRecorder(self.sessions_dir, self.on_save_error)
                recorder(event)
                if isinstance(event, RunFinished):
                    assert recorder.record is not None
                    self.rows[index] = RunRow.from_record(recorder.record)
                    self.record.seconds = time.perf_counter() - started
                    self._save()
                yield index, event
        finally:
            self.record.seconds = time.perf_counter() - started
            done = all(row is not None for row in self.rows)
            self.record.status = "completed" if done and not cancel.is_set() else "stopped"
            self._save()

    def _save(self) -> None:
        try:
            self.record.save()
        except OSError as exc:
            if self.on_save_error:
                self.on_save_error(f"cannot save {self.record.path}: {exc.strerror or exc}")


def finished_rows(rows: Sequence[RunRow | None]) -> list[RunRow]:
    """The rows of runs that ended on their own (not stopped, failed or cut off)."""
    return [row for row in rows if row is not None and row.status in FINISHED]


def records_of(rows: Sequence[RunRow]) -> list[SessionRecord]:
    """The session records behind rows (for figures); unreadable ones are skipped."""
    from fmlab.trainer.sessions import SessionError

    records = []
    for row in rows:
        try:
            records.append(load(Path(row.path)))
        except SessionError:
            continue
    return records
