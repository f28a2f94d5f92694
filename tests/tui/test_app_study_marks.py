"""The study's marks in the app: the charts mark the epoch of the lowest test
loss (live, in a replay and in a comparison), and the sessions browser shows
each run's best epoch and flags a run trained on part of the training split."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from pilot_helpers import screen_text, type_into, wait_for
from sessions_fixture import STEPS_PER_EPOCH, FixedProbe, fixed_record
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Static

from fmlab.trainer.atomic import write_atomic
from fmlab.trainer.events import EpochMetrics, RunFinished
from fmlab.trainer.metrics import lowest_test_loss_epoch
from fmlab.trainer.sessions import SessionRecord, TrainData, encode, load
from fmlab.tui.app import make_app
from fmlab.tui.messages import TrainingEvent
from fmlab.tui.screens.live import LiveScreen
from fmlab.tui.screens.session_rows import COLUMNS, PARTIAL
from fmlab.tui.screens.sessions import SessionsScreen
from fmlab.tui.widgets.accuracy_chart import AccuracyChart
from fmlab.tui.widgets.curves import RunSeries
from fmlab.tui.widgets.loss_chart import LossChart
from fmlab.tui.widgets.metric_chart import MARK, EpochMark

# Lowest test loss at epoch 2, best test accuracy at epoch 3, the last epoch 4:
# a mark at the wrong one of the three fails.
TEST_LOSS = (0.9, 0.5, 0.6, 0.7)
TEST_ACC = (70.0, 75.0, 80.0, 79.0)
LOWEST, BEST = 2, 3


def marked_record(session_id: str = "20250305-100000-base-lr0.1-dddd", day: int = 5) -> SessionRecord:
    """A four-epoch session whose test loss is lowest at LOWEST and test accuracy best at BEST."""
    record = fixed_record(session_id, 0.1, len(TEST_LOSS), day)
    record.epochs = [
        replace(e, test_loss=loss, test_acc=acc) for e, loss, acc in zip(record.epochs, TEST_LOSS, TEST_ACC)
    ]
    record.results = replace(
        record.results,
        final_test_acc=TEST_ACC[-1],
        best_test_acc=max(TEST_ACC),
        best_epoch=BEST,
        lowest_test_loss_epoch=LOWEST,
    )
    return record


def write(directory: Path, record: SessionRecord) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{record.id}.json"
    write_atomic(path, encode(record))
    return path


def mark_column(chart) -> tuple[str, int]:
    """The rendered chart's lines and the column MARK is drawn in (one MARK)."""
    lines = chart.render().plain.splitlines()
    found = [(row, line.index(MARK)) for row, line in enumerate(lines) if MARK in line]
    assert len(found) == 1, lines
    return lines, found[0][1]


# ------------------------------------------------------------- the pure rule


def series_of(losses: list[float]) -> RunSeries:
    return RunSeries(epoch=list(range(1, len(losses) + 1)), test_loss=list(losses))


def metrics_of(losses: list[float]) -> list[EpochMetrics]:
    return [EpochMetrics(i, 1.0, 50.0, loss, 50.0, 1.0, 1.0) for i, loss in enumerate(losses, 1)]


NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    "losses, expected",
    [
        ([0.9, 0.5, 0.6, 0.7], 2),
        ([0.5, 0.4, 0.4, 0.6], 2),  # a tie: the first
        ([NAN, 0.8, NAN, 0.3], 4),  # NaN rows are skipped
        ([0.7, INF, -INF, 0.6], 4),  # so are infinite ones (a diverged run)
        ([NAN, INF], None),  # no finite loss: no mark
        ([], None),  # no epochs yet
        ([1.0], 1),
    ],
)
def test_the_series_lowest_test_loss_epoch_is_the_sessions(losses, expected):
    assert series_of(losses).lowest_test_loss_epoch() == expected
    assert lowest_test_loss_epoch(metrics_of(losses)) == expected


