"""Past sweeps in the app: the sweep view lists saved sweeps, a sessions
folder's or a reproduce folder's (its studies), and reopens one with its
table, its overlaid curves and each run's analysis."""

from __future__ import annotations

import json
import os
from functools import partial

import pilot_helpers
import pytest
from pilot_helpers import type_into
from rich.text import Text
from sessions_fixture import FixedProbe
from textual.widgets import DataTable

from fmlab.trainer.analysis import analyze_record
from fmlab.trainer.events import EpochMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.sessions import load
from fmlab.trainer.studies.grid import expand, parse_grid
from fmlab.trainer.studies.reproduce import Reproduction, Study
from fmlab.trainer.studies.saved import SweepFolder, saved_runs
from fmlab.trainer.studies.sweep import Sweep, SweepError, load_sweep
from fmlab.tui.app import make_app
from fmlab.tui.screens import sweep as sweep_screen
from fmlab.tui.screens.live import LiveScreen
from fmlab.tui.screens.saved_sweeps import SavedSweepsScreen
from fmlab.tui.screens.sweep import SweepScreen

SMALL = "24"
SIZE = (100, 30)
wait_for = partial(pilot_helpers.wait_for, timeout=60.0)


@pytest.fixture(scope="module")
def trained_sweep(tiny_datasets, tmp_path_factory):
    """A finished two-run sweep of 4 epochs in its sessions folder."""
    sessions = tmp_path_factory.mktemp("swept") / "sessions"
    configs = expand(parse_grid(lr="0.3,0.02", arch=SMALL, epochs=4, device="cpu"))
    sweep = Sweep.new(configs, sessions, table="lr", preset="lr")
    list(sweep.run(tiny_datasets))
    return sessions, load_sweep(sweep.record.path)


@pytest.fixture(scope="module")
def reproduction(tiny_datasets, tmp_path_factory):
    """A reproduce folder with two small studies."""
    out = tmp_path_factory.mktemp("reproduced")

    def runs(lrs, arch=SMALL):
        return tuple(parse_run_config(arch=arch, lr=lr, epochs=2, device="cpu") for lr in lrs)

    studies = [
        Study("lr", "learning rates", "lr", runs([0.1, 0.01]), "note"),
        Study(
            "architectures", "architectures", "architectures", runs([0.05]) + runs([0.05], "24,16"), "note"
        ),
    ]
    made = Reproduction(out, studies=studies, figures=False)
    for study in studies:
        list(made.run_study(study, tiny_datasets))
    return out


def plain_rows(table: DataTable) -> list[list[str]]:
    return [
        [
            cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
            for cell in table.get_row_at(i)
        ]
        for i in range(table.row_count)
    ]


def headers(table: DataTable) -> list[str]:
    return [str(column.label) for column in table.columns.values()]


# ----------------------------------------------------------------- the core


def test_a_saved_sweeps_runs_come_back_with_their_sessions_and_analysis(trained_sweep):
    sessions, sweep = trained_sweep
    runs = saved_runs(sweep, sessions)
    assert [run.config for run in runs] == sweep.configs
    for run, session in zip(runs, sweep.sessions):
        record = load(sessions / f"{session}.json")
        assert run.record.id == session and not run.problem
        assert run.analysis == analyze_record(record)
        assert run.row.best_epoch == record.results.best_epoch


def test_a_run_whose_session_is_gone_or_never_started_says_so(trained_sweep, tmp_path):
    sessions, sweep = trained_sweep
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    assert all("is not in" in run.problem and run.record is None for run in saved_runs(sweep, elsewhere))
    sweep.sessions[1] = None
    sweep.rows[1] = None
    try:
        assert saved_runs(sweep, sessions)[1].problem == "never started"
    finally:
        sweep.sessions[1] = load_sweep(sweep.path).sessions[1]


def test_a_reproduce_folder_is_told_from_a_sessions_folder(reproduction, trained_sweep):
    folder = SweepFolder.of(reproduction)
    assert folder.reproduction and folder.sessions == reproduction / "sessions"
    assert sorted(s.preset for s in folder.records()[0]) == ["architectures", "lr"]
    sessions, _ = trained_sweep
    assert not SweepFolder.of(sessions).reproduction
    assert SweepFolder.of(sessions).sessions == sessions


