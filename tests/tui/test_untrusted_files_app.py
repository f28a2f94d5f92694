"""The app reads a sessions folder as untrusted data: ids, names and messages
from it are shown literally, special files never block it, and a session that
disagrees with itself is refused or repaired with a notice."""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import replace

from pilot_helpers import notices, screen_text, wait_for
from session_files import document_of, layout, make_record, write_document, write_record
from sessions_fixture import FixedProbe
from textual.widgets import DataTable, Static

from fmlab.trainer.sessions import ListingCache, load
from fmlab.trainer.text import visible
from fmlab.tui.app import make_app
from fmlab.tui.screens import session_rows
from fmlab.tui.screens.export import ExportScreen
from fmlab.tui.screens.live import LiveScreen
from fmlab.tui.screens.sessions import SessionsScreen

CLEAR_SCREEN = "\x1b[2J"


async def open_browser(pilot, rows: int) -> SessionsScreen:
    await pilot.press("f4")
    browser = pilot.app.screen
    assert isinstance(browser, SessionsScreen)
    await wait_for(pilot, lambda: browser.query_one(DataTable).row_count == rows)
    return browser


def row_texts(table: DataTable) -> list[str]:
    """Each row's cells, the empty ones left out, one space apart."""
    return [
        " ".join(text for c in table.get_row_at(i) if (text := str(getattr(c, "plain", c)).strip()))
        for i in range(table.row_count)
    ]


def detail_text(browser: SessionsScreen) -> str:
    return str(browser.query_one("#session-detail", Static).render())


async def test_the_browser_shows_ids_names_and_problems_literally(sessions_dir):
    write_record(sessions_dir, make_record("[link=evil]click"))  # used to crash when highlighted
    write_record(sessions_dir, make_record("[bold]X"))
    write_record(sessions_dir, make_record("[/bold]"), name="closing.json")  # used to crash the browser
    write_record(sessions_dir, make_record(CLEAR_SCREEN + "x"), name=f"{CLEAR_SCREEN}x.json")
    (sessions_dir / "[red]not json[b].json").write_text("nope")
    app = make_app(sessions_dir, None, probe=FixedProbe())
    async with app.run_test(size=(100, 30)) as pilot:
        browser = await open_browser(pilot, rows=5)
        table = browser.query_one(DataTable)
        rows = row_texts(table)
        assert any("[link=evil]click" in r for r in rows) and any("[bold]X" in r for r in rows)
        assert any("closing.json" in r for r in rows) and any("\\x1b[2Jx.json" in r for r in rows)
        assert any("[red]not json[b].json" in r for r in rows)
        details = []
        for row in range(table.row_count):
            table.move_cursor(row=row)
            await pilot.pause()
            details.append(detail_text(browser))
            text = screen_text(app)
            assert "\x1b" not in text and "\x07" not in text
        assert any(d.startswith("[link=evil]click  sgd") for d in details)
        assert any("session id '[/bold]' holds /" in d for d in details)
        assert any(f"{visible(sessions_dir)}/\\x1b[2Jx.json" in d for d in details)
        assert "\x1b" not in notices(app)


async def test_a_failed_run_s_message_and_id_are_shown_literally_in_a_replay(sessions_dir):
    record = make_record("[bold]failed")
    record.status = "failed"
    record.results = replace(record.results, status="failed", message="[bold red]X[/] " + CLEAR_SCREEN)
    path = write_record(sessions_dir, record)
    app = make_app(sessions_dir, None, replay=load(path), probe=FixedProbe())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, LiveScreen)
        await pilot.press("f", "f", "f", "f")
        await wait_for(pilot, lambda: screen.live.results is not None)
        await pilot.pause(0.3)
        status = str(screen.query_one("#run-status", Static).render())
        assert "✗ failed: [bold red]X[/] \\x1b[2J" in status
        text = screen_text(app)
        assert "replay [bold]failed" in text and "\x1b" not in text


