"""Whole flows through the app, driven by keys with Pilot on tiny data."""

from __future__ import annotations

import json

import pytest
from pilot_helpers import type_into, wait_for
from sessions_fixture import FixedProbe
from textual.widgets import DataTable, Static

from fmlab.trainer.events import EpochMetrics, RunFinished, RunStarted, StepMetrics
from fmlab.trainer.sessions import load
from fmlab.tui.app import make_app
from fmlab.tui.messages import TrainingEvent
from fmlab.tui.screens.compare import CompareScreen
from fmlab.tui.screens.configure import ConfigureScreen
from fmlab.tui.screens.confirm import ConfirmScreen
from fmlab.tui.screens.export import ExportScreen
from fmlab.tui.screens.live import LiveScreen
from fmlab.tui.screens.sessions import SessionsScreen

SIZE = (100, 30)


async def configure(pilot, epochs: str, widths: str = "32") -> None:
    await pilot.press("f2")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, ConfigureScreen)
    screen.query_one("#f-arch").value = "custom"
    await pilot.pause()
    await type_into(pilot, "#f-widths", widths)
    await type_into(pilot, "#f-epochs", epochs)
    await pilot.pause()


def events(messages, kind=object) -> list[TrainingEvent]:
    """The TrainingEvent messages among ``messages`` whose event is a ``kind``."""
    return [m for m in messages if isinstance(m, TrainingEvent) and isinstance(m.event, kind)]


def notices(app) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


async def test_train_cancel_browse_replay_compare_export(tiny_data_dir, sessions_dir, tmp_path):
    messages = []
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        # a long run: watch epochs arrive, then cancel it
        await configure(pilot, "5000")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(events(messages, EpochMetrics)) >= 2)
        live = app.screen
        assert isinstance(live, LiveScreen) and live.busy
        await pilot.press("c")
        await wait_for(pilot, lambda: events(messages, RunFinished))
        run_messages = events(messages)
        kinds = [type(m.event) for m in run_messages]
        assert kinds[0] is RunStarted and kinds[1] is StepMetrics and kinds[-1] is RunFinished
        assert {m.index for m in run_messages} == {0}
        assert run_messages[-1].event.status == "stopped"
        # how the run ended shows as its RunFinished is handled, not on the next timer tick
        assert "stopped" in str(live.query_one("#run-status", Static).render())
        await wait_for(pilot, lambda: not live.busy)
        stopped_path = run_messages[-1].session_path
        assert load(stopped_path).status == "stopped"

        # a second, short run that completes
        await configure(pilot, "1")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(events(messages, RunFinished)) == 2)
        assert events(messages, RunFinished)[-1].event.status == "completed"
        await wait_for(pilot, lambda: not live.busy)

        # both are in the browser (listed in a worker thread)
        await pilot.press("f4")
        browser = app.screen
        assert isinstance(browser, SessionsScreen)
        table = browser.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        statuses = {s.status for s in browser.summaries}
        assert statuses == {"stopped", "completed"}

        # replay the highlighted one through the live view, at the fastest speed
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen))  # read in a worker thread
        replay = app.screen
        assert replay.record is not None
        for _ in range(4):
            await pilot.press("f")
        await wait_for(pilot, lambda: replay.live.results is not None)
        await pilot.pause(0.2)
        assert replay.live.series.epoch  # the epochs came back
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is browser

        # compare the two
        await pilot.press("space", "space", "c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        compare = app.screen
        assert compare.query_one(DataTable).row_count == 2
        await pilot.press("escape")
        await pilot.pause()

        # export both as a PNG
        out = tmp_path / "out" / "both.png"
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        await type_into(pilot, "#export-path", str(out))
        await pilot.press("enter")
        await wait_for(pilot, lambda: out.exists() and str(out) in notices(app), timeout=60)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # and as JSON
        out_json = tmp_path / "out" / "both.json"
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        await type_into(pilot, "#export-path", str(out_json))
        await pilot.press("enter")
        await wait_for(pilot, lambda: out_json.exists())
        json.loads(out_json.read_text())


async def test_bad_values_are_refused_at_the_field(sessions_dir, tiny_data_dir):
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await type_into(pilot, "#f-lr", "-1")
        await type_into(pilot, "#f-batch_size", "abc")
        await pilot.pause()
        screen = app.screen
        lr_error = str(screen.query_one("#error-lr", Static).render())
        batch_error = str(screen.query_one("#error-batch_size", Static).render())
        assert "must be greater than 0" in lr_error
        assert "not a whole number" in batch_error
        assert screen.query_one("#error-lr").display
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.screen is screen  # nothing started
        assert not app.live_view.busy
        assert "fix the flagged fields" in notices(app)
        assert not list(sessions_dir.iterdir())

        # widths: the inspector follows, and a bad width is flagged
        screen.query_one("#f-arch").value = "custom"
        await pilot.pause()
        await type_into(pilot, "#f-widths", "128,x")
        await pilot.pause()
        assert "not a whole number" in str(screen.query_one("#error-widths", Static).render())
        await type_into(pilot, "#f-widths", "128,64")
        await pilot.pause()
        inspector = screen.query_one("#inspector-table", DataTable)
        assert inspector.row_count == 5  # fc1 relu1 fc2 relu2 fc3
        assert "109,386" in str(screen.query_one("#inspector-total", Static).render())


async def test_unreadable_session_files_never_crash(fixed_sessions, tiny_data_dir):
    directory, _ = fixed_sessions
    app = make_app(directory, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4")
        browser = app.screen
        table = browser.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 6)  # three good, three warning rows
        assert len(browser.unreadable) == 3
        assert "Unreadable" in " ".join(str(n.title) for n in app._notifications)
        # walk onto the warning rows and try every action on them
        for _ in range(5):
            await pilot.press("down")
        for key in ("o", "r", "e", "d", "space", "c", "enter"):
            await pilot.press(key)
            await pilot.pause()
            assert app.is_running
        assert isinstance(app.screen, SessionsScreen)
        detail = str(browser.query_one("#session-detail", Static).render())
        assert "unreadable" in detail


async def test_a_session_cut_short_after_its_first_line_is_refused_on_open(fixed_sessions):
    directory, records = fixed_sessions
    text = (directory / f"{records[0].id}.json").read_text()
    (directory / "cut.json").write_text(text[: len(text) // 2])
    app = make_app(directory, None, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4")
        browser = app.screen
        await wait_for(pilot, lambda: browser.query_one(DataTable).row_count == 7)
        row = [i for i, s in enumerate(browser.visible()) if s.path.name == "cut.json"][0]
        browser.query_one(DataTable).move_cursor(row=row)
        for key in ("o", "r", "e"):
            await pilot.press(key)
            await pilot.pause()
        await wait_for(pilot, lambda: "truncated JSON" in notices(app))
        assert isinstance(app.screen, SessionsScreen)
        # listed from its intact first line, refused by the full read: marked unreadable now
        assert "cut.json" in [bad.name for bad in browser.unreadable_rows()]


async def test_starting_while_training_asks_and_quit_saves_stopped(tiny_data_dir, sessions_dir):
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=SIZE) as pilot:
        await configure(pilot, "5000")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.live_view.live.last_epoch is not None)
        await configure(pilot, "1")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert app.live_view.busy and app.live_view.live.started.config.epochs == 5000
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running)
    [path] = sessions_dir.glob("*.json")
    assert load(path).status == "stopped"


async def test_replay_opens_straight_from_the_command_line(fixed_sessions):
    directory, records = fixed_sessions
    app = make_app(directory, None, replay=load(directory / f"{records[0].id}.json"), probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, LiveScreen) and screen.record.id == records[0].id
        await pilot.press("space")
        assert screen.control.paused
        await pilot.press("space")
        assert not screen.control.paused
        await pilot.press("f", "f", "f", "f")
        assert screen.control.speed == float("inf")
        await wait_for(pilot, lambda: screen.live.results is not None)
        assert len(screen.live.series.epoch) == 5
        await pilot.press("r")  # restart plays it again from the start
        await wait_for(pilot, lambda: screen.live.results is not None)
        assert len(screen.live.series.epoch) == 5
        await pilot.press("x")
        assert screen.query_one("#loss-chart").x_axis == "epoch"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen)


