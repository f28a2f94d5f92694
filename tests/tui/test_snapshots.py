"""Every screen pinned at 80x24 and at 120x40, fed fixed sessions.

Paths are relative (the test runs inside its own folder) and the system line
comes from a fixed probe, so the pictures do not change between runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sessions_fixture import FixedProbe, write_fixed_sessions
from textual.widgets import DataTable, Input

from fmlab.tui.app import make_app
from fmlab.tui.screens.session_rows import COLUMNS
from fmlab.tui.screens.sessions import SessionsScreen

SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def fixed_app(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records = write_fixed_sessions(Path("sessions"))

    def build(replay: bool = False):
        from fmlab.trainer.sessions import load

        record = load(Path("sessions") / f"{records[0].id}.json") if replay else None
        return make_app(Path("sessions"), None, replay=record, probe=FixedProbe())

    return build


async def settle(pilot) -> None:
    """Let workers finish and the throttled redraw catch up."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.3)
    await pilot.app.workers.wait_for_complete()
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False  # a blinking cursor would make the picture depend on timing
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_configure(snap_compare, fixed_app, size):
    assert snap_compare(fixed_app(), terminal_size=size, run_before=settle)


def test_configure_with_refused_values(snap_compare, fixed_app):
    async def bad_values(pilot):
        await settle(pilot)
        screen = pilot.app.screen
        screen.query_one("#f-lr").value = "0"
        screen.query_one("#f-epochs").value = "ten"
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=bad_values)


@pytest.mark.parametrize("size", SIZES)
def test_sessions(snap_compare, fixed_app, size):
    async def browse(pilot):
        await pilot.press("f4")
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.press("space")
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=size, run_before=browse)


@pytest.mark.parametrize("size", SIZES)
def test_replay_finished(snap_compare, fixed_app, size):
    async def play_to_end(pilot):
        await pilot.press("f", "f", "f", "f")  # instant
        await settle(pilot)
        pilot.app.clear_notifications()
        await settle(pilot)

    assert snap_compare(fixed_app(replay=True), terminal_size=size, run_before=play_to_end)


@pytest.mark.parametrize("size", SIZES)
def test_compare(snap_compare, fixed_app, size):
    async def compare(pilot):
        await pilot.press("f4")
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.press("space", "space", "space", "c")
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=size, run_before=compare)


def test_export_dialog(snap_compare, fixed_app):
    async def export(pilot):
        await pilot.press("f4")
        await settle(pilot)
        pilot.app.clear_notifications()
        assert isinstance(pilot.app.screen, SessionsScreen)
        assert pilot.app.screen.query_one(DataTable).row_count == 6
        await pilot.press("e")
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=export)


def test_live_view_before_any_run(snap_compare, fixed_app):
    async def live(pilot):
        await pilot.press("f3")
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=live)


@pytest.mark.parametrize("size", SIZES)
def test_sweep_with_the_lr_preset(snap_compare, fixed_app, size):
    async def lr_preset(pilot):
        await pilot.press("f5")
        await settle(pilot)
        pilot.app.screen.query_one("#sw-preset").value = "lr"
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=size, run_before=lr_preset)


@pytest.mark.parametrize("size", SIZES)
def test_help_over_the_sessions_browser(snap_compare, fixed_app, size):
    async def help_screen(pilot):
        await pilot.press("f4")
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.press("f1")
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=size, run_before=help_screen)


def test_sessions_sorted_by_a_header_click(snap_compare, fixed_app):
    async def sort_by_lr(pilot):
        await pilot.press("f4")
        await settle(pilot)
        pilot.app.clear_notifications()
        columns = [c.key for c in COLUMNS]
        x = 1 + sum(c.width + 2 for c in COLUMNS[: columns.index("lr")]) + 2  # into the lr header
        await pilot.click(pilot.app.screen.query_one(DataTable), offset=(x, 1))
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=sort_by_lr)


@pytest.mark.parametrize("size", SIZES)
def test_configure_a_cnn(snap_compare, fixed_app, size):
    async def cnn(pilot):
        await settle(pilot)
        pilot.app.screen.query_one("#f-arch").value = "cnn"
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=size, run_before=cnn)


@pytest.mark.parametrize("size", SIZES)
def test_replay_of_a_cnn_run(snap_compare, tmp_path, monkeypatch, size):
    from sessions_fixture import fixed_record

    monkeypatch.chdir(tmp_path)
    Path("sessions").mkdir()
    record = fixed_record("20250304-100000-cnn-lr0.1-dddd", 0.1, 4, 4, "cnn")
    app = make_app(Path("sessions"), None, replay=record, probe=FixedProbe())

    async def play_to_end(pilot):
        await pilot.press("f", "f", "f", "f")  # instant
        await settle(pilot)
        pilot.app.clear_notifications()
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=play_to_end)
