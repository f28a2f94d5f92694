"""The sweep view (F5) driven with Pilot on tiny generated data."""

from __future__ import annotations

from functools import partial

import pilot_helpers
from pilot_helpers import type_into
from rich.text import Text
from sessions_fixture import FixedProbe
from textual.widgets import DataTable, Input, Static

from fmlab.trainer.sessions import load
from fmlab.trainer.studies.sweep import load_sweep
from fmlab.tui.app import make_app
from fmlab.tui.messages import SweepEnded, TrainingEvent
from fmlab.tui.screens.configure import ConfigureScreen
from fmlab.tui.screens.confirm import ConfirmScreen
from fmlab.tui.screens.sweep import SweepScreen

SIZE = (100, 30)


# a whole sweep on tiny data can take a while on a busy 2-core machine
wait_for = partial(pilot_helpers.wait_for, timeout=60.0)


async def open_sweep(pilot, lrs: str, arch: str, epochs: str, stacked: bool = True) -> SweepScreen:
    await pilot.press("f5")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, SweepScreen)
    await type_into(pilot, "#sw-lr", lrs)
    await type_into(pilot, "#sw-arch", arch)
    await type_into(pilot, "#sw-epochs", epochs)
    screen.query_one("#sw-device").value = "cpu"
    screen.query_one("#sw-stacked").value = stacked
    await pilot.pause()
    return screen


def table_rows(screen: SweepScreen) -> list[list[str]]:
    table = screen.query_one(DataTable)
    return [
        [Text.from_markup(str(cell)).plain for cell in table.get_row_at(i)] for i in range(table.row_count)
    ]


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def notices(app) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


def ended(messages) -> list[SweepEnded]:
    return [m for m in messages if isinstance(m, SweepEnded)]


def epochs_seen(messages) -> int:
    return sum(isinstance(m, TrainingEvent) and type(m.event).__name__ == "EpochMetrics" for m in messages)


async def test_a_small_grid_trains_fills_the_table_and_is_saved(tiny_data_dir, sessions_dir):
    messages = []
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        screen = await open_sweep(pilot, "0.1,0.01", "16", "2")
        assert [row[-1] for row in table_rows(screen)] == ["pending", "pending"]  # the plan
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: ended(messages))  # the view draws how it ended at once

        rows = table_rows(screen)  # columns: lr, test %, conv, status
        assert [row[0] for row in rows] == ["0.1", "0.01"]
        assert [row[-1] for row in rows] == ["completed", "completed"]
        assert all(0 <= float(row[1].split()[0]) <= 100 for row in rows)  # "7.03 (did not learn)"
        assert "2/2 runs done" in text_of(screen, "#run-status")

        # each run's events arrived in order, tagged with its place in the grid
        for index in (0, 1):
            kinds = [
                type(m.event).__name__ for m in messages if isinstance(m, TrainingEvent) and m.index == index
            ]
            assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
            assert kinds.count("EpochMetrics") == 2 and "StepMetrics" in kinds
        assert [m.series.name for m in screen.shown.members] == ["lr 0.1 16", "lr 0.01 16"]
        assert all(len(m.series.epoch) == 2 for m in screen.shown.members)

        # on disk: both sessions and the sweep record, which the notification names
        [done] = ended(messages)
        record = load_sweep(done.path)
        assert record.status == "completed" and record.stacked and record.table == "grid"
        assert [r.status for r in record.rows] == ["completed", "completed"]
        assert {p.name for p in sessions_dir.glob("*.json")} == {f"{r.session}.json" for r in record.rows}
        assert str(done.path) in notices(app)
        assert not screen.busy


