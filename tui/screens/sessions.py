"""The sessions browser: saved runs in a sortable, filterable table.

Unreadable files show as warning rows (and one notification), never as a
crash. Actions work on the marked rows (space) that the filter shows, or
else the highlighted one; marked rows the filter hides are left alone, and
the bar and the actions say so. A click on a column header sorts by it
(again: reversed), and the header shows the sort. ``n`` opens the run form
with the highlighted session's settings, ``R`` continues a stopped or
interrupted session in the live view.

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
from textual.widgets import DataTable, Header, Input, Static
from textual.worker import Worker, WorkerState

from fmlab.trainer.sessions import ListingCache, SessionRecord, SessionSummary, delete_session
from fmlab.tui.literal import literal, notify_literally, with_values
from fmlab.tui.screens.session_rows import (
    COLUMNS,
    FILTER_HINT,
    SORT_KEYS,
    LoadFailed,
    Unreadable,
    data_words,
    flags_of,
    key_of,
    list_folder,
    load_all,
    matches,
    row_of,
    unreadable_row,
)
from fmlab.tui.screens.terminal_sized import TerminalSized
from fmlab.tui.widgets.key_footer import KeyFooter

FIRST_ROWS = 60


class SessionsScreen(TerminalSized, Screen):
    CSS_PATH = "sessions.tcss"
    BINDINGS = [
        Binding("o", "open", "Open", tooltip="Open the session's charts"),
        Binding("r", "replay", "Replay", tooltip="Replay the session as it trained"),
        Binding("space", "mark", "Mark", tooltip="Mark the session (for c, e and d)"),
        Binding("c", "compare", "Compare", tooltip="Compare the marked sessions"),
        Binding("n", "new_run", "New run", tooltip="The run form, filled in with this session's settings"),
        Binding("R", "resume", "Resume", tooltip="Continue a stopped or interrupted session"),
        Binding("e", "export", "Export", tooltip="Export the marked sessions (or this one)"),
        Binding("d", "delete", "Delete", tooltip="Delete the marked sessions (or this one), after asking"),
        Binding("slash", "filter", "Filter", tooltip="Filter by field: base 0.1 adam, or lr:0.1 id:3f"),
        Binding("s", "sort", "Sort", show=False, tooltip="Sort by the next column"),
        Binding("S", "reverse", "Reverse", show=False, tooltip="Reverse the sort"),
        Binding("u", "reload", "Reload", show=False, tooltip="Read the folder again"),
        Binding("escape", "leave_filter", "Table", show=False, tooltip="From the filter back to the table"),
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
        yield Input(placeholder=FILTER_HINT, compact=True, id="filter")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="sessions")
        yield Static("", id="session-detail")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.sub_title = f"sessions in {self.app.sessions_dir}"  # the header shows it literally
        self.add_columns()
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

    def add_columns(self) -> None:
        """The columns, the sorted one's header marked ▼ (descending) or ▲."""
        table = self.query_one(DataTable)
        for column in COLUMNS:
            label = column.label
            if column.key == self.sort_key:
                label += "▼" if self.descending else "▲"  # no space: it fits the narrow columns
            table.add_column(label, width=column.width, key=column.key)

    def fill(self) -> None:
        table = self.query_one(DataTable)
        current = self.highlighted_key()
        table.clear(columns=True)
        self.add_columns()
        shown = self.visible()
        rows = [(row_of(s, key_of(s) in self.marked), key_of(s)) for s in shown]
        rows += [(unreadable_row(bad), bad.key) for bad in self.unreadable_rows()]
        self._fills += 1
        # a screenful now, the rest after the first paint: the table measures
        # every cell it is given before it draws
        self.add_rows(self._fills, rows[:FIRST_ROWS], current)
        if len(rows) > FIRST_ROWS:
            self.set_timer(0.1, lambda fill=self._fills: self.add_rows(fill, rows[FIRST_ROWS:], current))
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

    def show_subtitle(self) -> None:
        """Under the table: how many sessions show, how many are marked (and
        hidden by the filter), and the sort."""
        total, shown = len(self.summaries), len(self.visible())
        parts = [f"{shown} of {total} sessions" if shown != total else f"{total} sessions"]
        if self.marked:
            parts.append(self.marks_text())
        parts.append(f"sorted by {self.sort_key} {'▼' if self.descending else '▲'}")
        self.query_one(DataTable).border_subtitle = " · ".join(parts)

    def show_detail(self) -> None:
        self.show_subtitle()
        key = self.highlighted_key()
        detail = self.query_one("#session-detail", Static)
        bad = next((b for b in self.unreadable_rows() if b.key == key), None)
        summary = next((s for s in self.summaries if key_of(s) == key and key not in self._failed), None)
        if bad is not None:
            detail.update(with_values("[b red]unreadable:[/] $problem", problem=bad.problem))
        elif summary is not None:
            settings = f"{summary.optimizer} · bs {summary.batch_size} · seed {summary.seed}"
            study = f" · study {summary.study}" if summary.study else ""
            lowest = summary.lowest_test_loss_epoch
            results = [
                data_words(summary),
                f"lowest test loss at epoch {lowest}" if lowest is not None else "",
            ]
            detail.update(
                with_values(
                    "[b]$id[/b]  $settings$study\n$results\n$path",
                    id=summary.id,
                    settings=settings,
                    study=study,
                    results=" · ".join(part for part in results if part),
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

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a header sorts by that column; on the sorted one, reverses."""
        key = event.column_key.value
        if key not in SORT_KEYS:
            return
        if key == self.sort_key:
            self.descending = not self.descending
        else:
            self.sort_key, self.descending = key, key in ("when", "final", "best")  # newest, best first
        self.fill()

    # ------------------------------------------------------------ choosing

    def hidden_marks(self) -> int:
        """Marked sessions the filter hides now."""
        shown = {key_of(s) for s in self.visible()}
        return len(self.marked - shown)

    def marks_text(self) -> str:
        if not self.marked:
            return ""
        hidden = self.hidden_marks()
        text = f"{len(self.marked)} marked"
        return text + (
            f", {hidden} hidden by the filter (c, e, d leave {'it' if hidden == 1 else 'them'} out)"
            if hidden
            else ""
        )

    def chosen(self) -> list[SessionSummary]:
        """The marked sessions the filter shows, else the highlighted one."""
        if self.marked:
            return [s for s in self.visible() if key_of(s) in self.marked]
        return self.highlighted_summaries()

    def left_out(self) -> str:
        """Words for the marked sessions an action leaves out (hidden by the filter)."""
        hidden = self.hidden_marks() if self.marked else 0
        if not hidden:
            return ""
        return f"{hidden} marked session{'s' if hidden > 1 else ''} hidden by the filter {'are' if hidden > 1 else 'is'} left out"

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
        summary = next(s for s in self.summaries if key_of(s) == key)
        table = self.query_one(DataTable)
        table.update_cell(key, table.ordered_columns[0].key, flags_of(summary, key in self.marked))
        table.action_cursor_down()
        self.show_detail()

    def action_compare(self) -> None:
        chosen = self.chosen() if self.marked else []
        if len(chosen) < 2:
            hidden = self.hidden_marks()
            why = (
                f" ({hidden} marked {'are' if hidden > 1 else 'is'} hidden by the filter: escape, then clear it)"
                if hidden
                else ""
            )
            self.notify(f"mark two or more sessions with space, then press c{why}", severity="warning")
            return
        if self.left_out():
            self.notify(f"comparing the {len(chosen)} shown; {self.left_out()}", timeout=6)
        self.load_then(chosen, self.open_compare)

    def open_compare(self, records: list[SessionRecord]) -> None:
        if self.is_current:
            self.app.open_compare(records)

    def action_export(self) -> None:
        if self.left_out():
            self.notify(f"exporting the {len(self.chosen())} shown; {self.left_out()}", timeout=6)
        self.load_then(self.chosen(), self.ask_export)

    def ask_export(self, records: list[SessionRecord]) -> None:
        if not self.is_current:
            return
        # ids are checked to be safe file names when a session is read
        name = records[0].id if len(records) == 1 else f"compare-{len(records)}-sessions"

        def export(path: Path | None) -> None:
            if path is not None:
                self.export(records, path)

        self.app.open_export(len(records), self.app.exports_dir, name, export)

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

        more = f" ({self.left_out()}.)" if self.left_out() else ""
        question = with_values("Delete $names? The file cannot be brought back.$more", names=names, more=more)
        self.app.confirm(question, delete)

    def action_new_run(self) -> None:
        """The run form, filled in with the highlighted session's settings."""
        self.load_then(self.highlighted_summaries(), self.new_run)

    def new_run(self, records: list[SessionRecord]) -> None:
        if self.is_current:
            self.app.call_later(self.app.new_run_from, records[0].config)

    def action_resume(self) -> None:
        """Continue the highlighted session, if it was stopped or interrupted."""
        chosen = self.highlighted_summaries()
        if not chosen:
            self.load_then(chosen, lambda records: None)  # says why there is nothing to resume
            return
        summary = chosen[0]
        if summary.status not in ("stopped", "interrupted"):
            notify_literally(
                self, f"{summary.id} is {summary.status}: only stopped or interrupted runs can be resumed",
                severity="warning",
            )  # fmt: skip
            return
        self.app.resume_training(summary.path)

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