@pytest.mark.parametrize("theme", ["textual-light"])
async def test_theme_toggle_and_palette(fixed_sessions, theme):
    directory, _ = fixed_sessions
    app = make_app(directory, None, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+t")
        assert app.theme == theme
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("New run", "Live view", "Sessions", "Stop run", "Toggle light/dark"):
            assert title in titles


async def test_screens_first_shown_after_a_theme_change_wear_that_theme(sessions_dir):
    """New screens skip Textual's stylesheet refresh (see tui.app.styled_now):
    they must still be styled by the theme in force when they first show, and
    screens made before a theme change restyled when shown again."""
    app = make_app(sessions_dir, None, probe=FixedProbe())
    async with app.run_test(size=(100, 30)) as pilot:
        dark = app.screen.styles.background
        await pilot.press("ctrl+t")
        await pilot.pause()
        light = app.screen.styles.background
        assert light != dark
        for key in ("f4", "f3", "f5", "f2"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen.styles.background == light, key


async def test_a_session_being_trained_is_not_deleted(tiny_data_dir, sessions_dir):
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=SIZE) as pilot:
        await configure(pilot, "5000")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.live_view.live.last_epoch is not None)
        await pilot.press("f4")
        browser = app.screen
        assert isinstance(browser, SessionsScreen)
        await wait_for(pilot, lambda: browser.query_one(DataTable).row_count == 1)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: "stop that run first" in notices(app))
        [path] = sessions_dir.glob("*.json")
        assert "being trained by another process" in notices(app)
        await pilot.press("f3", "c")  # stop it; then it can go
        await wait_for(pilot, lambda: not app.live_view.busy)
        await pilot.press("f4")
        await wait_for(pilot, lambda: app.screen is browser)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: not path.exists())
        assert not list(sessions_dir.iterdir())  # no checkpoint or lock left either