def test_a_sweep_file_that_is_not_a_regular_file_or_names_a_path_is_refused(tmp_path):
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    os.mkfifo(sweeps / "fifo.json")  # a plain open() would wait for a writer forever
    with pytest.raises(SweepError, match="FIFO"):
        load_sweep(sweeps / "fifo.json")
    bad = {"schema": "fmlab.sweep", "version": 1, "id": "../../x", "runs": []}
    (sweeps / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(SweepError, match="cannot name a file"):
        load_sweep(sweeps / "bad.json")


# ----------------------------------------------------------------- the app


async def open_saved(pilot) -> SavedSweepsScreen:
    await pilot.press("f5")
    await pilot.pause()
    assert isinstance(pilot.app.screen, SweepScreen)
    await pilot.press("ctrl+o")  # from a form field too
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, SavedSweepsScreen))
    return pilot.app.screen


async def test_the_sweep_view_reopens_a_saved_sweep_with_its_table_curves_and_analysis(
    trained_sweep, tiny_data_dir
):
    sessions, sweep = trained_sweep
    app = make_app(sessions, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_saved(pilot)
        listing = picker.query_one("#saved-table", DataTable)
        await wait_for(pilot, lambda: listing.row_count == 1)
        assert plain_rows(listing)[0][1:] == ["lr", "2/2", "completed"]
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, SweepScreen)
        await wait_for(pilot, lambda: screen.shown is not None and screen.shown.reopened)
        await pilot.pause()

        table = screen.query_one("#sweep-table", DataTable)
        assert headers(table) == ["lr", "test %", "best@epoch", "low loss", "trend", "status"]
        rows = plain_rows(table)
        assert [row[0] for row in rows] == ["0.3", "0.02"]
        for row, session in zip(rows, sweep.sessions):
            analysis = analyze_record(load(sessions / f"{session}.json"))
            assert row[2] == f"{analysis.best_test_acc:.2f}@{analysis.best_test_acc_epoch}"
            assert row[3].split()[0] == str(analysis.lowest_test_loss_epoch)
            assert row[4] == analysis.trend and row[5] == "completed"
        status = str(screen.query_one("#run-status").render())
        assert "completed" in status and "2/2 runs done" in status
        # the curves: both runs, every epoch, on the sweep's charts
        for chart in screen.query("#sweep-loss, #sweep-accuracy"):
            assert [len(run.epoch) for run in chart.runs] == [4, 4]
            assert [run.name for run in chart.runs] == ["lr 0.3 24", "lr 0.02 24"]

        table.focus()
        await pilot.press("down", "enter")  # the second run's own charts
        await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen))
        assert app.screen.record.id == sweep.sessions[1]


