"""Ask where to export and in which format; dismisses with the path or None."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from fmlab.tui.screens.terminal_sized import TerminalSized

FORMATS = (("PNG chart (matplotlib)", ".png"), ("CSV metrics", ".csv"), ("JSON metrics", ".json"))


class ExportScreen(TerminalSized, ModalScreen[Path | None]):
    CSS_PATH = "dialog.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, count: int, folder: Path, name: str) -> None:
        super().__init__()
        self.count = count
        self.folder = folder
        self.name_stem = name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            what = "1 session" if self.count == 1 else f"{self.count} sessions"
            yield Static(f"[b]Export {what}[/b]", classes="dialog-text")
            with Horizontal(classes="dialog-row"):
                yield Label("format")
                yield Select(FORMATS, value=".png", allow_blank=False, compact=True, id="export-format")
            with Horizontal(classes="dialog-row"):
                yield Label("file")
                yield Input(str(self.folder / f"{self.name_stem}.png"), compact=True, id="export-path")
            yield Static(
                "A relative path is in the working folder (where fmlab started).", classes="dialog-note"
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", variant="primary", compact=True, id="export")
                yield Button("Cancel", compact=True, id="cancel")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        path_input = self.query_one("#export-path", Input)
        text = path_input.value or str(self.folder / self.name_stem)
        known = next((ext for _, ext in FORMATS if text.lower().endswith(ext)), "")
        path_input.value = text[: len(text) - len(known)] + str(event.value)

    def on_input_submitted(self) -> None:
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export":
            self.submit()
        else:
            self.dismiss(None)

    def submit(self) -> None:
        text = self.query_one("#export-path", Input).value.strip()
        if not text:
            self.notify("give a file name", severity="error")
            return
        self.dismiss(Path(text).expanduser())

    def action_cancel(self) -> None:
        self.dismiss(None)
