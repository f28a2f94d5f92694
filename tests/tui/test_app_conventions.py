"""The app behaves the way people's other tools do: help on F1 and ?, the
F-keys in every footer, sorting by a header click, charts that tell the
truth, new runs and resumes from the browser, comparisons labelled by what
differs, settings kept between launches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pilot_helpers import screen_text, type_into, wait_for
from rich.text import Text
from sessions_fixture import FixedProbe, fixed_record
from textual.widgets import DataTable, Static

from fmlab.trainer.atomic import write_atomic
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.sessions import encode, load
from fmlab.tui.app import make_app
from fmlab.tui.messages import TrainingEvent
from fmlab.tui.screens.compare import CompareScreen, run_labels
from fmlab.tui.screens.configure import ConfigureScreen
from fmlab.tui.screens.help import HelpScreen
from fmlab.tui.screens.live import LiveScreen
from fmlab.tui.screens.session_rows import COLUMNS
from fmlab.tui.screens.sessions import SessionsScreen
from fmlab.tui.widgets.config_form import ConfigForm
from fmlab.tui.widgets.gradient_chart import GradientChart
from fmlab.tui.widgets.metric_chart import MetricChart

F_KEYS = "f1 Help f2 Run f3 Live f4 Sessions f5 Sweep ^q Quit"


async def open_browser(pilot, rows: int) -> SessionsScreen:
    await pilot.press("f4")
    browser = pilot.app.screen
    await wait_for(pilot, lambda: browser.query_one(DataTable).row_count == rows)
    pilot.app.clear_notifications()
    return browser


def ids_in_order(browser: SessionsScreen) -> list[str]:
    table = browser.query_one(DataTable)
    return [Path(table.coordinate_to_cell_key((row, 0)).row_key.value).stem for row in range(table.row_count)]


# ------------------------------------------------------------- help and footers


async def test_f1_and_question_mark_open_the_keys_of_every_screen(fixed_sessions):
    directory, _ = fixed_sessions
    app = make_app(directory, None, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("f1")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        assert help_screen.sections[0].name == "run form"  # the screen it was opened on comes first
        assert {s.name for s in help_screen.sections} >= {"everywhere", "live", "replay", "sessions", "sweep",
                                                          "compare", "charts"}  # fmt: skip
        text = screen_text(app)
        assert "Run form (F2)  · this screen" in text and "ctrl+r" in text
        await pilot.press("escape")
        assert isinstance(app.screen, ConfigureScreen)
        await open_browser(pilot, rows=6)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen) and app.screen.sections[0].name == "sessions"
        assert "click a header" in screen_text(app)
        await pilot.press("question_mark")  # ? again closes it
        assert isinstance(app.screen, SessionsScreen)
        # in the filter, ? is a character like any other
        await pilot.press("slash", "question_mark")
        assert isinstance(app.screen, SessionsScreen) and app.screen.query_one("#filter").value == "?"


async def test_every_footer_shows_the_f_keys_at_80_columns(fixed_sessions):
    directory, records = fixed_sessions
    app = make_app(directory, None, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for key in ("f2", "f3", "f5"):
            await pilot.press(key)
            await pilot.pause()
            assert screen_text(app).splitlines()[-1].startswith(F_KEYS), key
        browser = await open_browser(pilot, rows=6)
        assert screen_text(app).splitlines()[-1].startswith(F_KEYS)
        await pilot.press("r")  # a replay, pushed over the browser
        await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen))
        await pilot.pause()
        assert screen_text(app).splitlines()[-1].startswith(F_KEYS)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is browser)
        await pilot.press("space", "space", "c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.pause()
        assert screen_text(app).splitlines()[-1].startswith(F_KEYS)


# ------------------------------------------------------------- the browser


async def test_clicking_a_header_sorts_by_it_and_again_reverses(fixed_sessions):
    directory, _ = fixed_sessions
    app = make_app(directory, None, probe=FixedProbe())
    async with app.run_test(size=(120, 30)) as pilot:
        browser = await open_browser(pilot, rows=6)
        table = browser.query_one(DataTable)
        keys = [c.key for c in COLUMNS]
        lr = keys.index("lr")
        x = 1 + sum(c.width + 2 for c in COLUMNS[:lr]) + 2  # the border, the columns before, into "lr"
        await pilot.click(table, offset=(x, 1))
        await pilot.pause()
        assert browser.sort_key == "lr" and not browser.descending
        assert ids_in_order(browser)[:3] == ["20250302-100000-wider-lr0.01-bbbb", "20250301-100000-base-lr0.1-aaaa",
                                             "20250303-100000-64-32-lr0.5-cccc"]  # fmt: skip
        assert str(table.columns[table.ordered_columns[lr].key].label) == "lr▲"
        await pilot.click(table, offset=(x, 1))
        await pilot.pause()
        assert browser.descending and ids_in_order(browser)[0] == "20250303-100000-64-32-lr0.5-cccc"
        assert str(table.ordered_columns[lr].label) == "lr▼"
        assert "sorted by lr ▼" in table.border_subtitle


async def test_the_filter_matches_fields_not_the_digits_of_ids(fixed_sessions):
    directory, _ = fixed_sessions
    app = make_app(directory, None, probe=FixedProbe())
    async with app.run_test(size=(100, 30)) as pilot:
        browser = await open_browser(pilot, rows=6)

        async def shown(text: str) -> list[str]:
            await type_into(pilot, "#filter", text)
            await pilot.pause()
            return [s.id for s in browser.visible()]

        assert await shown("10") == []  # every id holds the time 10:00:00
        assert await shown("0.01") == ["20250302-100000-wider-lr0.01-bbbb"]
        assert await shown("wid") == ["20250302-100000-wider-lr0.01-bbbb"]
        assert await shown("id:cccc") == ["20250303-100000-64-32-lr0.5-cccc"]
        assert len(await shown("bs:64 sgd complete")) == 3


async def test_marked_rows_hidden_by_the_filter_are_said_and_left_out(fixed_sessions):
    directory, _ = fixed_sessions
    app = make_app(directory, None, probe=FixedProbe())
    async with app.run_test(size=(100, 30)) as pilot:
        browser = await open_browser(pilot, rows=6)
        await pilot.press("space", "space")  # the two newest: 64,32 and wider
        await type_into(pilot, "#filter", "wider")
        await pilot.pause()
        table = browser.query_one(DataTable)
        assert "2 marked, 1 hidden by the filter" in table.border_subtitle
        await pilot.press("escape", "c")
        assert "1 marked is hidden by the filter" in "\n".join(str(n.message) for n in app._notifications)
        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen is not browser)
        question = str(app.screen.query_one(".dialog-text", Static).render())
        assert "Delete 20250302-100000-wider-lr0.01-bbbb?" in question
        assert "1 marked session hidden by the filter is left out" in question


async def test_n_fills_the_run_form_with_the_sessions_settings(fixed_sessions):
    directory, records = fixed_sessions
    app = make_app(directory, None, probe=FixedProbe())
    async with app.run_test(size=(100, 30)) as pilot:
        browser = await open_browser(pilot, rows=6)
        await pilot.press("down")  # the wider run, lr 0.01, 4 epochs
        assert browser.highlighted_summaries()[0].id == records[1].id
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigureScreen))
        form = app.screen.query_one(ConfigForm)
        await wait_for(pilot, lambda: form.config == records[1].config)
        await pilot.press("f4")
        await wait_for(pilot, lambda: app.screen is browser)
        await pilot.press("up", "n")  # the newest: custom widths 64,32
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigureScreen))
        await wait_for(pilot, lambda: form.config == records[2].config)
        assert app.screen.query_one("#f-arch").value == "custom"


async def test_r_resumes_a_stopped_session_from_the_browser(tiny_data_dir, sessions_dir):
    EPOCHS = 40
    messages = []
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=(100, 30), message_hook=messages.append) as pilot:
        # long enough that c lands before the run ends on its own (a tiny epoch takes milliseconds)
        app.start_training(parse_run_config(arch="16", epochs=EPOCHS, device="cpu"))

        def epochs_seen() -> int:
            return sum(
                isinstance(m, TrainingEvent) and type(m.event).__name__ == "EpochMetrics" for m in messages
            )

        await wait_for(pilot, lambda: epochs_seen() >= 2)
        await pilot.press("c")
        await wait_for(pilot, lambda: not app.live_view.busy)
        [path] = sessions_dir.glob("*.json")
        stopped = load(path)
        assert stopped.status == "stopped" and 2 <= len(stopped.epochs) < EPOCHS
        browser = await open_browser(pilot, rows=1)
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen))
        live = app.screen
        await wait_for(pilot, lambda: live.live.results is not None, timeout=60)
        await wait_for(pilot, lambda: not live.busy)
        assert live.live.results.status == "completed"
        # the earlier epochs show too: the charts hold the whole run
        assert live.live.series.epoch == list(range(1, EPOCHS + 1))
        resumed = load(path)
        assert resumed.status == "completed" and [e.epoch for e in resumed.epochs] == list(
            range(1, EPOCHS + 1)
        )
        assert resumed.epochs[: len(stopped.epochs)] == stopped.epochs
        # a completed session is not resumed: the browser says why
        await pilot.press("f4")
        await wait_for(pilot, lambda: app.screen is browser and browser.summaries[0].status == "completed")
        await pilot.press("R")
        await pilot.pause()
        assert app.screen is browser and "only stopped or interrupted" in "\n".join(
            str(n.message) for n in app._notifications
        )


# ------------------------------------------------------------- charts


def rows_drawn_by(chart: MetricChart, label: str) -> set[int]:
    """The rows of the rendered chart holding points of the series whose
    legend entry reads ``label``: its colour is the legend marker's."""
    rendered = chart.render()
    assert isinstance(rendered, Text)
    lines = rendered.split()
    legend_row = next(i for i, line in enumerate(lines) if label in line.plain)
    legend = lines[legend_row]
    marker = legend.plain.index(label) - 2  # the marker's last cell, before a space
    assert legend.plain[marker] == "⢕", legend.plain
    color = next(span.style.color for span in legend.spans if span.start <= marker < span.end and span.style)
    rows = set()
    for number, line in enumerate(lines):
        for span in line.spans:
            drawn = line.plain[span.start : span.end]
            if (
                span.style
                and getattr(span.style, "color", None) == color
                and any("⠁" <= c <= "⣿" for c in drawn)
            ):
                rows.add(number)
    return rows - {legend_row}