async def test_the_sweep_view_follows_a_sweep_training_elsewhere(
    tiny_datasets, tiny_data_dir, tmp_path, monkeypatch
):
    """A sweep another fmlab trains (a Ray driver, another terminal): the
    reopened view reads it again as it goes, until it ends."""
    monkeypatch.setattr(sweep_screen, "FOLLOW_SECONDS", 0.2)
    sessions = tmp_path / "sessions"
    configs = expand(parse_grid(lr="0.3,0.02", arch=SMALL, epochs=3, device="cpu"))
    training = Sweep.new(configs, sessions, table="lr", preset="lr").run(tiny_datasets)
    next(i for i, (_, event) in enumerate(training) if isinstance(event, EpochMetrics))  # one epoch in
    app = make_app(sessions, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_saved(pilot)
        await wait_for(pilot, lambda: picker.query_one("#saved-table", DataTable).row_count == 1)
        await pilot.press("enter")
        screen = app.screen
        await wait_for(pilot, lambda: screen.shown is not None and screen.shown.reopened)

        def status() -> str:
            return str(screen.query_one("#run-status").render())

        assert "training elsewhere" in status() and "0/2 runs done" in status()
        assert screen.followed is not None

        for _ in training:  # the rest of the sweep, while the view is open
            pass
        await wait_for(pilot, lambda: "completed" in status())
        assert "2/2 runs done" in status() and screen.followed is None
        assert [row[-1] for row in plain_rows(screen.query_one("#sweep-table", DataTable))] == [
            "completed"
        ] * 2
        for chart in screen.query("#sweep-loss, #sweep-accuracy"):
            assert [len(run.epoch) for run in chart.runs] == [3, 3]


async def test_the_app_opens_a_reproduce_folders_studies(reproduction, tiny_data_dir, sessions_dir):
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_saved(pilot)
        listing = picker.query_one("#saved-table", DataTable)
        await wait_for(pilot, lambda: "no saved sweeps" in str(picker.query_one("#saved-note").render()))
        await type_into(pilot, "#saved-folder", str(reproduction))
        await pilot.press("enter")
        await wait_for(pilot, lambda: listing.row_count == 2)
        assert "2 studies" in str(picker.query_one("#saved-note").render())
        studies = [row[1] for row in plain_rows(listing)]
        listing.focus()
        await pilot.press(*["down"] * studies.index("architectures"), "enter")
        screen = app.screen
        await wait_for(pilot, lambda: isinstance(screen, SweepScreen) and screen.shown.reopened)
        await pilot.pause()
        rows = plain_rows(screen.query_one("#sweep-table", DataTable))
        assert [row[0] for row in rows] == ["(24)", "(24,16)"]
        assert all(row[-1] == "completed" and "@" in row[-4] for row in rows)


async def test_a_sweep_file_with_markup_is_shown_as_written(trained_sweep, tiny_data_dir, tmp_path):
    sessions, sweep = trained_sweep
    copy = tmp_path / "sessions"
    (copy / "sweeps").mkdir(parents=True)
    data = json.loads(sweep.path.read_text())
    data["preset"], data["status"] = "[bold red]x[/]", "[link=http://a]y"
    (copy / "sweeps" / sweep.path.name).write_text(json.dumps(data))
    app = make_app(copy, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_saved(pilot)
        listing = picker.query_one("#saved-table", DataTable)
        await wait_for(pilot, lambda: listing.row_count == 1)
        assert plain_rows(listing)[0][1] == "[bold red]x[/]"
        await pilot.press("enter")
        screen = app.screen
        await wait_for(pilot, lambda: isinstance(screen, SweepScreen) and screen.shown.reopened)
        await pilot.pause()
        shown = pilot_helpers.screen_text(app)
        assert "sweep [bold red]x[/] [link=http://a]y" in shown
        assert "2 run(s) without curves" in pilot_helpers.notices(app)  # its sessions are elsewhere


async def test_escape_goes_from_a_reopened_sweep_back_to_the_form(trained_sweep, tiny_data_dir):
    sessions, _ = trained_sweep
    app = make_app(sessions, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_saved(pilot)
        await wait_for(pilot, lambda: app.screen.query_one("#saved-table", DataTable).row_count == 1)
        await pilot.press("enter")
        screen = app.screen
        await wait_for(pilot, lambda: isinstance(screen, SweepScreen) and screen.shown.reopened)
        await pilot.pause()
        assert not screen.query_one("#sweep-form").display  # the table has the width
        table = screen.query_one("#sweep-table", DataTable)
        assert table.virtual_size.width <= table.size.width  # every column fits 80 columns
        await pilot.press("escape")
        await pilot.pause()
        assert screen.query_one("#sweep-form").display and not screen.shown.reopened
        assert plain_rows(screen.query_one("#sweep-table", DataTable))[0][-1] == "pending"  # the form's plan


@pytest.mark.parametrize(
    "key, value", [("final_test_acc", "x"), ("epochs_done", 1.5), ("status", None), ("best_epoch", True)]
)
def test_a_sweep_file_whose_results_are_not_of_their_kind_is_refused(trained_sweep, tmp_path, key, value):
    _, sweep = trained_sweep
    data = json.loads(sweep.path.read_text())
    data["runs"][0]["result"][key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SweepError, match=key):
        load_sweep(path)