def test_the_rule_agrees_with_the_core_on_many_curves():
    import random

    generator = random.Random(13)
    for _ in range(500):
        pool = [NAN, INF, -INF, 0.1, 0.2, 0.2, 0.3]
        losses = [
            generator.choice(pool) if generator.random() < 0.5 else generator.random() for _ in range(7)
        ]
        losses = losses[: generator.randrange(8)]
        assert series_of(losses).lowest_test_loss_epoch() == lowest_test_loss_epoch(metrics_of(losses))


def test_a_series_from_a_session_has_the_sessions_epoch():
    record = marked_record()
    assert (
        RunSeries.from_record(record).lowest_test_loss_epoch()
        == lowest_test_loss_epoch(record.epochs)
        == LOWEST
    )


# ------------------------------------------------------------- the charts


async def test_a_replay_marks_the_lowest_test_loss_not_the_last_or_best_epoch(tmp_path):
    record = marked_record()
    path = write(tmp_path, record)
    app = make_app(tmp_path, None, replay=load(path), probe=FixedProbe())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f", "f", "f", "f")  # instant
        live = app.screen
        assert isinstance(live, LiveScreen)
        await wait_for(pilot, lambda: live.live.results is not None)
        await pilot.pause(0.3)
        loss, accuracy = live.query_one(LossChart), live.query_one(AccuracyChart)
        name = live.live.series.name
        # on the step axis the epoch ends at its last step
        for chart in (loss, accuracy):
            assert chart.marks == [EpochMark(name, LOWEST, LOWEST * STEPS_PER_EPOCH)]
            assert chart.border_subtitle == f"{MARK} lowest test loss: epoch {LOWEST}"
        # what plotext was asked to draw: the line at that x, MARK on the run's point there
        assert loss.plt.monitor.vcoord[0] == [LOWEST * STEPS_PER_EPOCH]
        assert ([LOWEST * STEPS_PER_EPOCH], [TEST_LOSS[LOWEST - 1]]) in marker_points(loss)
        assert ([LOWEST * STEPS_PER_EPOCH], [TEST_ACC[LOWEST - 1]]) in marker_points(accuracy)

        await pilot.press("x")  # the epoch axis: the mark follows
        await pilot.pause(0.3)
        assert loss.x_axis == "epoch"
        assert loss.marks == [EpochMark(name, LOWEST, float(LOWEST))]
        assert loss.plt.monitor.vcoord[0] == [LOWEST]
        # drawn: MARK stands in the column of the x axis's tick "2", on the line
        lines, column = mark_column(loss)
        assert lines[-1][column] == str(LOWEST)
        assert lines[-1][column - 1] == lines[-1][column + 1] == " "
        assert sum(line[column] == "│" for line in lines[:-2]) >= 3  # the vertical line


def marker_points(chart) -> list[tuple[list, list]]:
    """The (xs, ys) of every series plotext draws with MARK."""
    monitor = chart.plt.monitor
    return [
        (list(x), list(y))
        for x, y, markers in zip(monitor.x, monitor.y, monitor.marker)
        if markers and all(m == MARK for m in markers)
    ]


class Charts(App):
    def compose(self) -> ComposeResult:
        yield LossChart(id="loss")
        yield AccuracyChart(id="accuracy")


def add(series: RunSeries, epoch: int, test_loss: float) -> None:
    series.add_epoch(EpochMetrics(epoch, 1.0, 60.0, test_loss, 60.0 + epoch, 1.0, 1.0))


async def test_the_mark_moves_as_epochs_come_in_and_skips_non_finite_losses():
    app = Charts()
    async with app.run_test(size=(80, 30)) as pilot:
        loss, accuracy = app.query_one(LossChart), app.query_one(AccuracyChart)
        series = RunSeries(name="run", steps_per_epoch=10)

        def shown() -> list[int]:
            for chart in (loss, accuracy):
                chart.show([series])
            assert accuracy.marks == loss.marks
            return [m.epoch for m in loss.marks]

        assert shown() == [] and loss.border_subtitle == ""  # no epochs: no mark
        add(series, 1, math.nan)
        assert shown() == []  # a diverged first epoch: still none
        add(series, 2, 0.8)
        assert shown() == [2] and loss.marks[0].x == 20.0
        add(series, 3, 0.5)
        assert shown() == [3]  # a lower loss: the mark moves
        add(series, 4, 0.6)
        add(series, 5, math.inf)
        assert shown() == [3] and loss.border_subtitle == f"{MARK} lowest test loss: epoch 3"
        await pilot.pause()
        for chart in (loss, accuracy):
            mark_column(chart)  # drawn, once
        loss.log_scale = True  # on a log axis too
        assert [m.epoch for m in loss.marks] == [3]
        mark_column(loss)
        for size in ((30, 12), (12, 6)):  # small, then too small for a plot: it still draws
            await pilot.resize_terminal(*size)
            await pilot.pause()
            loss.render()