async def test_the_gradient_mean_has_its_own_axis_and_is_no_flat_line(fixed_sessions):
    directory, records = fixed_sessions
    app = make_app(directory, None, replay=load(directory / f"{records[0].id}.json"), probe=FixedProbe())
    async with app.run_test(size=(100, 36)) as pilot:
        await pilot.press("f", "f", "f", "f")  # instant
        live = app.screen
        await wait_for(pilot, lambda: live.live.results is not None)
        await pilot.pause(0.3)
        chart = live.query_one(GradientChart)
        # the fixture's mean is 0.001 sin(step / 5): drawn times 1e4 on the right axis
        mean_rows = rows_drawn_by(chart, "mean ×1e-4 →")
        assert len(mean_rows) >= 5, mean_rows  # it rises and falls across the chart
        assert len(rows_drawn_by(chart, "norm ←")) >= 3


async def test_smoothing_keys_set_the_ema_weight_and_show_it(fixed_sessions, tmp_path):
    directory, records = fixed_sessions
    settings = tmp_path / "settings.json"
    app = make_app(directory, None, replay=load(directory / f"{records[0].id}.json"), probe=FixedProbe(),
                   settings_path=settings)  # fmt: skip
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f", "f", "f", "f")
        live = app.screen
        await wait_for(pilot, lambda: live.live.results is not None)
        charts = list(live.query(MetricChart))
        await pilot.press("s")
        assert all(c.smooth and c.smoothing == 0.6 for c in charts)
        assert "EMA 0.6" in charts[0].border_title
        await pilot.press("right_square_bracket")
        assert all(c.smoothing == 0.8 for c in charts) and "EMA 0.8" in charts[0].border_title
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert all(c.smoothing == 0.3 for c in charts)
        await pilot.press("left_square_bracket")
        assert not any(c.smooth for c in charts) and "EMA" not in charts[0].border_title
        await pilot.press("right_square_bracket", "right_square_bracket")
        assert all(c.smooth and c.smoothing == 0.6 for c in charts)
    kept = json.loads(settings.read_text())
    assert kept["charts"]["smooth"] is True and kept["charts"]["smoothing"] == 0.6


