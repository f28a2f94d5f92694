"""Status, progress bar and the epoch/step/speed/ETA line of one run."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widget import Widget
from textual.widgets import ProgressBar, Static


class RunProgress(Widget):
    DEFAULT_CSS = """
    RunProgress { height: 2; }
    RunProgress #run-status { height: 1; width: 1fr; text-style: bold; }
    RunProgress Horizontal { height: 1; }
    RunProgress ProgressBar { width: auto; margin-right: 1; }
    RunProgress ProgressBar Bar { width: 16; }
    RunProgress #run-detail { width: 1fr; height: 1; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Static("no run yet", id="run-status")
        with Horizontal():
            yield ProgressBar(total=1, show_eta=False, id="run-bar")
            yield Static("", id="run-detail")

    def show(self, status: str | Content, done: int, total: int | None, detail: str | Content) -> None:
        """``status`` and ``detail`` as markup when str; text from files comes as Content."""
        # every part has a fixed size: no layout pass, which would redraw the charts
        self.query_one("#run-status", Static).update(status, layout=False)
        # an empty bar rather than the pulsing "unknown total" one: nothing runs yet
        self.query_one("#run-bar", ProgressBar).update(total=total or 1, progress=done if total else 0)
        self.query_one("#run-detail", Static).update(detail, layout=False)
