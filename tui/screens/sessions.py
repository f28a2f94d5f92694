"""The sessions browser: saved runs in a sortable, filterable table.

Unreadable files show as warning rows (and one notification), never as a
crash. Actions work on the marked rows (space) or else the highlighted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import Worker, WorkerState

from fmlab.trainer.sessions import SessionError, SessionRecord, SessionSummary, delete_session, load
from fmlab.tui.screens.compare import CompareScreen
from fmlab.tui.screens.confirm import ConfirmScreen
from fmlab.tui.screens.export import ExportScreen

COLUMNS = ("", "when", "arch", "lr", "epochs", "final", "best", "conv", "status", "id")
# fixed widths: an auto-width table measures every cell of every row on each fill
WIDTHS = (1, 11, 8, 6, 7, 6, 6, 4, 11, 34)
FIRST_ROWS = 60
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
    problem: str

    @property
    def name(self) -> str:
        return Path(self.problem.split(": ", 1)[0]).name


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def row_of(summary: SessionSummary, marked: bool) -> tuple[str, ...]:
    return (
        "✓" if marked else " ",
        summary.created[5:16].replace("T", " "),
        summary.arch,
        f"{summary.lr:g}",
        f"{summary.epochs_done}/{summary.epochs}",
        percent(summary.final_test_acc),
        percent(summary.best_test_acc),
        "-" if summary.converged_epoch is None else str(summary.converged_epoch),
        summary.status,
        summary.id,
    )


def key_of(summary: SessionSummary) -> str:
    """Rows are keyed by file: a copied file can repeat a session's id."""
    return str(summary.path)


def matches(summary: SessionSummary, text: str) -> bool:
    haystack = f"{summary.id} {summary.arch} {summary.lr:g} {summary.optimizer} {summary.status}"
    return all(word in haystack.lower() for word in text.lower().split())


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
        self.sub_title = f"sessions in {self.app.sessions_dir}"
        table = self.query_one(DataTable)
        for label, width in zip(COLUMNS, WIDTHS):
            table.add_column(label, width=width)
        self.reload()
        self.query_one(DataTable).focus()

    def on_screen_resume(self) -> None:
        self.reload()

    # ------------------------------------------------------------ table

    def reload(self) -> None:
        listing = self.app.listing.listing(self.app.sessions_dir)
        if listing is self._listing:
            return  # nothing on disk changed since the last listing
        self._listing = listing
        summaries, problems = listing
        self.summaries = summaries
        self.unreadable = [Unreadable(f"unreadable-{i}", p) for i, p in enumerate(problems)]
        known = {key_of(s) for s in summaries}
        self.marked &= known
        fresh = [p for p in problems if p not in self._warned]
        if fresh:
            self._warned.update(fresh)
            more = f" (and {len(fresh) - 1} more)" if len(fresh) > 1 else ""
            self.notify(fresh[0] + more, title="Unreadable session files", severity="warning", timeout=8)
        self.fill()

    def visible(self) -> list[SessionSummary]:
        text = self.query_one("#filter", Input).value
        rows = [s for s in self.summaries if matches(s, text)]
        return sorted(rows, key=SORT_KEYS[self.sort_key], reverse=self.descending)

    def fill(self) -> None:
        table = self.query_one(DataTable)
        current = self.highlighted_key()
        table.clear()
        shown = self.visible()
        rows = [(row_of(s, key_of(s) in self.marked), key_of(s)) for s in shown]
        rows += [
            (["!", "", "", "", "", "", "", "", "[b red]unreadable[/]", bad.name], bad.key)
            for bad in self.unreadable
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
        bad = next((b for b in self.unreadable if b.key == key), None)
        summary = next((s for s in self.summaries if key_of(s) == key), None)
        if bad is not None:
            detail.update(f"[b red]unreadable:[/] {bad.problem}")
        elif summary is not None:
            marks = f" · {len(self.marked)} marked" if self.marked else ""
            detail.update(f"[b]{summary.id}[/b]  {summary.optimizer}{marks}\n{summary.path}")
        else:
            detail.update(f"no sessions in {self.app.sessions_dir}: train one (F2)")

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
        key = self.highlighted_key()
        return [s for s in self.summaries if key_of(s) == key]

    def load_records(self, summaries: list[SessionSummary]) -> list[SessionRecord] | None:
        if not summaries:
            key = self.highlighted_key()
            bad = next((b for b in self.unreadable if b.key == key), None)
            self.notify(bad.problem if bad else "no session selected", severity="warning")
            return None
        try:
            return [load(s.path) for s in summaries]
        except SessionError as exc:
            self.notify(str(exc), title="Cannot read the session", severity="error", timeout=8)
            return None

    def current_record(self) -> SessionRecord | None:
        key = self.highlighted_key()
        records = self.load_records([s for s in self.summaries if key_of(s) == key])
        return records[0] if records else None

    # ------------------------------------------------------------ actions

    def action_open(self) -> None:
        from fmlab.tui.screens.live import LiveScreen

        record = self.current_record()
        if record is not None:
            self.app.push_screen(LiveScreen(replay=record, speed=float("inf")))

    def action_replay(self) -> None:
        from fmlab.tui.screens.live import LiveScreen

        record = self.current_record()
        if record is not None:
            self.app.push_screen(LiveScreen(replay=record))

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
        records = self.load_records(self.chosen())
        if records:
            self.app.push_screen(CompareScreen(records))

    def action_export(self) -> None:
        records = self.load_records(self.chosen())
        if not records:
            return
        name = records[0].id if len(records) == 1 else f"compare-{len(records)}-sessions"

        def export(path: Path | None) -> None:
            if path is not None:
                self.export(records, path)

        folder = self.app.sessions_dir.parent / "exports"
        self.app.push_screen(ExportScreen(len(records), folder, name), export)

    @work(thread=True, exit_on_error=False, group="export")
    def export(self, records: list[SessionRecord], path: Path) -> Path:
        from fmlab.trainer.export import export_sessions

        return export_sessions(records, path)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "export":
            return
        if event.state == WorkerState.SUCCESS:
            self.notify(f"wrote {Path(event.worker.result).resolve()}", title="Exported", timeout=10)
        elif event.state == WorkerState.ERROR:
            self.notify(str(event.worker.error), title="Export failed", severity="error", timeout=10)

    def action_delete(self) -> None:
        chosen = self.chosen()
        if not chosen:
            return
        names = chosen[0].id if len(chosen) == 1 else f"{len(chosen)} sessions"

        def delete(confirmed: bool | None) -> None:
            if confirmed:
                for summary in chosen:
                    delete_session(summary.path)
                self.marked.clear()
                self.notify(f"deleted {names}")
                self.reload()

        self.app.push_screen(ConfirmScreen(f"Delete {names}? The file cannot be brought back."), delete)

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
