"""Property: whatever text a session file or its name holds, the sessions
browser lists it literally (a row per session, or a warning row per refused
file), every row can be highlighted and opened, and nothing from the file
reaches the terminal as markup or as a control character."""

from __future__ import annotations

import asyncio
import concurrent.futures
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from pilot_helpers import screen_text, wait_for
from session_files import document_of, make_record, write_document
from sessions_fixture import FixedProbe
from textual.widgets import DataTable, Static
from untrusted_strategies import file_names, session_ids, untrusted_text

from fmlab.trainer.sessions import is_safe_session_id
from fmlab.trainer.text import visible
from fmlab.tui.app import make_app
from fmlab.tui.screens.live import LiveScreen
from fmlab.tui.screens.sessions import SessionsScreen


class AppInAThread:
    """One app under Pilot, on an event loop in a thread of its own, so that
    every Hypothesis example (a plain function call) drives the same app
    rather than starting one (a second each). The app runs in one task from
    start to end: Textual keeps its context in that task's context variables."""

    def __init__(self, directory: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.jobs: asyncio.Queue = self._on_loop(self._make_queue())
        self.started = threading.Event()
        self.session = asyncio.run_coroutine_threadsafe(self._run(directory), self.loop)
        assert self.started.wait(60), "the app did not start"

    def _on_loop(self, coroutine, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _make_queue(self) -> asyncio.Queue:
        return asyncio.Queue()

    async def _run(self, directory: Path) -> None:
        async with make_app(directory, None, probe=FixedProbe()).run_test(size=(100, 24)) as pilot:
            self.started.set()
            while (job := await self.jobs.get()) is not None:
                steps, done = job
                try:
                    done.set_result(await steps(pilot))
                except BaseException as exc:  # handed to the example that sent the job
                    done.set_exception(exc)

    def call(self, steps, timeout: float = 60):
        """Run ``await steps(pilot)`` on the app and return what it returns."""
        done = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(self.jobs.put_nowait, (steps, done))
        return done.result(timeout)

    def close(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.jobs.put_nowait, None)
            self.session.result(60)  # raises what crashed the app, if anything did
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture(scope="module")
def app_in_a_thread(tmp_path_factory):
    running = AppInAThread(tmp_path_factory.mktemp("empty"))
    yield running
    running.close()


def assert_shown_literally(text: str) -> None:
    for line in text.split("\n"):
        assert visible(line) == line, repr(line)


async def browse(pilot, directory: Path, path: Path, session_id: str) -> None:
    """Point the browser at ``directory``, then highlight, open and leave its one file."""
    app = pilot.app
    app.sessions_dir = directory
    await pilot.press("f4")
    browser = app.screen
    assert isinstance(browser, SessionsScreen)
    await pilot.press("u")  # list the new folder (f4 may have listed it already)

    def shows_the_new_folder() -> bool:
        entry = app.listing._entry
        return entry is not None and entry[0] == directory and browser._listing is entry[2]

    await wait_for(pilot, shows_the_new_folder)
    await pilot.pause()
    table = browser.query_one(DataTable)
    listed = not path.name.startswith(".")  # hidden files are left out, as a shell glob would
    assert table.row_count == int(listed)
    if not listed:
        return
    cells = [getattr(c, "plain", c) for c in table.get_row_at(0)]
    detail = str(browser.query_one("#session-detail", Static).render())
    if is_safe_session_id(session_id):
        assert cells[-1] == visible(session_id) and detail.startswith(visible(session_id))
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen))
        await wait_for(pilot, lambda: app.screen.live.results is not None)
        assert f"replay {visible(session_id)}" in screen_text(app)
        assert_shown_literally(screen_text(app))
        await pilot.press("escape")
    else:
        assert [c for c in cells if c.strip()][-2:] == ["unreadable", visible(path.name)]
        assert detail.startswith(f"unreadable: {visible(path)}: session id ")
        await pilot.press("o")  # refused with a notice
    assert_shown_literally(screen_text(app))
    app.clear_notifications()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(session_id=session_ids, text=untrusted_text, name=file_names)
def test_the_browser_shows_untrusted_text_literally(app_in_a_thread, session_id, text, name):
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder) / "sessions"
        document = document_of(make_record(session_id))
        document["config"]["arch"] = text
        document["environment"]["device_name"] = text
        path = write_document(directory, document, name)
        app_in_a_thread.call(lambda pilot: browse(pilot, directory, path, session_id))