def test_the_ema_is_tensorboards_debiased_average():
    from fmlab.tui.widgets.curves import downsample, ema

    assert ema([3.0, 3.0, 3.0], 0.9) == pytest.approx([3.0, 3.0, 3.0])  # debiased: no pull towards 0
    smoothed = ema([0.0, 10.0], 0.5)
    assert smoothed[0] == 0.0 and abs(smoothed[1] - 10 * 0.5 / 0.75) < 1e-12
    # a spike survives downsampling: the envelope keeps each bucket's extremes
    ys = [1.0] * 1000
    ys[517] = 50.0
    xs, kept = downsample(list(range(1000)), ys, 40)
    assert len(kept) <= 40 and max(kept) == 50.0 and 517 in xs


async def test_a_one_epoch_runs_axis_starts_at_0(tmp_path):
    record = fixed_record("one-epoch-run", 0.1, 1, 1)
    write_atomic(tmp_path / "one-epoch-run.json", encode(record))
    app = make_app(tmp_path, None, replay=load(tmp_path / "one-epoch-run.json"), probe=FixedProbe())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f", "f", "f", "f")
        live = app.screen
        await wait_for(pilot, lambda: live.live.results is not None)
        await pilot.pause(0.3)
        accuracy = live.query_one("#accuracy-chart").render().plain
        ticks = accuracy.strip().splitlines()[-1].split()
        assert ticks[0] == "0" and ticks[-1] == "40" and "60" not in ticks  # 40 steps, not 20-60


