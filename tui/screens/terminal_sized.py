"""Screens laid out at the terminal's size, whatever size a resize event carries.

A Textual screen posts itself a resize event with its new size each time its
size changes. Quick resizes can leave two such events, with different,
out-of-date sizes, in its queue between other messages: each one then changes
the size back and posts itself again, and the app spins without end (random
keys and resizes at 40x12 froze it). A screen that lays out at the terminal's
size instead stops that: once it has that size, a resize changes nothing and
posts nothing, and the last resize always leaves it at the terminal's size.
"""

from __future__ import annotations

from textual import events


class TerminalSized:
    """Mixed into every screen of the app, before Textual's Screen."""

    def on_resize(self, event: events.Resize) -> None:
        terminal = self.app.size
        if event.size != terminal:
            event.prevent_default()  # Screen's own handler would lay out at the old size
            self.post_message(events.Resize(terminal, terminal))
