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

from fmlab.trainer.analysis import FINAL_BELOW_BEST
from fmlab.trainer.config import ARCH_PRESETS, RunConfig
from fmlab.trainer.fields import config_from_dict, config_to_dict
from fmlab.trainer.sessions import SessionRecord
from fmlab.trainer.studies.reference import reference_accuracy, reference_parameters

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
    best_epoch: int | None = None  # of the best test accuracy (None in records from before it was kept)

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
            best_epoch=results.best_epoch if results else None,
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["config"] = config_to_dict(self.config)
        data["params"] = self.config.model.num_params
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunRow:
        """A row as a sweep file holds it; TypeError or KeyError when a value
        is not of its kind (a sweep file is as untrusted as a session)."""
        optional = {"best_epoch"}  # absent in sweep records written before it was kept
        values = {
            k: data[k] for k in cls.__dataclass_fields__ if k != "config" and (k in data or k not in optional)
        }
        for key, kinds in ROW_KINDS.items():
            value = values.get(key)
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise TypeError(f"run result {key!r} is {type(value).__name__}, not a {kinds[0].__name__}")
        return cls(config=config_from_dict(data["config"]), **values)


ROW_KINDS = {
    "session": (str,),
    "path": (str,),
    "status": (str,),
    "final_test_acc": (float, int, type(None)),
    "best_test_acc": (float, int, type(None)),
    "converged_epoch": (int, type(None)),
    "epochs_done": (int,),
    "seconds": (float, int),
    "best_epoch": (int, type(None)),
}


def structure(config: RunConfig) -> str:
    if not config.model.is_mlp:
        return config.model.name  # a stack's preset or layers, a module's FILE.py:FACTORY
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


def _two(value: float) -> float:
    """An accuracy as the tables print it: differences are taken between printed
    values, so every number a reader sees follows from the others."""
    return round(value, 2)


def below_best(row: RunRow) -> float | None:
    """How far the final accuracy is under the best, in points (as printed)."""
    if row.final_test_acc is None or row.best_test_acc is None:
        return None
    return round(_two(row.best_test_acc) - _two(row.final_test_acc), 2)


def final_marked(row: RunRow) -> bool:
    """The final accuracy is more than FINAL_BELOW_BEST points under the best:
    the run ends below what it reached, and its last number understates it."""
    below = below_best(row)
    return below is not None and below > FINAL_BELOW_BEST


def final_cell(row: RunRow) -> str:
    """The final accuracy (marked like accuracy_cell), and how far under the
    best it is when that is more than FINAL_BELOW_BEST points."""
    cell = accuracy_cell(row)
    return cell + (f" ({below_best(row):.2f} below best)" if final_marked(row) else "")


def best_cell(row: RunRow) -> str:
    if row.best_test_acc is None:
        return "-"
    return f"{row.best_test_acc:.2f}" + (f" (epoch {row.best_epoch})" if row.best_epoch is not None else "")


@dataclass(frozen=True)
class Column:
    header: str
    text: Callable[[RunRow], str]  # for Markdown / the terminal
    value: Callable[[RunRow], object]  # for CSV / JSON
    name: str = ""  # the CSV / JSON key, for a column made outside COLUMNS


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
    "final": Column("fmlab final (%)", final_cell, lambda r: r.final_test_acc),
    "best": Column("fmlab best (%)", best_cell, lambda r: r.best_test_acc),
}
CSV_NAMES = {"accuracy": "accuracy", "epoch": "converged_epoch", "params": "parameters",
             "final": "final_accuracy", "best": "best_accuracy"}  # fmt: skip


