"""Every key of the app, per screen, from the bindings themselves: the help
screen (F1 or ``?``) shows these sections, and a test checks the README's
key table against them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual.binding import Binding

from fmlab.tui.screens.chart_keys import CHART_KEYS
from fmlab.tui.screens.compare import CompareScreen
from fmlab.tui.screens.configure import ConfigureScreen
from fmlab.tui.screens.confirm import ConfirmScreen
from fmlab.tui.screens.export import ExportScreen
from fmlab.tui.screens.live import LiveScreen
from fmlab.tui.screens.saved_sweeps import SavedSweepsScreen
from fmlab.tui.screens.sessions import SessionsScreen
from fmlab.tui.screens.sweep import SweepScreen
from fmlab.tui.widgets.gradient_chart import GradientChart
from fmlab.tui.widgets.loss_chart import LossChart

# The app's own keys (FmlabApp.BINDINGS): they work on every screen.
APP_KEYS = [
    Binding("f1", "help", "Help", tooltip="This list of keys"),
    Binding("question_mark", "help", "Help", show=False, tooltip="This list of keys"),
    Binding("f2", "switch_mode('configure')", "Run", tooltip="The run form"),
    Binding("f3", "switch_mode('live')", "Live", tooltip="The live view: the run training now"),
    Binding("f4", "switch_mode('sessions')", "Sessions", tooltip="The sessions browser"),
    Binding("f5", "switch_mode('sweep')", "Sweep", tooltip="The sweep view"),
    Binding(
        "ctrl+q", "quit", "Quit", priority=True, tooltip="Quit (a run training is stopped and saved first)"
    ),
    Binding("ctrl+t", "toggle_theme", "Theme", show=False, tooltip="Dark or light theme"),
    Binding("ctrl+p", "command_palette", "Palette", show=False, tooltip="The command palette"),
]
REPLAY_ACTIONS = ("toggle_pause", "faster", "restart", "back")
# What the keys cannot say: keys of the widgets themselves, and the mouse.
EXTRAS = {
    "sessions": [("enter", "Open the highlighted session's charts"),
                 ("click a header", "Sort by that column (again: reverse)")],
    "run form": [("tab", "Next field")],
    "sweep": [("enter", "On a reopened sweep's run: its charts")],
}  # fmt: skip


@dataclass(frozen=True)
class Key:
    keys: str  # as shown: "F2", "ctrl+r", "[", "y / n"
    what: str


@dataclass(frozen=True)
class Section:
    name: str  # "sessions"
    title: str  # "Sessions browser (F4)"
    keys: tuple[Key, ...]


NAMES = {
    "question_mark": "?",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "slash": "/",
    "space": "space",
    "escape": "escape",
}


def key_display(key: str) -> str:
    """How a key is written in the help and the README: F2, ctrl+r, [, ?."""
    if key in NAMES:
        return NAMES[key]
    if key.startswith("f") and key[1:].isdigit():
        return key.upper()
    return key


def _keys(bindings: Iterable[Binding], keep=lambda binding: True) -> tuple[Key, ...]:
    """One row per action: every key bound to it, and what it does."""
    rows: dict[str, tuple[list[str], str]] = {}
    for binding in bindings:
        if not keep(binding):
            continue
        keys, what = rows.setdefault(binding.action, ([], binding.tooltip or binding.description))
        keys.extend(k for k in (key_display(k.strip()) for k in binding.key.split(",")) if k not in keys)
    return tuple(Key(" / ".join(keys), what) for keys, what in rows.values())


def _extras(name: str) -> tuple[Key, ...]:
    return tuple(Key(keys, what) for keys, what in EXTRAS.get(name, []))


def key_sections() -> list[Section]:
    """Every section of keys, in the order the help shows them."""
    live = LiveScreen.BINDINGS
    return [
        Section("everywhere", "Everywhere", _keys(APP_KEYS)),
        Section("run form", "Run form (F2)", _keys(ConfigureScreen.BINDINGS) + _extras("run form")),
        Section("live", "Live view (F3)", _keys(live, lambda b: b.action not in REPLAY_ACTIONS)),
        Section("replay", "Replay (r in the sessions browser)",
                _keys(live, lambda b: b.action in REPLAY_ACTIONS)),
        Section("charts", "Charts (live view, replay, sweep, compare)",
                _keys([*CHART_KEYS, *LossChart.BINDINGS, *GradientChart.BINDINGS])),
        Section("sessions", "Sessions browser (F4)", _keys(SessionsScreen.BINDINGS) + _extras("sessions")),
        Section("sweep", "Sweep view (F5)", _keys(SweepScreen.BINDINGS) + _extras("sweep")),
        Section("compare", "Compare (c in the sessions browser)",
                _keys(CompareScreen.BINDINGS, lambda b: b not in CHART_KEYS)),
        Section("dialogs", "Dialogs", _keys(ConfirmScreen.BINDINGS) + _keys(ExportScreen.BINDINGS)
                + _keys(SavedSweepsScreen.BINDINGS)),
    ]  # fmt: skip


SECTION_OF_SCREEN = {
    ConfigureScreen: "run form",
    LiveScreen: "live",
    SessionsScreen: "sessions",
    SweepScreen: "sweep",
    CompareScreen: "compare",
}


CHART_SECTIONS = ("live", "replay", "sweep", "compare")


def sections_for(current: str) -> list[Section]:
    """Every section, the current screen's first (and the chart keys next, on
    a screen with charts)."""
    sections = key_sections()
    first = [current] + (["charts"] if current in CHART_SECTIONS else [])
    return sorted(sections, key=lambda s: first.index(s.name) if s.name in first else len(first))


def section_for(screen: object) -> str:
    """The section of keys of the screen shown now."""
    if isinstance(screen, LiveScreen) and screen.record is not None:
        return "replay"
    return next((name for kind, name in SECTION_OF_SCREEN.items() if isinstance(screen, kind)), "everywhere")


def key_table_markdown() -> str:
    """The README's key table: every section's keys, as the help shows them."""
    lines = ["| where | key | what it does |", "| --- | --- | --- |"]
    for section in key_sections():
        for key in section.keys:
            shown = " / ".join(f"`{k}`" for k in key.keys.split(" / "))
            lines.append(f"| {section.title} | {shown} | {key.what} |")
    return "\n".join(lines)
