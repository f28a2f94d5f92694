"""The fmlab app: screens, global bindings and routing between them.

``make_app`` is the one factory the CLI and the tests use. Screens live in
tui/screens, widgets in tui/widgets; the app itself only routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Protocol, TypeVar

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen

from fmlab.trainer.config import RunConfig
from fmlab.trainer.data import DatasetCache
from fmlab.trainer.sessions import ListingCache, SessionRecord
from fmlab.tui.keys import APP_KEYS, section_for, sections_for
from fmlab.tui.literal import notify_literally
from fmlab.tui.screens.compare import CompareScreen
from fmlab.tui.screens.configure import ConfigureScreen
from fmlab.tui.screens.confirm import ConfirmScreen
from fmlab.tui.screens.export import ExportScreen
from fmlab.tui.screens.help import HelpScreen
from fmlab.tui.screens.live import LiveScreen
from fmlab.tui.screens.saved_sweeps import SavedSweepChoice, SavedSweepsScreen
from fmlab.tui.screens.sessions import SessionsScreen
from fmlab.tui.screens.sweep import SweepScreen
from fmlab.tui.screens.sweep_run import SweepPlan
from fmlab.tui.screens.training_view import TrainingView
from fmlab.tui.settings import SettingsFile

ScreenType = TypeVar("ScreenType", bound=Screen)


class Probe(Protocol):
    """What the app asks of the machine (trainer.sysinfo.SystemProbe)."""

    def cuda_status(self) -> tuple[bool, str]: ...

    def line(self, device: str | None) -> str: ...


def styled_now(screen: ScreenType) -> ScreenType:
    """Mark a screen that has never been shown as styled by the current
    stylesheet. Otherwise Textual re-parses every style sheet and restyles
    every screen the first time a mode's screen shows (App.refresh_css, run
    twice: 0.10-0.15 s a mode here, 0.30-0.43 s over the first shows of
    sessions, live and sweep), although this app reads all its .tcss up front
    and a new screen's widgets are styled as they mount. A screen shown before
    keeps its count, so it is restyled after a theme change.

    Textual has no public way to say so: this sets the private counter its
    switch_mode compares (Screen._css_update_count against the app's), and
    does nothing where the names are gone. tests/tui/test_styled_now.py fails
    loudly if they change or the refreshes come back."""
    app = screen.app  # the running app: the screen is not mounted yet
    count = getattr(app, "_css_update_count", None)
    if count is not None and hasattr(screen, "_css_update_count"):
        screen._css_update_count = count
    return screen


class FmlabApp(App):
    # every screen's styles up front: a screen whose CSS arrives on first
    # show makes Textual restyle every widget of every screen (most of a second)
    CSS_PATH = [
        "app.tcss",
        "screens/configure.tcss",
        "screens/live.tcss",
        "screens/sessions.tcss",
        "screens/compare.tcss",
        "screens/sweep.tcss",
        "screens/dialog.tcss",
        "screens/help.tcss",
    ]
    TITLE = "fmlab"
    MODES = {
        "configure": lambda: styled_now(ConfigureScreen()),
        "live": "live",
        "sessions": lambda: styled_now(SessionsScreen()),
        "sweep": "sweep",
    }
    # F1 help, F2-F5 the screens and ^q quit lead the footer (widgets/key_footer.py);
    # ^t and ^p are in the help and the palette
    BINDINGS = APP_KEYS

    def __init__(
        self,
        sessions_dir: Path,
        data_dir: Path | None,
        replay: SessionRecord | None,
        probe: Probe,
        settings: SettingsFile,
    ) -> None:
        super().__init__()
        self.sessions_dir = Path(sessions_dir)
        self.data_dir = data_dir
        self.replay = replay
        self.probe = probe
        self.settings = settings
        self.listing = ListingCache()
        # one copy of the data for the live view and the sweep view: only one trains at a time
        self.datasets = DatasetCache(data_dir)

    @property
    def exports_dir(self) -> Path:
        """Where exports go unless the user says otherwise: exports/ in the
        working folder, as the export dialog shows it (not in the sessions
        folder, whose .json files are all read as sessions)."""
        return Path("exports")

    def on_mount(self) -> None:
        self.settings.on_warning = lambda problem: notify_literally(self, problem, severity="warning")
        for problem in self.settings.warnings:
            notify_literally(self, problem, severity="warning", timeout=8)
        if self.settings.current.theme in self.available_themes:
            self.theme = self.settings.current.theme
        self.theme_changed_signal.subscribe(self, lambda theme: self.settings.update(theme=theme.name))
        # list the sessions while the user looks at the first screen
        self.call_after_refresh(self.prefetch_listing)
        self.install_screen(styled_now(LiveScreen()), "live")
        self.install_screen(styled_now(SweepScreen()), "sweep")
        if self.replay is None:
            self.switch_mode("configure")
        else:
            self.switch_mode("sessions")
            self.open_replay(self.replay)

    @work(thread=True, exit_on_error=False, group="prefetch")
    def prefetch_listing(self) -> None:
        self.listing.listing(self.sessions_dir)

    @property
    def live_view(self) -> LiveScreen:
        return self.get_screen("live", LiveScreen)

    @property
    def sweep_view(self) -> SweepScreen:
        return self.get_screen("sweep", SweepScreen)

    def training_views(self) -> list[TrainingView]:
        """The views that train; at most one of them is busy."""
        return [self.live_view, self.sweep_view]

    # ------------------------------------------------------------ routing

    def start_training(self, config: RunConfig) -> None:
        """Open the live view on a new run; asks first if a run or sweep is training."""

        async def begin() -> None:
            await self.switch_mode("live")
            self.live_view.start_training(config)

        self._start_alone(begin)

    def resume_training(self, session_path: Path) -> None:
        """Open the live view on a stopped or interrupted session, continued
        from its last finished epoch; asks first if a run or sweep is training."""

        async def begin() -> None:
            await self.switch_mode("live")
            self.live_view.start_resume(session_path)

        self._start_alone(begin)

    async def new_run_from(self, config: RunConfig) -> None:
        """Open the run form filled in with ``config``'s settings."""
        await self.switch_mode("configure")
        self.screen.fill_form(config)

    def start_sweep(self, plan: SweepPlan) -> None:
        """Train a sweep in the sweep view; asks first if a run or sweep is training."""

        async def begin() -> None:
            await self.switch_mode("sweep")
            self.sweep_view.start_sweep(plan)

        self._start_alone(begin)

    def _start_alone(self, begin: Callable[[], Awaitable[None]]) -> None:
        """Call ``begin`` once nothing else trains: one training at a time
        shares the machine and the data. Whatever trains is stopped (and saved)
        first, if the user agrees."""
        busy = [view for view in self.training_views() if view.busy]

        async def stop_then_begin(confirmed: bool | None = True) -> None:
            if not confirmed:
                return
            for view in busy:
                await view.stop_and_wait()
            await begin()

        if busy:
            self.confirm(busy[0].STOP_QUESTION, stop_then_begin)
        else:
            self.call_later(stop_then_begin)

    def open_replay(self, record: SessionRecord, speed: float = 1.0) -> None:
        """Play a saved session in a live view over the current screen; at an
        infinite speed it opens finished."""
        self.push_screen(LiveScreen(replay=record, speed=speed))

    def open_compare(self, records: list[SessionRecord]) -> None:
        """Overlay two or more sessions over the current screen."""
        self.push_screen(CompareScreen(records))

    def open_export(self, count: int, folder: Path, name: str, then: Callable[[Path | None], object]) -> None:
        """Ask where to export ``count`` sessions; ``then`` gets the path, or None."""
        self.push_screen(ExportScreen(count, folder, name), then)

    def open_saved_sweeps(self, folder: Path, then: Callable[[SavedSweepChoice | None], object]) -> None:
        """Ask which saved sweep to reopen (of ``folder`` or another folder)."""
        self.push_screen(SavedSweepsScreen(folder), then)

    def confirm(self, question: str, then: Callable[[bool | None], object]) -> None:
        """Ask a yes/no question; ``then`` gets True for yes."""
        self.push_screen(ConfirmScreen(question), then)

    def action_help(self) -> None:
        """Every key, the current screen's first (F1 or ?)."""
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
            return
        current = section_for(self.screen)
        self.push_screen(HelpScreen(sections_for(current), current))

    # ------------------------------------------------------------ actions

    def action_toggle_theme(self) -> None:
        self.theme = (
            "textual-light" if self.theme == "textual-dark" else "textual-dark"
        )  # kept by on_mount's signal

    async def action_quit(self) -> None:
        for view in self.training_views():
            if view.busy:
                self.notify(view.QUIT_NOTICE)
                await view.stop_and_wait()
        self.exit()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand("Help", "Every key of every screen (F1 or ?)", self.action_help)
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
            "Sweep",
            "Train a grid of runs and compare them as they go (F5)",
            lambda: self.switch_mode("sweep"),
        )
        yield SystemCommand(
            "Stop run", "Stop the training run; it is saved as stopped", self.live_view.action_stop
        )
        yield SystemCommand(
            "Stop sweep", "Stop the sweep; its runs are saved as stopped", self.sweep_view.action_stop
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
    settings_path: Path | None = None,
) -> FmlabApp:
    """The app. ``settings_path`` is where its settings are kept (by default
    the user's config folder: tui.settings)."""
    if probe is None:
        from fmlab.trainer.sysinfo import SystemProbe

        probe = SystemProbe()
    return FmlabApp(sessions_dir, data_dir, replay, probe, SettingsFile(settings_path))
