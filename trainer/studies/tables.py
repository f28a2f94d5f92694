"""Sweep results as tables: one RunRow per finished run, the columns that
answer each question, written as Markdown, CSV or JSON (row by row as runs
finish, for the first two)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TextIO

from fmlab.trainer.config import ARCH_PRESETS, RunConfig
from fmlab.trainer.fields import config_from_dict, config_to_dict
from fmlab.trainer.sessions import SessionRecord

FORMATS = ("markdown", "csv", "json")
TABLES = ("lr", "convergence", "architectures", "grid")


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
