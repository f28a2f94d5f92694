"""The sessions browser: saved runs in a sortable, filterable table.

Unreadable files show as warning rows (and one notification), never as a
crash. Actions work on the marked rows (space) or else the highlighted one.

The folder is untrusted: listing it, reading a session and deleting happen in
thread workers (a file there may be slow, or no file at all), and every id,
name and message from it is shown literally (tui.literal).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import Worker, WorkerState

from fmlab.trainer.sessions import ListingCache, SessionRecord, SessionSummary, delete_session
from fmlab.tui.literal import cell, literal, notify_literally, with_values
from fmlab.tui.screens.session_rows import (
    COLUMNS,
    SORT_KEYS,
    WIDTHS,
    LoadFailed,
    Unreadable,
    key_of,
    list_folder,
    load_all,
    matches,
    row_of,
)

FIRST_ROWS = 60


class SessionsScreen(Screen):
    CSS_PATH = "sessions.tcss"
    BINDINGS = [
        Binding("o", "open", "Open"),
        Binding("r", "replay", "Replay"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("e", "export", "Export"),
        Binding("d", "delete", "Delete"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("u", "reload", "Reload", show=False),
        Binding("escape", "leave_filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.summaries: list[SessionSummary] = []
        self.unreadable: list[Unreadable] = []
        self.marked: set[str] = set()
        self.sort_key = "when"
        self.descending = True
        self._warned: set[str] = set()
        self._listing: tuple | None = None  # what the table shows now
        self._folder_note = ""  # why the folder cannot be listed, if it cannot
        self._failed: dict[str, str] = {}  # listed files that failed a full read: key -> problem
        self._fills = 0  # counts fill() calls, so rows of a stale fill are dropped

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="filter: words in id, arch, lr, optimizer, status  (/)", compact=True, id="filter"
        )
        yield DataTable(cursor_type="row", zebra_stripes=True, id="sessions")
        yield Static("", id="session-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"sessions in {self.app.sessions_dir}"  # the header shows it literally
        table = self.query_one(DataTable)
        for label, width in zip(COLUMNS, WIDTHS):
            table.add_column(label, width=width)
        self.reload()
        self.query_one(DataTable).focus()

    def on_screen_resume(self) -> None:
        self.reload()

    # ------------------------------------------------------------ table

    def reload(self) -> None:
        """List the folder again, in a thread; the table follows when it is done."""
        self.list_in_background(self.app.listing, self.app.sessions_dir)

    @work(thread=True, exclusive=True, exit_on_error=False, group="listing")
    def list_in_background(self, cache: ListingCache, directory: Path) -> tuple[tuple, str]:
        return list_folder(cache, directory)

    def show_listing(self, listing: tuple, folder_note: str) -> None:
        if listing is self._listing and folder_note == self._folder_note:
            return  # nothing on disk changed since the last listing
        self._listing, self._folder_note = listing, folder_note
        self._failed.clear()  # the files may have changed: read them afresh
        summaries, problems = listing
        self.summaries = summaries
        self.unreadable = [Unreadable(f"unreadable-{i}", p.path, p) for i, p in enumerate(problems)]
        known = {key_of(s) for s in summaries}
        self.marked &= known
        fresh = [p for p in problems if p not in self._warned]
        if fresh:
            self._warned.update(fresh)
            more = f" (and {len(fresh) - 1} more)" if len(fresh) > 1 else ""
            notify_literally(
                self, fresh[0] + more, title="Unreadable session files", severity="warning", timeout=8
            )
        self.fill()

    def mark_unreadable(self, path: Path, problem: str) -> None:
        """A listed file failed a full read: show it as unreadable from now on."""
        self._failed[str(path)] = problem
        self.marked.discard(str(path))
        self.fill()

    def unreadable_rows(self) -> list[Unreadable]:
        failed = [Unreadable(key, Path(key), problem) for key, problem in self._failed.items()]
        return failed + self.unreadable

    def visible(self) -> list[SessionSummary]:
        text = self.query_one("#filter", Input).value
        rows = [s for s in self.summaries if matches(s, text) and key_of(s) not in self._failed]
        return sorted(rows, key=SORT_KEYS[self.sort_key], reverse=self.descending)

    def fill(self) -> None:
        table = self.query_one(DataTable)
        current = self.highlighted_key()
        table.clear()
        shown = self.visible()
        rows = [(row_of(s, key_of(s) in self.marked), key_of(s)) for s in shown]
        rows += [
            (["!", "", "", "", "", "", "", "", cell("unreadable", "bold red"), cell(bad.name)], bad.key)
            for bad in self.unreadable_rows()
        ]
        self._fills += 1
        # a screenful now, the rest after the first paint: the table measures
        # every cell it is given before it draws
        self.add_rows(self._fills, rows[:FIRST_ROWS], current)
        if len(rows) > FIRST_ROWS:
            self.set_timer(0.1, lambda fill=self._fills: self.add_rows(fill, rows[FIRST_ROWS:], current))
        self.query_one(
            DataTable
        ).border_subtitle = (
            f"{len(self.summaries)} sessions · sorted by {self.sort_key} {'↓' if self.descending else '↑'}"
        )
        self.show_detail()

    def add_rows(self, fill: int, rows: list[tuple[list[str], str]], current: str | None) -> None:
        if fill != self._fills:
            return  # a newer fill replaced this one
        table = self.query_one(DataTable)
        for cells, key in rows:
            table.add_row(*cells, key=key)
        if current is not None and current in {key for _, key in rows}:
            table.move_cursor(row=table.get_row_index(current))

    def highlighted_key(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # an empty or just-cleared table has no cursor row
            return None

    def show_detail(self) -> None:
        key = self.highlighted_key()
        detail = self.query_one("#session-detail", Static)
        bad = next((b for b in self.unreadable_rows() if b.key == key), None)
        summary = next((s for s in self.summaries if key_of(s) == key and key not in self._failed), None)
        if bad is not None:
            detail.update(with_values("[b red]unreadable:[/] $problem", problem=bad.problem))
        elif summary is not None:
            marks = f" · {len(self.marked)} marked" if self.marked else ""
            detail.update(
                with_values(
                    "[b]$id[/b]  $optimizer$marks\n$path",
                    id=summary.id,
                    optimizer=summary.optimizer,
                    marks=marks,
                    path=summary.path,
                )
            )
        elif self._listing is None:
            detail.update(literal(f"reading {self.app.sessions_dir}…"))
        elif self._folder_note:
            detail.update(literal(self._folder_note))
        else:
            detail.update(literal(f"no sessions in {self.app.sessions_dir}: train one (F2)"))

    def on_data_table_row_highlighted(self) -> None:
        self.show_detail()

    def on_data_table_row_selected(self) -> None:
        self.action_open()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.fill()

    def on_input_submitted(self) -> None:
        self.query_one(DataTable).focus()

    # ------------------------------------------------------------ choosing

    def chosen(self) -> list[SessionSummary]:
        """The marked sessions, else the highlighted one."""
        if self.marked:
            return [s for s in self.visible() if key_of(s) in self.marked]
        return self.highlighted_summaries()

    def highlighted_summaries(self) -> list[SessionSummary]:
        key = self.highlighted_key()
        return [s for s in self.summaries if key_of(s) == key and key not in self._failed]

    def load_then(self, summaries: list[SessionSummary], then: Callable[[list[SessionRecord]], None]) -> None:
        """Read ``summaries`` in full in a thread, then call ``then`` with the records."""
        if not summaries:
            key = self.highlighted_key()
            bad = next((b for b in self.unreadable_rows() if b.key == key), None)
            notify_literally(self, bad.problem if bad else "no session selected", severity="warning")
            return
        self.load_in_background(summaries, then)

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def load_in_background(
        self, summaries: list[SessionSummary], then: Callable[[list[SessionRecord]], None]
    ) -> tuple[Callable[[list[SessionRecord]], None], list[SessionRecord]]:
        return then, load_all(summaries)

    def loaded(self, result: tuple[Callable[[list[SessionRecord]], None], list[SessionRecord]]) -> None:
        then, records = result
        for warning in (w for record in records for w in record.warnings):
            notify_literally(self, warning, title="Session repaired", severity="warning", timeout=8)
        then(records)

    # ------------------------------------------------------------ actions

    def action_open(self) -> None:
        self.load_then(
            self.highlighted_summaries(), lambda records: self.open_replay(records[0], float("inf"))
        )

    def action_replay(self) -> None:
        self.load_then(self.highlighted_summaries(), lambda records: self.open_replay(records[0], 1.0))

    def open_replay(self, record: SessionRecord, speed: float) -> None:
        if self.is_current:  # the user may have moved on while it was read
            self.app.open_replay(record, speed)

    def action_mark(self) -> None:
        key = self.highlighted_key()
        if key is None or key not in {key_of(s) for s in self.summaries}:
            return
        self.marked ^= {key}
        table = self.query_one(DataTable)
        table.update_cell(key, table.ordered_columns[0].key, "✓" if key in self.marked else " ")
        table.action_cursor_down()
        self.show_detail()

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark two or more sessions with space, then press c", severity="warning")
            return
        self.load_then(self.chosen(), self.open_compare)

    def open_compare(self, records: list[SessionRecord]) -> None:
        if self.is_current:
            self.app.open_compare(records)

    def action_export(self) -> None:
        self.load_then(self.chosen(), self.ask_export)

    def ask_export(self, records: list[SessionRecord]) -> None:
        if not self.is_current:
            return
        # ids are checked to be safe file names when a session is read
        name = records[0].id if len(records) == 1 else f"compare-{len(records)}-sessions"

        def export(path: Path | None) -> None:
            if path is not None:
                self.export(records, path)

        folder = self.app.sessions_dir.parent / "exports"
        self.app.open_export(len(records), folder, name, export)

    @work(thread=True, exit_on_error=False, group="export")
    def export(self, records: list[SessionRecord], path: Path) -> Path:
        from fmlab.trainer.export import export_sessions

        return export_sessions(records, path)

    @work(thread=True, exit_on_error=False, group="delete")
    def delete(self, summaries: list[SessionSummary]) -> str:
        for summary in summaries:
            delete_session(summary.path)
        return summaries[0].id if len(summaries) == 1 else f"{len(summaries)} sessions"

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.SUCCESS:
            if worker.group == "listing":
                self.show_listing(*worker.result)
            elif worker.group == "load":
                self.loaded(worker.result)
            elif worker.group == "export":
                notify_literally(self, f"wrote {Path(worker.result).resolve()}", title="Exported", timeout=10)
            elif worker.group == "delete":
                notify_literally(self, f"deleted {worker.result}")
                self.marked.clear()
                self.reload()
        elif event.state == WorkerState.ERROR:
            self.worker_failed(worker.group, worker.error)

    def worker_failed(self, group: str, error: BaseException | None) -> None:
        titles = {
            "listing": "Cannot list the sessions",
            "load": "Cannot read the session",
            "export": "Export failed",
            "delete": "Cannot delete",
        }
        if group not in titles:
            return
        notify_literally(self, error, title=titles[group], severity="error", timeout=10)
        if group == "load" and isinstance(error, LoadFailed):
            self.mark_unreadable(error.path, str(error))
        if group == "delete":
            self.reload()

    def action_delete(self) -> None:
        chosen = self.chosen()
        if not chosen:
            return
        names = chosen[0].id if len(chosen) == 1 else f"{len(chosen)} sessions"

        def delete(confirmed: bool | None) -> None:
            if confirmed:
                self.delete(chosen)

        question = with_values("Delete $names? The file cannot be brought back.", names=names)
        self.app.confirm(question, delete)

    def action_sort(self) -> None:
        keys = list(SORT_KEYS)
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)]
        self.fill()

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self.fill()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one(DataTable).focus()

    def action_reload(self) -> None:
        self.reload()
