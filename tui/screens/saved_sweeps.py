"""Pick a saved sweep to reopen in the sweep view: those of a folder, a
sessions folder or a ``fmlab reproduce`` folder (whose sweeps are its
studies). Dismisses with the chosen sweep and where its sessions are, or None.

Sweep files are untrusted like sessions: they are read in a thread (a large
one cannot hold the screen) and what they hold is shown literally.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from fmlab.trainer.events import FINISHED
from fmlab.trainer.studies.saved import SweepFolder
from fmlab.trainer.studies.sweep import SweepRecord
from fmlab.tui.literal import cell, literal
from fmlab.tui.screens.terminal_sized import TerminalSized


@dataclass(frozen=True)
class SavedSweepChoice:
    sweep: SweepRecord
    sessions_dir: Path  # where its runs' sessions are


class SavedSweepsScreen(TerminalSized, ModalScreen[SavedSweepChoice | None]):
    CSS_PATH = "dialog.tcss"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", tooltip="Close without opening a sweep"),
    ]

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.shown: SweepFolder | None = None
        self.sweeps: list[SweepRecord] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="saved-sweeps"):
            yield Static("[b]Open a saved sweep[/b]", classes="dialog-text")
            with Horizontal(classes="dialog-row"):
                yield Label("folder")
                yield Input(str(self.folder), compact=True, id="saved-folder")
            yield Static(
                "Another folder (tab to it): a sessions folder, or a reproduce folder, whose sweeps are its studies.",
                classes="dialog-note",
            )
            yield DataTable(cursor_type="row", zebra_stripes=True, id="saved-table")
            yield Static("", id="saved-note", classes="dialog-note")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("when", 11), ("sweep", 14), ("runs", 5), ("status", 11)):
            table.add_column(label, width=width)
        self.list_folder(self.folder)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        self.list_folder(Path(text).expanduser() if text else self.folder)

    @work(thread=True, exclusive=True, exit_on_error=False, group="listing")
    def list_folder(self, folder: Path) -> None:
        place = SweepFolder.of(folder)
        sweeps, problems = place.records()
        self.app.call_from_thread(self.show_listing, place, sweeps, problems)

    def show_listing(self, place: SweepFolder, sweeps: list[SweepRecord], problems: list[str]) -> None:
        self.shown, self.sweeps = place, sweeps
        table = self.query_one(DataTable)
        table.clear()
        for index, sweep in enumerate(sweeps):
            done = sum(row is not None and row.status in FINISHED for row in sweep.rows)
            table.add_row(
                cell(sweep.created[5:16].replace("T", " ")),
                cell(sweep.preset or sweep.table),
                f"{done}/{len(sweep.rows)}",
                cell(sweep.status),
                key=str(index),
            )
        what = ("study", "studies") if place.reproduction else ("sweep", "sweeps")
        count = f"{len(sweeps)} {what[len(sweeps) != 1]}"
        note = f"{count} in {place.root}" if sweeps else f"no saved sweeps in {place.root}"
        if problems:
            note += f"; {len(problems)} unreadable, the first: {problems[0]}"
        self.query_one("#saved-note", Static).update(literal(note))
        if sweeps:
            table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.shown is None:
            return
        sweep = self.sweeps[int(event.row_key.value)]
        self.dismiss(SavedSweepChoice(sweep, self.shown.sessions))

    def action_cancel(self) -> None:
        self.dismiss(None)
