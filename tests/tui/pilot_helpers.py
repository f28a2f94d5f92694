"""Pilot steps the app tests share."""

from __future__ import annotations

import time

from textual.widgets import Input


async def wait_for(pilot, condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


async def type_into(pilot, selector: str, text: str) -> None:
    pilot.app.screen.query_one(selector, Input).focus()
    await pilot.press("ctrl+a", "ctrl+k", *text)


def screen_text(app) -> str:
    """What the terminal shows now, as plain text: every cell the app would
    write, without Textual's own colour codes."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


def notices(app) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


# Keys sent the way a terminal sends them, for long random sequences:
# pilot.press() waits after each key until the process is idle, which never
# happens while a run trains in a thread (a second or more per key).
CHARACTERS = {"space": " ", "slash": "/", "left_square_bracket": "[", "enter": "\r", "tab": "\t"}


def send_key(pilot, key: str) -> None:
    from textual import events

    character = CHARACTERS.get(key, key if len(key) == 1 else None)
    pilot.app._driver.send_message(events.Key(key, character))


def send_resize(pilot, width: int, height: int) -> None:
    from textual import events
    from textual.geometry import Size

    size = Size(width, height)
    pilot.app._driver._size = size  # as pilot.resize_terminal does, without its wait for idle
    pilot.app.post_message(events.Resize(size, size))
