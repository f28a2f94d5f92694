"""What the sessions browser's table holds: a row per session (its cells
shown literally), the files that could not be read, sorting and filtering,
and the reading its thread workers do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fmlab.trainer.sessions import ListingCache, SessionError, SessionRecord, SessionSummary, load
from fmlab.tui.literal import cell

COLUMNS = ("", "when", "arch", "lr", "epochs", "final", "best", "conv", "status", "id")
# fixed widths: an auto-width table measures every cell of every row on each fill
WIDTHS = (1, 11, 8, 6, 7, 6, 6, 4, 11, 34)
SORT_KEYS = {
    "when": lambda s: (s.created, s.id),
    "arch": lambda s: s.arch,
    "lr": lambda s: s.lr,
    "final": lambda s: s.final_test_acc if s.final_test_acc is not None else -1.0,
    "best": lambda s: s.best_test_acc if s.best_test_acc is not None else -1.0,
    "status": lambda s: s.status,
}


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


def row_of(summary: SessionSummary, marked: bool) -> tuple:
    return (
        "✓" if marked else " ",
        cell(summary.created[5:16].replace("T", " ")),
        cell(summary.arch),
        f"{summary.lr:g}",
        f"{summary.epochs_done}/{summary.epochs}",
        percent(summary.final_test_acc),
        percent(summary.best_test_acc),
        "-" if summary.converged_epoch is None else str(summary.converged_epoch),
        cell(summary.status),
        cell(summary.id),
    )


def key_of(summary: SessionSummary) -> str:
    """Rows are keyed by file: a copied file can repeat a session's id."""
    return str(summary.path)


def matches(summary: SessionSummary, text: str) -> bool:
    haystack = f"{summary.id} {summary.arch} {summary.lr:g} {summary.optimizer} {summary.status}"
    return all(word in haystack.lower() for word in text.lower().split())