async def test_a_comparison_marks_each_run_in_its_colour_without_lines(tmp_path):
    first = marked_record()
    # the same curves but a lower first test loss: its point at epoch 2 is
    # where the first run's mark is, and must not cover it
    second = marked_record("20250306-100000-base-lr0.1-eeee", day=6)
    second.epochs[0] = replace(second.epochs[0], test_loss=0.4)
    app = make_app(tmp_path, None, probe=FixedProbe())
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_compare([first, second])
        await pilot.pause(0.5)
        loss, accuracy = app.screen.query_one(LossChart), app.screen.query_one(AccuracyChart)
        assert [m.epoch for m in loss.marks] == [m.epoch for m in accuracy.marks] == [LOWEST, 1]
        assert loss.plt.monitor.vcoord[0] == []  # several runs: no lines across the chart
        assert loss.border_subtitle == f"{MARK} lowest test loss"
        assert loss.render().plain.count(MARK) == 2


async def test_a_live_run_marks_its_lowest_test_loss(tiny_data_dir, sessions_dir):
    messages = []
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=(100, 30), message_hook=messages.append) as pilot:
        await pilot.press("f2")
        await pilot.pause()
        app.screen.query_one("#f-arch").value = "custom"
        await pilot.pause()
        await type_into(pilot, "#f-widths", "32")
        await type_into(pilot, "#f-epochs", "4")
        await type_into(pilot, "#f-lr", "0.5")
        await pilot.press("ctrl+r")
        live = app.screen
        assert isinstance(live, LiveScreen)
        loss = live.query_one(LossChart)
        await wait_for(pilot, lambda: loss.marks)  # once an epoch has arrived
        assert loss.marks[0].epoch in live.live.series.epoch
        await wait_for(
            pilot, lambda: any(isinstance(getattr(m, "event", None), RunFinished) for m in messages)
        )
        await pilot.pause(0.3)
        epochs = [
            m.event for m in messages if isinstance(m, TrainingEvent) and isinstance(m.event, EpochMetrics)
        ]
        finished = [
            m.event for m in messages if isinstance(m, TrainingEvent) and isinstance(m.event, RunFinished)
        ]
        lowest = lowest_test_loss_epoch(epochs)
        assert len(epochs) == 4 and lowest is not None
        assert finished[0].results.lowest_test_loss_epoch == lowest
        assert [m.epoch for m in loss.marks] == [lowest]
        assert loss.marks[0].x == lowest * live.live.series.steps_per_epoch  # the step axis
        assert loss.border_subtitle == f"{MARK} lowest test loss: epoch {lowest}"
        assert [m.epoch for m in live.query_one(AccuracyChart).marks] == [lowest]


# ------------------------------------------------------------- the browser


def cells(browser: SessionsScreen, session_id: str) -> dict[str, str]:
    table = browser.query_one(DataTable)
    key = next(str(s.path) for s in browser.summaries if s.id == session_id)
    return {c.key: str(value) for c, value in zip(COLUMNS, table.get_row(key))}


