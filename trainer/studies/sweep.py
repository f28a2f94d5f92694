"""Sweeps: a grid of run configs, trained together where they can be, saved as
sessions plus one sweep record, and summed up in a results table.

- ``parse_grid`` turns option strings (``"1,0.1,0.01"``, ``"base,wider"``) into a
  validated :class:`SweepGrid`; ``expand`` lists its RunConfigs in a fixed order.
- ``PRESETS`` are the reference study's questions as grids plus the table that
  answers each (``lr``, ``convergence``, ``architectures``).
- :class:`Sweep` trains the configs (stacked via fmlab.trainer.training.stack where they
  share a shape, else one by one through the engine), records every run as an
  ordinary session and keeps the sweep record on disk up to date.
- ``table_text`` / :class:`TableWriter` print the results as Markdown, CSV or JSON.

This module does not import torch at import time.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from fmlab.trainer.config import (
    ARCH_PRESETS,
    ConfigError,
    RunConfig,
    config_from_dict,
    config_to_dict,
    parse_lr,
    parse_run_config,
    parse_widths,
)
from fmlab.trainer.events import Event, RunFinished
from fmlab.trainer.sessions.format import SessionRecord, SessionRecorder, load, write_atomic

if TYPE_CHECKING:
    from fmlab.trainer.data import FashionMNIST

SCHEMA = "fmlab.sweep"
VERSION = 1
FORMATS = ("markdown", "csv", "json")
TABLES = ("lr", "convergence", "architectures", "grid")
MAX_STACK = 16  # members per stacked group; more share nothing but memory
FINISHED = ("completed", "converged", "diverged")  # a run that needs no redo


# ----------------------------------------------------------------- the grid


@dataclass(frozen=True)
class SweepGrid:
    """Every list is one axis of the grid; the rest applies to every run."""

    archs: tuple[tuple[int, ...], ...] = (ARCH_PRESETS["base"],)
    lrs: tuple[float, ...] = (0.1,)
    batch_sizes: tuple[int, ...] = (64,)
    optimizers: tuple[str, ...] = ("sgd",)
    seeds: tuple[int, ...] = (0,)
    epochs: int = 10
    momentum: float = 0.0
    shuffle: bool = False
    device: str = "auto"
    threshold: float = 0.1
    patience: int = 3
    stop_on_converge: bool = False

    @property
    def size(self) -> int:
        return (
            len(self.archs) * len(self.lrs) * len(self.batch_sizes) * len(self.optimizers) * len(self.seeds)
        )


def split_list(text: object, field_name: str) -> list[str]:
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise ConfigError(field_name, f"{text!r} is not a comma-separated list")
    return parts


def split_archs(text: object) -> list[tuple[int, ...]]:
    """``base,wider`` (preset names), ``128,64`` (one net by its widths) or
    several nets separated by ``;`` or ``/`` such as ``base;128,64``."""
    text = str(text).strip()
    for separator in (";", "/"):
        if separator in text:
            return [parse_widths(part, "arch") for part in text.split(separator)]
    parts = [p.strip().lower() for p in text.split(",")]
    if parts and all(p in ARCH_PRESETS for p in parts):
        return [ARCH_PRESETS[p] for p in parts]
    return [parse_widths(text, "arch")]


def _unique(values: list, field_name: str) -> tuple:
    if len(set(values)) != len(values):
        raise ConfigError(field_name, "lists a value twice")
    return tuple(values)


def parse_grid(
    *,
    arch: object = "base",
    lr: object = "0.1",
    batch_size: object = "64",
    optimizer: object = "sgd",
    seed: object = "0",
    epochs: object = 10,
    momentum: object = 0.0,
    shuffle: object = False,
    device: object = "auto",
    threshold: object = 0.1,
    patience: object = 3,
    stop_on_converge: object = False,
) -> SweepGrid:
    """Validate raw option values into a SweepGrid; raises ConfigError naming the option."""
    grid = SweepGrid(
        archs=_unique(split_archs(arch), "arch"),
        lrs=_unique([parse_lr(v, "lr") for v in split_list(lr, "lr")], "lr"),
        batch_sizes=_unique(
            [_one(batch_size=v).batch_size for v in split_list(batch_size, "batch-size")], "batch-size"
        ),
        optimizers=_unique(
            [_one(optimizer=v).optimizer.name for v in split_list(optimizer, "optimizer")], "optimizer"
        ),
        seeds=_unique([_one(seed=v).seed for v in split_list(seed, "seed")], "seed"),
    )
    # the scalar options are checked by parse_run_config with the right field names
    probe = _one(
        epochs=epochs,
        shuffle=shuffle,
        device=device,
        threshold=threshold,
        patience=patience,
        stop_on_converge=stop_on_converge,
    )
    mom = _one(momentum=momentum).optimizer.momentum
    if mom and "adam" in grid.optimizers:
        raise ConfigError("momentum", "momentum applies to sgd only")
    return replace(
        grid,
        epochs=probe.epochs,
        momentum=mom,
        shuffle=probe.shuffle,
        device=probe.device,
        threshold=probe.convergence.threshold,
        patience=probe.convergence.patience,
        stop_on_converge=probe.convergence.stop,
    )


def _one(**values: object) -> RunConfig:
    return parse_run_config(**values)


def expand(grid: SweepGrid, **overrides: object) -> list[RunConfig]:
    """Every combination, architecture outermost and learning rate innermost,
    so runs that can share a stack sit next to each other."""
    configs = []
    for arch, batch, opt, seed, lr in itertools.product(
        grid.archs, grid.batch_sizes, grid.optimizers, grid.seeds, grid.lrs
    ):
        values = dict(
            arch=arch,
            lr=lr,
            epochs=grid.epochs,
            batch_size=batch,
            optimizer=opt,
            momentum=grid.momentum if opt == "sgd" else 0.0,
            seed=seed,
            shuffle=grid.shuffle,
            device=grid.device,
            threshold=grid.threshold,
            patience=grid.patience,
            stop_on_converge=grid.stop_on_converge,
        )
        values.update(overrides)
        configs.append(parse_run_config(**values))
    return configs


def grid_to_dict(grid: SweepGrid) -> dict:
    data = asdict(grid)
    data["archs"] = [list(a) for a in grid.archs]
    return data


# ----------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """One of the reference study's questions: the grid's defaults and the table."""

    name: str
    table: str
    summary: str
    options: dict[str, object]  # parse_grid keywords


PRESETS = {
    "lr": Preset(
        "lr",
        "lr",
        "test accuracy after 10 epochs for each learning rate",
        {"lr": "1,0.1,0.01,0.001", "arch": "base", "epochs": 10},
    ),
    "convergence": Preset(
        "convergence",
        "convergence",
        "the epoch each learning rate converges at, up to 100 epochs",
        {"lr": "0.1,0.01,0.001", "arch": "base", "epochs": 100, "threshold": 0.1, "patience": 3},
    ),
    "architectures": Preset(
        "architectures",
        "architectures",
        # the full 200 epochs: at the rule's first convergence base and wider are
        # still over 2 points short of where they end (measured)
        "base, deeper and wider at lr 0.01 for 200 epochs",
        {"lr": "0.01", "arch": "base,deeper,wider", "epochs": 200},
    ),
}


# ----------------------------------------------------------------- results


@dataclass(frozen=True)
class RunRow:
    """One finished run as a sweep lists it."""

    config: RunConfig
    session: str  # session id
    path: str  # the session file
    status: str
    final_test_acc: float | None
    best_test_acc: float | None
    converged_epoch: int | None
    epochs_done: int
    seconds: float

    @classmethod
    def pending(cls, config: RunConfig) -> RunRow:
        """A row for a run that has not finished: its config columns read as
        they will, its results are empty."""
        return cls(config, "", "", "pending", None, None, None, 0, 0.0)

    @classmethod
    def from_record(cls, record: SessionRecord) -> RunRow:
        results = record.results
        return cls(
            config=record.config,
            session=record.id,
            path=str(record.path or ""),
            status=record.status,
            final_test_acc=results.final_test_acc if results else None,
            best_test_acc=results.best_test_acc if results else None,
            converged_epoch=results.converged_epoch if results else None,
            epochs_done=results.epochs_done if results else 0,
            seconds=results.seconds if results else 0.0,
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["config"] = config_to_dict(self.config)
        data["params"] = self.config.model.num_params
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunRow:
        values = {k: data[k] for k in cls.__dataclass_fields__ if k != "config"}
        return cls(config=config_from_dict(data["config"]), **values)


def structure(config: RunConfig) -> str:
    widths = ",".join(str(w) for w in config.model.hidden)
    name = config.model.name
    return f"{name} ({widths})" if name in ARCH_PRESETS else f"({widths})"


# Ten classes: a run still under this test accuracy at its end has not learned
# the task (chance is 10%); the table says so rather than print a bare number.
NOT_LEARNED_BELOW = 25.0


def outcome(row: RunRow) -> str:
    """``""`` for a run that learned; else why not: its status, or "did not learn"."""
    if row.status not in ("completed", "converged"):
        return row.status
    if row.final_test_acc is None or row.final_test_acc < NOT_LEARNED_BELOW:
        return "did not learn"
    return ""


def accuracy_cell(row: RunRow) -> str:
    """The final test accuracy, marked when the run diverged or never learned."""
    note = outcome(row)
    if row.final_test_acc is None:
        return note
    return f"{row.final_test_acc:.2f}" + (f" ({note})" if note else "")


@dataclass(frozen=True)
class Column:
    header: str
    text: Callable[[RunRow], str]  # for Markdown / the terminal
    value: Callable[[RunRow], object]  # for CSV / JSON


COLUMNS = {
    "structure": Column("structure", lambda r: structure(r.config), lambda r: structure(r.config)),
    "arch": Column("arch", lambda r: r.config.model.name, lambda r: r.config.model.name),
    "lr": Column("lr", lambda r: f"{r.config.optimizer.lr:g}", lambda r: r.config.optimizer.lr),
    "batch": Column("batch", lambda r: str(r.config.batch_size), lambda r: r.config.batch_size),
    "optimizer": Column("optimizer", lambda r: r.config.optimizer.name, lambda r: r.config.optimizer.name),
    "seed": Column("seed", lambda r: str(r.config.seed), lambda r: r.config.seed),
    "accuracy": Column("accuracy (%)", accuracy_cell, lambda r: r.final_test_acc),
    "epoch": Column(
        "converged epoch",
        lambda r: "-" if r.converged_epoch is None else str(r.converged_epoch),
        lambda r: r.converged_epoch,
    ),
    "params": Column(
        "parameters", lambda r: f"{r.config.model.num_params:,}", lambda r: r.config.model.num_params
    ),
    "status": Column("status", lambda r: r.status, lambda r: r.status),
}
CSV_NAMES = {"accuracy": "accuracy", "epoch": "converged_epoch", "params": "parameters"}


AXES: dict[str, Callable[[RunConfig], object]] = {
    "arch": lambda c: c.model.hidden,
    "lr": lambda c: c.optimizer.lr,
    "batch": lambda c: c.batch_size,
    "optimizer": lambda c: c.optimizer.name,
    "seed": lambda c: c.seed,
}


def varying_axes(configs: Sequence[RunConfig]) -> list[str]:
    """The grid axes (as column names) whose value differs between ``configs``."""
    return [name for name, key in AXES.items() if len({key(c) for c in configs}) > 1]


def table_columns(table: str, configs: Sequence[RunConfig] = ()) -> list[str]:
    """The columns that answer the table's question; ``grid`` shows the axes
    that vary across ``configs`` plus accuracy, converged epoch and status."""
    if table == "lr":
        return ["lr", "accuracy"]
    if table == "convergence":
        return ["lr", "accuracy", "epoch"]
    if table == "architectures":
        return ["structure", "accuracy", "params"]
    return (varying_axes(configs) or ["arch", "lr"]) + ["accuracy", "epoch", "status"]


class TableWriter:
    """Writes a results table row by row as runs finish (Markdown, CSV), or all
    at once at the end (JSON, which is one document)."""

    def __init__(self, columns: list[str], fmt: str, stream: TextIO) -> None:
        self.columns, self.fmt, self.stream = columns, fmt, stream
        self.rows: list[RunRow] = []
        self.started = False

    def header(self) -> None:
        self.started = True
        if self.fmt == "markdown":
            self._write(_markdown_line([COLUMNS[c].header for c in self.columns]))
            self._write(_markdown_line(["---"] * len(self.columns)))
        elif self.fmt == "csv":
            self._write(_csv_line([CSV_NAMES.get(c, c) for c in self.columns]))

    def row(self, row: RunRow) -> None:
        if not self.started:
            self.header()
        self.rows.append(row)
        if self.fmt == "markdown":
            self._write(_markdown_line([COLUMNS[c].text(row) for c in self.columns]))
        elif self.fmt == "csv":
            self._write(_csv_line([COLUMNS[c].value(row) for c in self.columns]))

    def close(self) -> None:
        if not self.started:
            self.header()
        if self.fmt == "json":
            self.stream.write(json_table(self.columns, self.rows) + "\n")
        self.stream.flush()

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


def _markdown_line(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _csv_line(cells: list[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(["" if c is None else c for c in cells])
    return buffer.getvalue()


def json_table(columns: list[str], rows: Sequence[RunRow]) -> str:
    items = []
    for row in rows:
        item = {CSV_NAMES.get(c, c): COLUMNS[c].value(row) for c in columns}
        item.update(status=row.status, note=outcome(row), session=row.session)
        items.append(item)
    return json.dumps(items, indent=2, allow_nan=False)


def table_text(columns: list[str], rows: Sequence[RunRow], fmt: str) -> str:
    """The whole table as one string in ``fmt``."""
    buffer = io.StringIO()
    writer = TableWriter(columns, fmt, buffer)
    writer.header()
    for row in rows:
        writer.row(row)
    writer.close()
    return buffer.getvalue()


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
    from fmlab.trainer.sessions.format import SessionError, list_sessions

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
    from fmlab.trainer.sessions.format import SessionError

    records = []
    for row in rows:
        try:
            records.append(load(Path(row.path)))
        except SessionError:
            continue
    return records
