"""The app at small sizes: charts that cannot fit show a note, random keys and
resizes during a replay and a live run never crash it, and a crash, should one
happen, ends the command with a non-zero status."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pilot_helpers import send_key, send_resize, wait_for
from sessions_fixture import FixedProbe
from typer.testing import CliRunner

from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.sessions import load
from fmlab.tui.app import FmlabApp, make_app
from fmlab.tui.cli import app as cli
from fmlab.tui.screens.configure import ConfigureScreen
from fmlab.tui.screens.live import LiveScreen
from fmlab.tui.widgets.key_footer import KeyFooter
from fmlab.tui.widgets.metric_chart import MetricChart

SIZES = [(40, 12), (60, 20), (80, 24)]
STEPS = 200
# every key the live, replay, browser and sweep views bind, the mode keys,
# and characters that would be markup if typed into a form field
KEYS = (
    "space f r x l s v c tab shift+tab escape up down left right enter "
    "f2 f3 f4 f5 o e d n y u S slash left_square_bracket"
).split()


def chart_notes(app) -> dict[str, str]:
    return {chart.id: str(chart.render()) for chart in app.screen.query(MetricChart)}


async def test_charts_too_small_for_a_plot_show_a_note(fixed_sessions):
    """The example: a replay at 40x12, log scale on, then 40x14 failed with a
    math domain error inside plotext."""
    directory, records = fixed_sessions
    app = make_app(directory, None, replay=load(directory / f"{records[0].id}.json"), probe=FixedProbe())
    async with app.run_test(size=(40, 12)) as pilot:
        await pilot.press("f", "f", "f", "f")
        await wait_for(pilot, lambda: app.screen.live.results is not None)
        await pilot.press("l")
        await pilot.resize_terminal(40, 14)
        await pilot.pause()
        assert all(note.endswith(": too small") for note in chart_notes(app).values())
        for size in [(1, 1), (12, 40), (30, 8), (200, 9)]:
            await pilot.resize_terminal(*size)
            await pilot.pause()
        await pilot.resize_terminal(160, 50)
        await pilot.pause(0.3)
        notes = chart_notes(app)
        assert not any("too small" in note for note in notes.values())  # plots again
        assert "loss" in notes["loss-chart"] or notes["loss-chart"]


async def test_a_chart_plotext_cannot_draw_shows_a_note(fixed_sessions, monkeypatch):
    directory, records = fixed_sessions
    app = make_app(directory, None, replay=load(directory / f"{records[0].id}.json"), probe=FixedProbe())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        chart = app.screen.query_one("#loss-chart", MetricChart)
        monkeypatch.setattr(chart.plt, "build", lambda: [][1])  # plotext's IndexError at 40x12
        chart.refresh()
        await pilot.pause()
        assert str(chart.render()) == "loss: cannot draw at this size"


def post_out_of_date_resizes(screen, sizes) -> None:
    """What quick resizes leave in a screen's queue: resize events with sizes
    the terminal no longer has, other messages between them."""
    from textual import events
    from textual.geometry import Size

    for width, height in sizes:
        screen.post_message(events.Resize(Size(width, height), Size(width, height)))
        screen.call_later(lambda: None)


@pytest.mark.parametrize("modal", [False, True], ids=["screen", "under a dialog"])
async def test_out_of_date_resizes_leave_the_screens_at_the_terminal_size(fixed_sessions, modal):
    """The random keys below once froze the app: two such sizes took turns
    (21x34, 32x26, 21x34, ...) on a screen of an 80-column terminal."""
    directory, records = fixed_sessions
    app = make_app(directory, None, replay=load(directory / f"{records[0].id}.json"), probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen))
        live = app.screen
        if modal:
            await pilot.press("f1")
            await wait_for(pilot, lambda: app.screen is not live)
        post_out_of_date_resizes(app.screen, [(21, 34), (32, 26)])
        post_out_of_date_resizes(live, [(32, 26), (21, 34)])
        await pilot.pause(0.3)
        footer = live.query_one(KeyFooter).region
        assert (footer.width, footer.y) == (80, 23)  # the last row of 80x24, not of 32x26 or 21x34
        if modal:
            dialog = app.screen.query_one("#help").region
            assert (dialog.width, dialog.height) == (76, 21)  # 76 wide, 90% of 24 high


async def random_keys_and_resizes(pilot, seed: int) -> None:
    rng = random.Random(seed)
    for step in range(STEPS):
        if rng.random() < 0.2:
            send_resize(pilot, rng.randint(1, 110), rng.randint(1, 34))
        else:
            send_key(pilot, rng.choice(KEYS))
        if step % 5 == 4:  # let the app draw what it has so far
            await pilot.pause(0)
    await pilot.pause(0.1)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_random_keys_and_resizes_during_a_replay(
    fixed_sessions, tiny_data_dir, size, tmp_path, monkeypatch
):
    directory, records = fixed_sessions
    monkeypatch.chdir(tmp_path)  # an export the keys make (e, a name, enter) lands there
    # the tiny data: a run the keys start (tab to the form's button, enter) trains on it, not on
    # whatever Fashion-MNIST this machine has
    app = make_app(
        directory, tiny_data_dir, replay=load(directory / f"{records[0].id}.json"), probe=FixedProbe()
    )
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await random_keys_and_resizes(pilot, seed=size[0])
        await app.action_quit()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_random_keys_and_resizes_during_a_live_run(
    fixed_sessions, tiny_data_dir, size, tmp_path, monkeypatch
):
    """The example: a live run at 40x12 and quick keys gave an IndexError in plotext."""
    directory, _ = fixed_sessions
    monkeypatch.chdir(tmp_path)
    app = make_app(directory, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        app.start_training(parse_run_config(arch="16", epochs=10_000))
        await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen) and app.live_view.busy)
        await random_keys_and_resizes(pilot, seed=size[1])
        await app.action_quit()  # stops the run (and saves it) first


# ------------------------------------------------------------- a crash


def start_headless(monkeypatch) -> None:
    """The command runs the app as in a terminal, headless (without one it prints its help)."""
    from fmlab.tui.cli import app_command

    run = FmlabApp.run
    monkeypatch.setattr(FmlabApp, "run", lambda self, **_: run(self, headless=True, size=(80, 24)))
    monkeypatch.setattr(app_command, "in_a_terminal", lambda: True)


@pytest.mark.parametrize("args", [["tui"], []], ids=["fmlab tui", "fmlab"])
def test_a_crash_ends_the_command_with_status_1_and_one_line(monkeypatch, tmp_path, args):
    def crash(screen) -> None:
        raise IndexError("list index out of range (a test's crash)")

    monkeypatch.setattr(ConfigureScreen, "on_mount", crash)
    start_headless(monkeypatch)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Error: the app stopped on an internal error (IndexError: list index out of range (a test's crash)); "
        "the details are in "
    )
    report = Path(lines[0].rsplit(" ", 1)[1])
    assert "Traceback" in report.read_text() and "crash" in report.read_text()


def test_leaving_the_app_normally_ends_with_status_0(monkeypatch, tmp_path):
    monkeypatch.setattr(ConfigureScreen, "on_mount", lambda screen: screen.app.exit())
    start_headless(monkeypatch)
    result = CliRunner().invoke(cli, ["tui", "--sessions-dir", str(tmp_path)])
    assert result.exit_code == 0 and result.output == ""
