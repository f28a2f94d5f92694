"""Every key of the app, per screen, the current screen's first (F1 or ?).

The sections come from the bindings (tui.keys, via the app); this screen
only lays them out. F1, ?, q or escape closes it."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from fmlab.tui.screens.terminal_sized import TerminalSized


class HelpScreen(TerminalSized, ModalScreen[None]):
    CSS_PATH = "help.tcss"
    BINDINGS = [
        Binding("escape,q,f1,question_mark", "close", "Close", tooltip="Close the help"),
    ]

    def __init__(self, sections: list, current: str) -> None:
        """``sections`` are tui.keys.Section, in the order to show them;
        ``current`` names the one of the screen below."""
        super().__init__()
        self.sections = sections
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static("[b]Keys[/b]  ·  F1, ?, q or escape closes  ·  ↑ ↓ scroll", id="help-title")
            with VerticalScroll(id="help-keys"):
                for section in self.sections:
                    yield Static(self.table(section), classes="help-section")

    def table(self, section) -> Group:
        here = section.name == self.current
        title = Text(section.title + ("  · this screen" if here else ""), style="bold underline")
        table = Table.grid(padding=(0, 2))
        table.add_column(width=16, no_wrap=True)
        table.add_column()
        for key in section.keys:
            table.add_row(Text(key.keys, style="bold cyan" if here else "bold"), Text(key.what))
        return Group(title, table)

    def on_mount(self) -> None:
        self.query_one("#help-keys").focus()

    def action_close(self) -> None:
        self.dismiss()