def reference_columns(table: str) -> list[Column]:
    """The reference's test accuracy beside fmlab's final one, and the
    difference (fmlab final - reference, in points, as printed)."""

    def reference(row: RunRow):
        return reference_accuracy(table, row.config)

    def difference(row: RunRow) -> float | None:
        ref = reference(row)
        if ref is None or ref.value is None or row.final_test_acc is None:
            return None
        return round(_two(row.final_test_acc) - ref.value, 2)

    return [
        Column("reference (%)", lambda r: reference(r).cell() if reference(r) else "-",
               lambda r: reference(r).value if reference(r) else None, "reference"),
        Column("difference", lambda r: "-" if difference(r) is None else f"{difference(r):+.2f}", difference,
               "difference"),
    ]  # fmt: skip


def study_columns(table: str) -> list[str | Column]:
    """A reference study's table: fmlab's final accuracy beside the reference's
    and the difference, then fmlab's best accuracy with its epoch."""
    reference, difference = reference_columns(table)
    if table == "lr":
        return ["lr", reference, "final", difference, "best"]
    if table == "convergence":
        return ["lr", reference, "final", difference, "best", "epoch"]
    if table == "architectures":
        return ["structure", reference, "final", difference, "best"]
    return table_columns(table)


def parameter_columns() -> list[str | Column]:
    """Parameters per structure: fmlab's count, the reference's, the difference."""

    def difference(row: RunRow) -> int | None:
        ref = reference_parameters(row.config)
        return None if ref is None else row.config.model.num_params - ref

    return [
        "structure",
        Column("fmlab", lambda r: f"{r.config.model.num_params:,}", lambda r: r.config.model.num_params, "parameters"),
        Column("reference", lambda r: f"{reference_parameters(r.config):,}" if reference_parameters(r.config) else "-",
               lambda r: reference_parameters(r.config), "reference"),
        Column("difference", lambda r: "-" if difference(r) is None else ("0 (match)" if difference(r) == 0 else f"{difference(r):+,}"),
               difference, "difference"),
    ]  # fmt: skip


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

    def __init__(self, columns: Sequence[str | Column], fmt: str, stream: TextIO) -> None:
        self.columns, self.fmt, self.stream = list(columns), fmt, stream
        self.rows: list[RunRow] = []
        self.started = False

    def header(self) -> None:
        self.started = True
        if self.fmt == "markdown":
            self._write(_markdown_line([_column(c).header for c in self.columns]))
            self._write(_markdown_line(["---"] * len(self.columns)))
        elif self.fmt == "csv":
            self._write(_csv_line([_key(c) for c in self.columns]))

    def row(self, row: RunRow) -> None:
        if not self.started:
            self.header()
        self.rows.append(row)
        if self.fmt == "markdown":
            self._write(_markdown_line([_column(c).text(row) for c in self.columns]))
        elif self.fmt == "csv":
            self._write(_csv_line([_column(c).value(row) for c in self.columns]))

    def close(self) -> None:
        if not self.started:
            self.header()
        if self.fmt == "json":
            self.stream.write(json_table(self.columns, self.rows) + "\n")
        self.stream.flush()

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


def _column(column: str | Column) -> Column:
    return COLUMNS[column] if isinstance(column, str) else column


def _key(column: str | Column) -> str:
    """The column's CSV / JSON name."""
    return CSV_NAMES.get(column, column) if isinstance(column, str) else column.name


def _markdown_line(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _csv_line(cells: list[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(["" if c is None else c for c in cells])
    return buffer.getvalue()


def json_table(columns: Sequence[str | Column], rows: Sequence[RunRow]) -> str:
    items = []
    for row in rows:
        item = {_key(c): _column(c).value(row) for c in columns}
        item.update(status=row.status, note=outcome(row), session=row.session)
        items.append(item)
    return json.dumps(items, indent=2, allow_nan=False)


def table_text(columns: Sequence[str | Column], rows: Sequence[RunRow], fmt: str) -> str:
    """The whole table as one string in ``fmt``."""
    buffer = io.StringIO()
    writer = TableWriter(columns, fmt, buffer)
    writer.header()
    for row in rows:
        writer.row(row)
    writer.close()
    return buffer.getvalue()