async def test_bad_values_are_refused_at_their_fields_and_nothing_starts(tiny_data_dir, sessions_dir):
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sweep(pilot, "abc", "16", "0")
        assert "'abc' is not a number" in text_of(screen, "#error-lr")
        assert "0 is out of range" in text_of(screen, "#error-epochs")
        assert screen.query_one("#error-lr").display and not screen.query_one("#error-arch").display
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.screen is screen and not screen.busy
        assert "fix the flagged fields first: lrs, epochs" in notices(app)
        assert not list(sessions_dir.iterdir())

        # CUDA is not there (the fixed probe says so)
        screen.query_one("#sw-device").value = "cuda"
        await pilot.pause()
        assert "no CUDA device here" in text_of(screen, "#error-device")

        # a preset fills the fields, clears the refusals and plans its grid
        screen.query_one("#sw-device").value = "cpu"
        screen.query_one("#sw-preset").value = "convergence"
        await pilot.pause()
        assert screen.query_one("#sw-lr", Input).value == "1,0.1,0.01,0.001"
        assert screen.query_one("#sw-epochs", Input).value == "100"
        assert not screen.errors and screen.plan is not None and screen.plan.table == "convergence"
        assert [row[0] for row in table_rows(screen)] == ["1", "0.1", "0.01", "0.001"]
        assert "4 runs" in text_of(screen, "#sweep-hint")

        titles = [command.title for command in app.get_system_commands(screen)]
        assert "Sweep" in titles and "Stop sweep" in titles


async def test_a_sweep_without_data_is_refused_in_one_line(tmp_path, sessions_dir):
    empty = tmp_path / "no-data"
    empty.mkdir()
    app = make_app(sessions_dir, empty, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sweep(pilot, "0.1,0.01", "16", "1")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen.shown.state == "refused" and not screen.busy)
        assert "no Fashion-MNIST files" in text_of(screen, "#run-status")
        assert "no Fashion-MNIST files" in notices(app)
        assert [row[-1] for row in table_rows(screen)] == ["not run", "not run"]
        assert not list(sessions_dir.rglob("*.json"))


async def test_stopping_mid_sweep_saves_the_runs_as_stopped(tiny_data_dir, sessions_dir):
    messages = []
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        screen = await open_sweep(pilot, "0.1,0.01", "16", "5000")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: epochs_seen(messages) >= 4)
        assert screen.busy
        assert all(row[-1].startswith("running") for row in table_rows(screen))
        await pilot.press("c")  # the table has the focus, so c is not typed into a field
        await wait_for(pilot, lambda: ended(messages))
        await wait_for(pilot, lambda: not screen.busy)

        [done] = ended(messages)
        assert done.status == "stopped"
        record = load_sweep(done.path)
        assert record.status == "stopped" and [r.status for r in record.rows] == ["stopped", "stopped"]
        sessions = sorted(sessions_dir.glob("*.json"))
        assert len(sessions) == 2 and all(load(path).status == "stopped" for path in sessions)
        assert [row[-1] for row in table_rows(screen)] == ["stopped", "stopped"]
        status = text_of(screen, "#run-status")
        assert "stopped" in status and "2 saved as stopped" in status


async def test_one_training_at_a_time_and_quit_saves_the_sweep_as_stopped(tiny_data_dir, sessions_dir):
    messages = []
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        screen = await open_sweep(pilot, "0.1,0.01", "16", "5000", stacked=False)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: epochs_seen(messages) >= 1)

        # a single run asks first while the sweep trains; no leaves both as they are.
        # (waits poll for what should show: a bare pause waits a whole second for
        # a process that is never idle while it trains)
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigureScreen))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "A sweep is training" in text_of(app.screen, ".dialog-text")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigureScreen))
        assert screen.busy and not app.live_view.busy

        # so does a second sweep
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.screen is screen)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.busy and screen.run_id == 1

        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running)

    # one by one: the first run was under way and is saved as stopped; the second never began
    [session] = sessions_dir.glob("*.json")
    assert load(session).status == "stopped"
    [path] = (sessions_dir / "sweeps").glob("*.json")
    record = load_sweep(path)
    assert record.status == "stopped" and not record.stacked
    assert record.rows[0].status == "stopped" and record.rows[1] is None