async def test_export_reports_the_file_it_wrote(sessions_dir, tmp_path, monkeypatch):
    """The example: export wrote exports/[bold red]X[/].png but reported X.png."""
    monkeypatch.chdir(tmp_path)  # exports go to the working folder's exports/
    write_record(sessions_dir, make_record("[bold red]X"))
    app = make_app(sessions_dir, None, probe=FixedProbe())
    async with app.run_test(size=(100, 30)) as pilot:
        await open_browser(pilot, rows=1)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        await pilot.press("enter")
        out = (sessions_dir.parent / "exports" / "[bold red]X.png").resolve()
        await wait_for(pilot, lambda: f"wrote {out}" in notices(app), timeout=60)
        assert out.exists()


async def test_special_files_never_block_the_app(sessions_dir, monkeypatch):
    """The example: a FIFO named *.json froze the app, Ctrl+Q included."""
    write_record(sessions_dir, make_record("good-one"))
    os.mkfifo(sessions_dir / "fifo.json")
    os.symlink("/dev/zero", sessions_dir / "zero.json")
    os.symlink("loop.json", sessions_dir / "loop.json")
    on_ui_thread = []  # one entry per listing and per full read
    listing, loading = ListingCache.listing, session_rows.load

    def noting_the_thread(read):
        def read_and_note(*args):
            on_ui_thread.append(threading.current_thread() is threading.main_thread())
            return read(*args)

        return read_and_note

    monkeypatch.setattr(ListingCache, "listing", noting_the_thread(listing))
    monkeypatch.setattr(session_rows, "load", noting_the_thread(loading))
    app = make_app(sessions_dir, None, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        browser = await open_browser(pilot, rows=4)
        assert len(browser.unreadable) == 3
        table = browser.query_one(DataTable)
        for row in range(table.row_count):
            table.move_cursor(row=row)
            await pilot.press("o")
            await pilot.pause()
            if isinstance(app.screen, LiveScreen):
                await pilot.press("escape")
        assert len(on_ui_thread) >= 2 and not any(on_ui_thread)  # all in worker threads
        await asyncio.wait_for(pilot.press("ctrl+q"), timeout=20)
        await wait_for(pilot, lambda: not app.is_running, timeout=20)


async def test_sessions_that_disagree_with_themselves(sessions_dir):
    """Refused in the listing (5 epochs done of 1), refused on opening (a key
    repeated past the first line), or repaired with a notice (results that
    count more epochs than the rows)."""
    five_of_one = document_of(make_record("five-of-one", epochs=1))
    five_of_one["results"]["epochs_done"] = 5
    write_document(sessions_dir, five_of_one, "five-of-one.json")
    repeated = layout(document_of(make_record("repeated")))
    (sessions_dir / "repeated.json").write_text(repeated.replace('{"epoch":1,', '{"epoch":1,"epoch":1,', 1))
    resumed = document_of(make_record("resumed", epochs=5))
    resumed["epochs"] = resumed["epochs"][:3]
    write_document(sessions_dir, resumed, "resumed.json")

    app = make_app(sessions_dir, None, probe=FixedProbe())
    async with app.run_test(size=(100, 30)) as pilot:
        browser = await open_browser(pilot, rows=3)
        assert [u.name for u in browser.unreadable] == ["five-of-one.json"]
        assert "5 epochs done, more than the 1 configured" in browser.unreadable[0].problem

        table = browser.query_one(DataTable)
        table.move_cursor(row=[i for i, s in enumerate(browser.visible()) if s.id == "repeated"][0])
        await pilot.press("o")
        await wait_for(pilot, lambda: "appears twice" in notices(app))
        assert isinstance(app.screen, SessionsScreen)
        # listed from its first line, refused by the full read: its row says so now
        await wait_for(pilot, lambda: any("unreadable repeated.json" in r for r in row_texts(table)))

        table.move_cursor(row=[i for i, s in enumerate(browser.visible()) if s.id == "resumed"][0])
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen))
        assert "the results were recomputed from the rows" in notices(app)
        replay = app.screen
        await wait_for(pilot, lambda: replay.live.results is not None)
        assert replay.live.detail().startswith("epoch 3/5")
