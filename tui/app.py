"""The fmlab app: screens, global bindings and routing between them.

``make_app`` is the one factory the CLI and the tests use. Screens live in
tui/screens, widgets in tui/widgets; the app itself only routes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from trainer.config import RunConfig
from trainer.session import ListingCache, SessionRecord
from tui.screens.configure import ConfigureScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.live import LiveScreen
from tui.screens.sessions import SessionsScreen


class Probe(Protocol):
    """What the app asks of the machine (trainer.sysinfo.SystemProbe)."""

    def cuda_status(self) -> tuple[bool, str]: ...

    def line(self, device: str | None) -> str: ...


class FmlabApp(App):
    # every screen's styles up front: a screen whose CSS arrives on first
    # show makes Textual restyle every widget of every screen (most of a second)
    CSS_PATH = [
        "app.tcss",
        "screens/configure.tcss",
        "screens/live.tcss",
        "screens/sessions.tcss",
        "screens/compare.tcss",
        "screens/dialog.tcss",
    ]
    TITLE = "fmlab"
    MODES = {"configure": ConfigureScreen, "live": "live", "sessions": SessionsScreen}
    BINDINGS = [
        Binding("f2", "switch_mode('configure')", "Configure"),
        Binding("f3", "switch_mode('live')", "Live"),
        Binding("f4", "switch_mode('sessions')", "Sessions"),
        Binding("ctrl+t", "toggle_theme", "Theme"),
    ]

    def __init__(
        self, sessions_dir: Path, data_dir: Path | None, replay: SessionRecord | None, probe: Probe
    ) -> None:
        super().__init__()
        self.sessions_dir = Path(sessions_dir)
        self.data_dir = data_dir
        self.replay = replay
        self.probe = probe
        self.listing = ListingCache()

    def on_mount(self) -> None:
        # list the sessions while the user looks at the first screen
        self.call_after_refresh(self.prefetch_listing)
        self.install_screen(LiveScreen(), "live")
        if self.replay is None:
            self.switch_mode("configure")
        else:
            self.switch_mode("sessions")
            self.push_screen(LiveScreen(replay=self.replay))

    @work(thread=True, exit_on_error=False, group="prefetch")
    def prefetch_listing(self) -> None:
        self.listing.listing(self.sessions_dir)

    @property
    def training_view(self) -> LiveScreen:
        return self.get_screen("live", LiveScreen)

    def start_training(self, config: RunConfig) -> None:
        """Open the live view on a new run; asks first if one is training."""

        async def begin(confirmed: bool | None = True) -> None:
            if confirmed:
                await self.switch_mode("live")
                self.training_view.start_training(config)

        if self.training_view.busy:
            question = "A run is training. Stop it (it is saved as stopped) and start this one?"
            self.push_screen(ConfirmScreen(question), begin)
        else:
            self.call_later(begin)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    async def action_quit(self) -> None:
        if self.training_view.busy:
            self.notify("Stopping the run and saving it…")
            await self.training_view.stop_and_wait()
        self.exit()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "New run", "Configure and start a training run (F2)", lambda: self.switch_mode("configure")
        )
        yield SystemCommand("Live view", "The run training now (F3)", lambda: self.switch_mode("live"))
        yield SystemCommand(
            "Sessions",
            "Browse, replay, compare and export saved sessions (F4)",
            lambda: self.switch_mode("sessions"),
        )
        yield SystemCommand(
            "Stop run", "Stop the training run; it is saved as stopped", self.training_view.action_stop_run
        )
        yield SystemCommand(
            "Toggle light/dark", "Switch between the light and the dark theme", self.action_toggle_theme
        )
        yield from super().get_system_commands(screen)


def make_app(
    sessions_dir: Path,
    data_dir: Path | None = None,
    replay: SessionRecord | None = None,
    probe: Probe | None = None,
) -> FmlabApp:
    if probe is None:
        from trainer.sysinfo import SystemProbe

        probe = SystemProbe()
    return FmlabApp(sessions_dir, data_dir, replay, probe)
