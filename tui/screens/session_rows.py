"""What the sessions browser's table holds: a row per session (its cells
shown literally), the files that could not be read, sorting and filtering,
and the reading its thread workers do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fmlab.trainer.sessions import ListingCache, SessionError, SessionRecord, SessionSummary, load
from fmlab.tui.literal import cell


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  # fixed: an auto-width table measures every cell of every row on each fill
    sort: Callable[[SessionSummary], object] | None = None


def _or_low(value: float | None) -> float:
    return value if value is not None else -1.0


def _data_share(summary: SessionSummary) -> float:
    """The share of the training split a run trained on (-1: not recorded)."""
    data = summary.train_data
    return data.images / data.of if data is not None else -1.0


PARTIAL = "◔"  # the flag of a run trained on only part of the training split
BEST_WIDTH = 8  # "89.04@47"

# The first nine fit 80 terminal columns (each column also takes two cells of
# padding): status shows its first 9 cells there ("completed", "interrupt"),
# all 11 in a wider terminal, so that the best epoch and the data flag fit.
COLUMNS = (
    Column("mark", "", 2),  # marked (✓) or unreadable (!), then PARTIAL
    Column("when", "when", 11, lambda s: (s.created, s.id)),
    Column("arch", "arch", 7, lambda s: s.arch),
    Column("lr", "lr", 6, lambda s: s.lr),
    Column("epochs", "epochs", 7, lambda s: (s.epochs_done, s.epochs)),
    Column("final", "final", 6, lambda s: _or_low(s.final_test_acc)),
    Column("best", "best", BEST_WIDTH, lambda s: _or_low(s.best_test_acc)),
    Column("conv", "conv", 5, lambda s: s.converged_epoch if s.converged_epoch is not None else 10**9),
    Column("status", "status", 11, lambda s: s.status),
    # past 80 columns (the detail line under the table shows them too)
    Column("data", "data", 12, _data_share),
    Column("bs", "bs", 5, lambda s: s.batch_size),
    Column("opt", "opt", 5, lambda s: s.optimizer),
    Column("seed", "seed", 6, lambda s: s.seed),
    Column("id", "id", 34, lambda s: s.id),
)
SORT_KEYS = {column.key: column.sort for column in COLUMNS if column.sort is not None}


@dataclass(frozen=True)
class Unreadable:
    """A session file that could not be read, and why."""

    key: str
    path: Path
    problem: str

    @property
    def name(self) -> str:
        return self.path.name


class LoadFailed(Exception):
    """A listed session that could not be read in full."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(problem)
        self.path = path


def list_folder(cache: ListingCache, directory: Path) -> tuple[tuple, str]:
    """The folder's listing, and a note when the folder is not one."""
    note = f"{directory} is not a folder" if directory.exists() and not directory.is_dir() else ""
    return cache.listing(directory), note


def load_all(summaries: list[SessionSummary]) -> list[SessionRecord]:
    records = []
    for summary in summaries:
        try:
            records.append(load(summary.path))
        except SessionError as exc:
            raise LoadFailed(summary.path, str(exc)) from None
    return records


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def best_of(summary: SessionSummary) -> str:
    """The best test accuracy and its epoch, ``89.04@47``, in BEST_WIDTH
    cells: a long run's epoch takes the accuracy's last decimals (the
    table would cut the epoch's digits instead)."""
    if summary.best_test_acc is None or summary.best_epoch is None:
        return percent(summary.best_test_acc)  # files from before the epoch was recorded
    for decimals in (2, 1, 0):
        text = f"{summary.best_test_acc:.{decimals}f}@{summary.best_epoch}"
        if len(text) <= BEST_WIDTH:
            break
    return text


def flags_of(summary: SessionSummary, marked: bool) -> str:
    return ("✓" if marked else " ") + (PARTIAL if summary.partial_data else " ")


def data_of(summary: SessionSummary) -> str:
    return summary.train_data.short() if summary.train_data is not None else "-"


def data_words(summary: SessionSummary) -> str:
    """For the detail line: how much of the training split the run used."""
    if summary.train_data is None:
        return ""  # files from before it was recorded
    return (
        f"{PARTIAL} {summary.train_data.describe()}"
        if summary.partial_data
        else summary.train_data.describe()
    )


def row_of(summary: SessionSummary, marked: bool) -> tuple:
    return (
        flags_of(summary, marked),
        cell(summary.created[5:16].replace("T", " ")),
        cell(summary.arch),
        f"{summary.lr:g}",
        f"{summary.epochs_done}/{summary.epochs}",
        percent(summary.final_test_acc),
        best_of(summary),
        "-" if summary.converged_epoch is None else str(summary.converged_epoch),
        cell(summary.status),
        data_of(summary),
        str(summary.batch_size),
        cell(summary.optimizer),
        str(summary.seed),
        cell(summary.id),
    )


def unreadable_row(bad: Unreadable) -> list:
    """A warning row: the flag, "unreadable" under status and the file's name under id."""
    cells = {"mark": "!", "status": cell("unreadable", "bold red"), "id": cell(bad.name)}
    return [cells.get(column.key, "") for column in COLUMNS]


def key_of(summary: SessionSummary) -> str:
    """Rows are keyed by file: a copied file can repeat a session's id."""
    return str(summary.path)


# What the filter matches: each field's text, by the name a word may give it.
FILTER_FIELDS: dict[str, Callable[[SessionSummary], str]] = {
    "arch": lambda s: s.arch,
    "lr": lambda s: f"{s.lr:g}",
    "bs": lambda s: str(s.batch_size),
    "opt": lambda s: s.optimizer,
    "seed": lambda s: str(s.seed),
    "status": lambda s: s.status,
    "study": lambda s: s.study,
    "data": lambda s: "partial" if s.partial_data else "all" if s.train_data is not None else "",
    "id": lambda s: s.id,
}
WORDS = ("arch", "opt", "status", "study", "data")  # a bare word may be the start of one of these
TEXT_FIELDS = ("arch", "opt", "status", "study", "id")  # field:value finds value anywhere in these
FILTER_HINT = "filter: base 0.1 adam stopped (whole values) · lr:0.1 bs:64 seed:1 id:3f (/)"


def matches(summary: SessionSummary, text: str) -> bool:
    """Whether every word of ``text`` matches a field of the session.

    A bare word is a field's whole value (``0.1`` is an lr, ``64`` a batch
    size or a seed), or the start of an arch, optimizer, status, study or
    data (``stop`` finds stopped runs, ``partial`` the runs trained on part
    of the training split); it is not looked for inside ids, whose digits
    are a time. ``field:value`` looks in that field only (``data:partial``),
    and in an id or a study anywhere (``id:3f``)."""
    for word in text.lower().split():
        name, colon, value = word.partition(":")
        if colon and name in FILTER_FIELDS:
            found = FILTER_FIELDS[name](summary).lower()
            if not (value in found if name in TEXT_FIELDS else found == value or not value):
                return False
            continue
        values = {key: get(summary).lower() for key, get in FILTER_FIELDS.items() if key != "id"}
        if not any(v == word or (key in WORDS and v.startswith(word)) for key, v in values.items()):
            return False
    return True