# ------------------------------------------------------------- compare


def test_labels_say_what_differs():
    base = dict(arch="base", epochs=5)
    configs = [parse_run_config(lr=0.1, **base), parse_run_config(lr=0.01, **base)]
    assert run_labels(configs) == ["lr 0.1", "lr 0.01"]
    mixed = [parse_run_config(arch="base", optimizer="sgd"), parse_run_config(arch="wider", optimizer="adam")]
    assert run_labels(mixed) == ["base sgd", "wider adam"]
    same = [parse_run_config(), parse_run_config()]
    assert run_labels(same) == ["#1", "#2"]


async def test_compare_labels_runs_by_what_differs_and_highlights_it(tmp_path):
    for lr, day in ((0.1, 1), (0.01, 2)):
        record = fixed_record(f"run-lr{lr}", lr, 3, day)
        write_atomic(tmp_path / f"{record.id}.json", encode(record))
    app = make_app(tmp_path, None, probe=FixedProbe())
    async with app.run_test(size=(100, 36)) as pilot:
        await open_browser(pilot, rows=2)
        await pilot.press("space", "space", "c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        compare = app.screen
        await pilot.pause(0.3)
        assert compare.labels == ["lr 0.01", "lr 0.1"]
        loss = compare.query_one("#compare-loss").render().plain
        assert "lr 0.01" in loss and "lr 0.1" in loss and "#1" not in loss
        assert compare.query_one(GradientChart).runs  # the gradient panel, both runs
        table = compare.query_one(DataTable)
        lr_column = [str(c.label) for c in table.ordered_columns].index("lr")
        assert "underline" in str(table.ordered_columns[lr_column].label.style)
        arch_column = [str(c.label) for c in table.ordered_columns].index("arch")
        assert "underline" not in str(table.ordered_columns[arch_column].label.style)
        assert "differ in lr" in compare.sub_title


# ------------------------------------------------------------- forms and settings


async def test_an_error_in_the_form_moves_no_row(sessions_dir):
    app = make_app(sessions_dir, None, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        rows = {name: screen.query_one(f"#f-{name}").region for name in ("epochs", "seed", "device")}
        await type_into(pilot, "#f-lr", "0")
        await type_into(pilot, "#f-batch_size", "x")
        await pilot.pause()
        assert set(screen.query_one(ConfigForm).errors) == {"lr", "batch_size"}
        assert {name: screen.query_one(f"#f-{name}").region for name in rows} == rows
        assert "lr: 0 must be greater than 0" in screen_text(app)


async def test_theme_chart_options_and_the_last_run_form_are_kept(tmp_path, tiny_data_dir, sessions_dir):
    settings = tmp_path / "settings.json"
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe(), settings_path=settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+t")
        assert app.theme == "textual-light"
        app.screen.query_one("#f-arch").value = "custom"
        await pilot.pause()
        await type_into(pilot, "#f-widths", "16")
        await type_into(pilot, "#f-lr", "0.05")
        await type_into(pilot, "#f-epochs", "1")
        await pilot.pause()
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen))
        await wait_for(pilot, lambda: app.live_view.live.results is not None, timeout=60)
        await pilot.press("x")
        app.screen.query_one("#loss-chart").focus()
        await pilot.press("l")
    again = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe(), settings_path=settings)
    async with again.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert again.theme == "textual-light"
        assert again.screen.query_one(ConfigForm).config == parse_run_config(lr=0.05, epochs=1, arch="16")
        await pilot.press("f3")
        await pilot.pause()
        assert again.screen.query_one("#loss-chart").x_axis == "epoch"
        assert again.screen.query_one("#loss-chart").log_scale


