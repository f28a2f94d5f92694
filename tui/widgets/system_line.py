"""One line about the machine: device, memory in use, CPU or GPU load."""

from __future__ import annotations

from collections.abc import Callable

from textual.widgets import Static

REFRESH_SECONDS = 1.0


class SystemLine(Static):
    DEFAULT_CSS = """
    SystemLine { height: 1; width: 1fr; color: $text-muted; }
    """

    def __init__(self, read: Callable[[str | None], str], *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.read = read
        self.device: str | None = None

    def on_mount(self) -> None:
        self.sample()
        self.set_interval(REFRESH_SECONDS, self.sample)

    def sample(self) -> None:
        # fixed size: no layout pass, which would redraw every chart on screen
        self.update(self.read(self.device), layout=False)