async def test_the_browser_shows_best_epochs_and_flags_partial_data(tmp_path):
    full = marked_record("20250305-100000-base-lr0.1-full", day=5)
    full.train_data = TrainData(2560, 2560)  # the fixture's environment trained on 2,560
    partial = replace(
        fixed_record("20250306-100000-base-lr0.01-part", 0.01, 4, 6), train_data=TrainData(2560, 60000)
    )
    old = fixed_record("20250304-100000-base-lr0.5-old", 0.5, 3, 4)  # from before train_data was recorded
    for record in (full, partial, old):
        write(tmp_path, record)
    app = make_app(tmp_path, None, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4")
        browser = app.screen
        table = browser.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)

        assert cells(browser, full.id)["best"] == f"{max(TEST_ACC):.2f}@{BEST}"
        assert cells(browser, partial.id)["best"] == f"{partial.results.best_test_acc:.2f}@4"
        assert PARTIAL in cells(browser, partial.id)["mark"]
        assert PARTIAL not in cells(browser, full.id)["mark"] + cells(browser, old.id)["mark"]
        assert cells(browser, partial.id)["data"] == "2,560/60,000"
        assert cells(browser, full.id)["data"] == "all" and cells(browser, old.id)["data"] == "-"

        # at 80x24 the flag and the best epoch are on screen, beside "completed"
        text = screen_text(app).splitlines()
        row = next(line for line in text if "03-06 10:00" in line)
        assert PARTIAL in row and "@4" in row and row.rstrip().endswith("completed│")
        assert f"{max(TEST_ACC):.2f}@{BEST}" in next(line for line in text if "03-05 10:00" in line)

        # the line under the table: the data in words and the lowest test loss's epoch
        async def detail_for(session_id: str) -> str:
            table.move_cursor(
                row=table.get_row_index(next(str(s.path) for s in browser.summaries if s.id == session_id))
            )
            await pilot.pause()
            return str(browser.query_one("#session-detail", Static).render())

        assert f"{PARTIAL} the first 2,560 of 60,000 training images" in await detail_for(partial.id)
        words = await detail_for(full.id)
        assert "all 2,560 training images" in words and f"lowest test loss at epoch {LOWEST}" in words
        assert PARTIAL not in words
        assert "training images" not in await detail_for(old.id)

        # marking keeps the flag
        await detail_for(partial.id)
        await pilot.press("space")
        assert cells(browser, partial.id)["mark"] == "✓" + PARTIAL

        # the filter finds partial runs, and a sort by best still works
        await type_into(pilot, "#filter", "data:partial")
        await pilot.pause()
        assert [s.id for s in browser.visible()] == [partial.id]
        await type_into(pilot, "#filter", "")
        await pilot.pause()
        # a click on the best header sorts by it, best first; again, reversed
        by_best = [r.id for r in sorted((full, partial, old), key=lambda r: -r.results.best_test_acc)]
        keys = [c.key for c in COLUMNS]
        x = 1 + sum(c.width + 2 for c in COLUMNS[: keys.index("best")]) + 2  # the border, the columns before
        await pilot.click(table, offset=(x, 1))
        await pilot.pause()
        assert browser.sort_key == "best" and browser.descending
        assert [s.id for s in browser.visible()] == by_best
        assert str(table.ordered_columns[keys.index("best")].label) == "best▼"
        await pilot.click(table, offset=(x, 1))
        await pilot.pause()
        assert [s.id for s in browser.visible()] == by_best[::-1]


def test_a_long_runs_best_cell_keeps_its_epoch():
    from fmlab.tui.screens.session_rows import BEST_WIDTH, best_of

    summary = load_summary(fixed_record("20250307-100000-base-lr0.1-long", 0.1, 3, 7))
    for epoch, text in ((47, "89.04@47"), (100, "89.0@100"), (1000, "89@1000"), (10000, "89@10000")):
        shown = best_of(replace(summary, best_test_acc=89.0412, best_epoch=epoch))
        assert shown == text and len(shown) <= BEST_WIDTH
    assert best_of(replace(summary, best_test_acc=None, best_epoch=None)) == "-"
    assert best_of(replace(summary, best_test_acc=88.5, best_epoch=None)) == "88.50"  # an old file


def load_summary(record: SessionRecord):
    from fmlab.trainer.sessions import SessionSummary

    return SessionSummary(
        id=record.id, path=Path(f"{record.id}.json"), status=record.status, created=record.created,
        arch="base", lr=0.1, optimizer="sgd", epochs=3, epochs_done=3, final_test_acc=80.0,
        best_test_acc=80.0, converged_epoch=None,
    )  # fmt: skip