async def test_a_bad_settings_file_is_one_warning_and_the_defaults(tmp_path, sessions_dir):
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps({"theme": 3, "charts": {"smoothing": 7, "x_axis": "epoch"}, "run": {"lr": -1}})
    )
    app = make_app(sessions_dir, None, probe=FixedProbe(), settings_path=settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.settings.current.charts.x_axis == "epoch" and app.settings.current.charts.smoothing == 0.6
        notes = "\n".join(str(n.message) for n in app._notifications)
        assert re.search(r"settings theme, charts.smoothing, run in .* were not valid", notes), notes
    settings.write_text("{not json")
    assert make_app(sessions_dir, None, probe=FixedProbe(), settings_path=settings).settings.warnings


def test_the_default_settings_file_is_in_the_config_folder(tmp_path, monkeypatch):
    """The tests' own config folder (conftest): the user's is never touched."""
    from fmlab.tui.settings import settings_path

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert settings_path() == tmp_path / "fmlab" / "settings.json"


async def test_export_defaults_to_the_working_folder(fixed_sessions, tmp_path, monkeypatch):
    directory, records = fixed_sessions
    monkeypatch.chdir(tmp_path)
    app = make_app(directory, None, probe=FixedProbe())
    async with app.run_test(size=(100, 30)) as pilot:
        await open_browser(pilot, rows=6)
        await pilot.press("e")
        await wait_for(pilot, lambda: app.screen.query("#export-path"))
        assert app.screen.query_one("#export-path").value == f"exports/{records[2].id}.png"
        await pilot.press("enter")
        out = tmp_path / "exports" / f"{records[2].id}.png"
        await wait_for(pilot, lambda: f"wrote {out}" in "\n".join(str(n.message) for n in app._notifications))
